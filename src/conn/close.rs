//! How a connection ends other than after a reply: refused at accept (503, never waiting),
//! abandoned at the end of a stop's grace period (logged), or closed by lingering: the
//! write side shut, and what the client still sends read and thrown away (bounded). Part of
//! the connection module. May use: error, request, sys.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsFd;

use super::reply::error_reply;
use super::{Conn, Context, Next, Scratch, Slot, DRAIN_LIMIT};
use crate::error::HttpError;
use crate::request;
use crate::sys;

/// Answers a connection the server has no room for: whatever request has already arrived is
/// read (so closing does not reset the reply away), then `503` with `Retry-After`, then the
/// write side closes. Never waits: the accept loop calls this. Returns the connection to
/// linger on if `slot` allows it, else `None` (closed at once).
pub fn refuse(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: &Context,
    scratch: &mut Scratch,
    slot: Option<Slot>,
) -> Option<Conn> {
    let (input, output, rec) = scratch.fresh();
    let _ = stream.set_nonblocking(true);
    let _ = sys::recv_nonblocking(stream.as_fd(), input);
    let line = request::request_line(input);
    let mut out = error_reply(ctx, output, rec, HttpError::Unavailable, line);
    // What an empty send buffer takes at once (all of a built-in page); the accept loop never
    // waits, so a huge custom page may be cut short. The log says what went.
    let _ = out.send(&stream, &mut 0);
    rec.record(peer.ip(), &out);
    out.give_back_buffers(output, &mut rec.text);
    let slot = slot?;
    let _ = stream.shutdown(Shutdown::Write);
    Some(Conn::new(stream, peer, slot))
}

/// Closes a connection the server can no longer hold (the poller has stopped at the end of
/// the grace period): a reply in progress is logged with the bytes that went out.
pub fn abandon(conn: Conn, scratch: &mut Scratch) {
    if let Some(out) = &conn.outgoing {
        log::info!(
            "{}: grace period over after {} bytes of the reply; closing",
            conn.peer,
            out.sent()
        );
        scratch.rec.record(conn.peer.ip(), out);
    }
}

/// Shuts the write side and waits for the client to finish sending (see [`drain`]).
pub(super) fn linger(conn: Conn) -> Next {
    let _ = conn.stream.shutdown(Shutdown::Write);
    Next::Linger(conn)
}

/// Reads and discards whatever the client still sends after a lingering close. Returns
/// `true` once there is nothing more to wait for (end of stream, an error, or the limit).
pub fn drain(conn: &mut Conn) -> bool {
    // A rare path (only after error replies), so a fresh buffer per call is fine.
    let mut sink = Vec::new();
    loop {
        sink.clear();
        match sys::recv_nonblocking(conn.stream.as_fd(), &mut sink) {
            Ok(0) => return true,
            Ok(n) => {
                conn.drained = conn
                    .drained
                    .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
                if conn.drained >= DRAIN_LIMIT {
                    return true;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return err.kind() != io::ErrorKind::WouldBlock,
        }
    }
}
