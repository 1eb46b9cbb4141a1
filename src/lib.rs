//! httpd: a static-file HTTP/1.1 server on a fixed pool of blocking worker threads.
//!
//! The pipeline, one way only:
//!
//! 1. [`server`] wires the stages together; the accept loop accepts a connection from the
//!    per-CPU listeners (admission control at `--max-connections`: evict the
//!    longest-idle connection, else answer 503) and queues it for the [`pool`] (a bounded
//!    channel), or parks it in the [`poller`] (`--dispatch poll`).
//! 2. A worker runs [`conn::serve`]: it reads what has arrived without waiting for more,
//! 3. [`request::parse`]s a head (pure, no I/O),
//! 4. asks [`handler::respond`], which uses [`url`] to split and decode the target and
//!    [`files`] to turn the path into an open file (or an [`error::HttpError`], mapped to a
//!    status in one place; the [`status`] table gives each status its reason phrase, page
//!    and effect on the connection), then picks a precompressed variant ([`negotiate`]),
//!    evaluates preconditions ([`conditional`]) and ranges ([`range`]), or renders a
//!    directory [`listing`],
//! 5. writes the [`response`] head and a small body in one write, a large body by sendfile,
//!    as much as the socket takes without waiting,
//! 6. logs it ([`accesslog`]) once it is all sent, and keeps going with pipelined requests,
//!    or
//! 7. parks the connection in the [`poller`] until the client sends more, or until it makes
//!    room for the rest of a reply (so an idle, slow-sending or slow-reading client never
//!    holds a worker), or closes it.

#![deny(unsafe_code)]

pub(crate) mod accept;
pub mod accesslog;
pub mod conditional;
pub mod config;
pub mod conn;
pub mod error;
pub mod files;
pub mod handler;
pub(crate) mod listen;
pub mod listing;
pub mod negotiate;
pub(crate) mod panics;
pub mod poller;
pub mod pool;
pub mod range;
pub mod request;
pub mod response;
pub mod server;
pub mod status;
// The one module allowed `unsafe`: system calls behind safe, documented wrappers.
#[allow(unsafe_code)]
pub(crate) mod sys;
pub mod url;

pub use config::Config;
pub use server::{Server, ShutdownHandle};
