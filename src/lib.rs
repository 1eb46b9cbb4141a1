//! httpd: a static-file HTTP/1.1 server on a fixed pool of blocking worker threads.
//!
//! The pipeline, one way only (no module calls back into an earlier stage):
//!
//! 1. [`listen`] opens one `SO_REUSEPORT` listener per CPU (or takes the sockets systemd
//!    hands over: socket activation); [`accept`]'s loop takes
//!    connections off them, with admission control at `--max-connections` (close the
//!    connection idle the longest, else answer 503 at once), and hands each to the
//!    [`poller`]: the workers of the [`pool`] wait on its epoll set themselves
//!    (leader/followers), so the one that gets a connection's event serves it.
//! 2. A worker runs [`conn::serve`]: it reads what has arrived, never waiting for more,
//! 3. [`request::parse`]s a head (pure, no I/O),
//! 4. gets the reply from [`handler::respond`] (`conn/reply.rs` turns a panic into a 500):
//!    [`url`] splits and decodes the target, the [`filecache`] answers what it holds (kept
//!    exact by inotify) and [`files`] opens the rest beneath the root's descriptor,
//!    [`negotiate`] picks a precompressed variant, [`conditional`] evaluates preconditions
//!    and [`range`] ranges, or [`listing`] renders a directory; a failure is
//!    an [`error::HttpError`], and the [`status`] table gives every status its reason
//!    phrase, built-in page and effect on the connection,
//! 5. `conn/write.rs` encodes the [`response`] head and writes head and small body in one
//!    write, a large body by sendfile, as much as the socket takes without waiting,
//! 6. logs the reply ([`accesslog`], into the worker's own buffer) once it is all sent (or
//!    cut off), and goes on with pipelined requests, or
//! 7. parks the connection in the [`poller`]'s set again (re-arming its one-shot
//!    registration) until the client sends more, or until it makes room for the rest of a
//!    reply (so an idle, slow-sending or slow-reading client never holds a worker), or
//!    closes it. The poller's sweep thread keeps the deadlines.
//!
//! Around the pipeline: [`config`] turns the command line into a validated [`Config`] in one
//! step; [`server`] wires the threads together and shuts them down in data-flow order;
//! [`panics`] renders a panic for the log; [`sys`] is the only module with `unsafe`;
//! [`metrics`] counts (atomics only, with `--status`) and [`scoreboard`] shows the counts.
//!
//! Everything but the command's entry points is private; read this map with
//! `cargo doc --document-private-items --open`.

// The map above links private modules on purpose: it is for people reading the code.
#![allow(rustdoc::private_intra_doc_links)]
#![deny(unsafe_code)]

mod accept;
mod accesslog;
mod conditional;
mod config;
mod conn;
mod error;
mod filecache;
mod files;
mod handler;
mod listen;
mod listing;
mod metrics;
mod negotiate;
mod panics;
mod poller;
mod pool;
mod range;
mod request;
mod response;
mod scoreboard;
mod server;
mod status;
// The one module allowed `unsafe`: system calls behind safe, documented wrappers.
#[allow(unsafe_code)]
mod sys;
mod url;

pub use config::{Args, Config, ConfigError};
pub use server::{reopen_log_on_signals, shutdown_on_signals, Server, ShutdownHandle};

/// Not API: the pieces the benchmarks, the fuzz targets and the in-process tests drive
/// directly. Nothing here is stable; everything else in the crate is private, so the
/// compiler reports what nothing uses.
#[doc(hidden)]
pub mod internals {
    pub mod request {
        pub use crate::request::{parse, request_line, Parsed, Request, MAX_HEAD, MAX_TARGET};
    }
    pub mod url {
        pub use crate::url::{decode_path, split_target, SafePath, Target};
    }
    pub mod files {
        pub use crate::files::{resolve, Resolution, Resolved, Root};
    }
    pub mod handler {
        pub use crate::handler::{respond, Site};
    }
    pub mod error {
        pub use crate::error::{ErrorPages, HttpError};
    }
    pub mod response {
        pub use crate::response::{
            http_date, Body, Charset, Clock, Date, Modified, Part, Response, Text,
        };
    }
}
