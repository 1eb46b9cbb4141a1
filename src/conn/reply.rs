//! One request's reply, ready to write: the handler's response (or its error's page), with
//! the connection's fate decided by the request's framing, and the request named for the
//! log. A panic while making it costs that one request a 500, not the worker. Part of the
//! connection module; it never touches the socket. May use: handler, error, request,
//! response, panics.

use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::write::{After, Outgoing};
use super::{Context, Recorder};
use crate::error::HttpError;
use crate::handler;
use crate::panics;
use crate::request::{Framing, Method, Request};
use crate::response::Clock;

/// Answers one complete request whose head is `input[..head_len]`: the reply, ready to
/// write, and how many input bytes the request used.
pub(super) fn answer(
    peer: SocketAddr,
    ctx: &Context,
    output: &mut Vec<u8>,
    rec: &mut Recorder,
    request: Request<'_>,
    input: &[u8],
    head_len: usize,
) -> (Outgoing, usize) {
    let started = Instant::now();
    rec.answering(&[
        request.method.as_str().as_bytes(),
        b" ",
        request.target.as_bytes(),
    ]);
    let clock = &mut rec.clock;
    // A body we are not going to use is skipped if it is already here; otherwise we answer
    // and close, so it can never be read as the next request (RFC 9112 §9.3).
    let mut used = head_len;
    let mut body_unread = false;
    match request.framing {
        Framing::None => {}
        Framing::Length(len) => match usize::try_from(len) {
            Ok(len) if input.len() - head_len >= len => used += len,
            _ => body_unread = true,
        },
        Framing::Chunked => body_unread = true,
    }
    let wants_keep_alive =
        request.keep_alive && !body_unread && !ctx.stopping.load(Ordering::Relaxed);
    let head_only = request.method == Method::Head;
    // A bug must cost one request, not the worker or the connection's client: a panic
    // anywhere in making the reply (the handler, the head's encoding, reading a small body)
    // becomes a 500 and the connection closes (its state may be inconsistent).
    let prepared = panic::catch_unwind(AssertUnwindSafe(|| {
        let (response, keep_alive) = match handler::respond_to(&request, &ctx.site, Some(peer.ip()))
        {
            Ok(response) => (response, wants_keep_alive),
            Err(err) => {
                log::debug!(
                    "{}: {} {}: {err:?}",
                    peer,
                    request.method.as_str(),
                    request.target
                );
                (
                    ctx.site.pages.render(err),
                    wants_keep_alive && !err.closes_connection(),
                )
            }
        };
        let mut out = Outgoing::new(response, head_only, keep_alive, clock.now(), output);
        out.read_small_body().map(|()| out)
    }));
    let mut out = match prepared {
        Ok(Ok(out)) => out,
        Ok(Err(err)) => {
            log::warn!(
                "{}: {} {}: reading the body: {err}",
                peer,
                request.method.as_str(),
                request.target
            );
            fault_reply(ctx, head_only, clock)
        }
        Err(panic) => {
            log::error!(
                "{}: {} {}: handler panicked: {}",
                peer,
                request.method.as_str(),
                request.target,
                panics::message(&*panic)
            );
            fault_reply(ctx, head_only, clock)
        }
    };
    out.set_started(rec.counted(started));
    // Unread input (a body, or requests pipelined after `Connection: close`) would make our
    // close a reset that can destroy the reply in flight.
    if out.after == After::Close && (body_unread || input.len() > used) {
        out.after = After::Linger;
    }
    // httparse reads only HTTP/1.0 and HTTP/1.1, so the minor version is one digit.
    let minor = [b'0' + request.minor_version.min(9)];
    out.log_as(
        &mut rec.text,
        &[
            request.method.as_str().as_bytes(),
            b" ",
            request.target.as_bytes(),
            b" HTTP/1.",
            &minor,
        ],
        request.referer.as_deref(),
        request.user_agent.as_deref(),
        started,
    );
    (out, used)
}

/// The 500 that replaces a reply that could not be made; the connection closes after it.
fn fault_reply(ctx: &Context, head_only: bool, clock: &mut Clock) -> Outgoing {
    let response = ctx.site.pages.render(HttpError::Internal);
    // A rare path, so a fresh buffer is fine.
    Outgoing::new(response, head_only, false, clock.now(), &mut Vec::new())
}

/// An error reply for a request we could not (fully) parse, or one that took too long, or
/// that the server has no room for, logged as `request_line`. The connection lingers after
/// it.
pub(super) fn error_reply(
    ctx: &Context,
    output: &mut Vec<u8>,
    rec: &mut Recorder,
    err: HttpError,
    request_line: &[u8],
) -> Outgoing {
    let response = ctx.site.pages.render(err);
    let mut out = Outgoing::new(response, false, false, rec.clock.now(), output);
    out.set_started(rec.started());
    out.after = After::Linger;
    out.log_as(&mut rec.text, &[request_line], None, None, Instant::now());
    out
}
