//! One connection's turn on a worker: read what has arrived (never waiting for more), parse,
//! respond, log, and say what happens next: park it until the client sends more, keep going
//! with pipelined requests, or close. The only module that reads or writes a client socket.
//! May use: request, handler, response, error, accesslog, config (deadlines), pool (panic text).

use std::fs::File;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::accesslog::{AccessLog, Entry};
use crate::config::Deadlines;
use crate::error::HttpError;
use crate::handler::{self, Site};
use crate::pool::panic_message;
use crate::request::{self, Framing, Method, Parsed, Request};
use crate::response::{clf_time, Body, Clock, Response};

/// File bodies up to this size are read into the head's buffer and leave in one write;
/// larger ones go by `sendfile`.
pub const SMALL_BODY: u64 = 32 * 1024;
/// Requests served back to back from one connection's buffer before it yields the worker.
const TURN: usize = 32;
/// Time a head gets before the minimum rate applies (a slow link's first round trips).
pub const HEADER_SLACK: Duration = Duration::from_secs(2);
/// How much a worker reads at a time.
const READ_CHUNK: usize = 16 * 1024;
/// The most a lingering close reads and throws away.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// A client connection and what has been read from it but not yet used.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Bytes of a request head (or pipelined requests) read but not yet handled.
    pending: Vec<u8>,
    /// When the first byte of the current, incomplete head arrived.
    head_started: Option<Instant>,
    /// The poller's verdict: the head did not complete before the deadline.
    expired: bool,
    /// Requests answered on this connection so far.
    served: u64,
    drained: usize,
    _slot: Slot,
}

/// One open connection's place in the server's count; given back when the connection drops.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// Takes a place in `open`.
    pub fn take(open: &Arc<AtomicUsize>) -> Slot {
        open.fetch_add(1, Ordering::SeqCst);
        Slot(Arc::clone(open))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Conn {
    /// Wraps an accepted socket. `TCP_NODELAY` matters: a head and a sendfile body are two
    /// writes, and Nagle would hold the second behind the client's delayed ACK.
    pub fn new(stream: TcpStream, peer: SocketAddr, send_timeout: Duration, slot: Slot) -> Conn {
        if let Err(err) = stream
            .set_nodelay(true)
            .and_then(|()| stream.set_write_timeout(Some(send_timeout)))
        {
            log::debug!("{peer}: socket options: {err}");
        }
        Conn {
            stream,
            peer,
            pending: Vec::new(),
            head_started: None,
            expired: false,
            served: 0,
            drained: 0,
            _slot: slot,
        }
    }

    /// The socket, for registering with a poller.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// Whether part of a request head is waiting for the rest.
    pub fn has_partial_request(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether the connection waits for a request with nothing of it read yet: a keep-alive
    /// connection between requests, or a new one before its first byte.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && !self.expired
    }

    /// Whether the connection has answered a request (so closing it while idle loses nothing
    /// a client is waiting for).
    pub fn has_served(&self) -> bool {
        self.served > 0
    }

    /// When a connection parked now should be given up. Idle: `deadlines.idle` from now.
    /// With part of a head: the header deadline from its first byte (so a slow sender cannot
    /// stretch it byte by byte), or sooner if the head falls behind the minimum rate.
    pub fn deadline(&self, deadlines: &Deadlines) -> Instant {
        match self.head_started {
            None => Instant::now() + deadlines.idle,
            Some(started) => started + head_allowance(deadlines, self.pending.len()),
        }
    }

    /// Marks the connection as having missed its head deadline; its next turn answers 408.
    pub fn expire(&mut self) {
        self.expired = true;
    }
}

/// How long a head that has `received` bytes so far may take from its first byte: the
/// header timeout, or less if it falls behind the minimum rate. Like mod_reqtimeout's
/// `MinRate`, every `rate` bytes buy one more second, starting from [`HEADER_SLACK`].
fn head_allowance(deadlines: &Deadlines, received: usize) -> Duration {
    if deadlines.header_min_rate == 0 {
        return deadlines.header;
    }
    let earned = Duration::from_secs_f64(received as f64 / f64::from(deadlines.header_min_rate));
    (HEADER_SLACK + earned).min(deadlines.header)
}

/// What the connection needs next, decided by [`serve`].
#[derive(Debug)]
pub enum Next {
    /// Waiting for the client to send more: hold it outside the workers.
    Park(Conn),
    /// More requests are already buffered, but others deserve a turn first.
    Yield(Conn),
    /// Closed for writing after a reply; unread input is read and dropped until the client
    /// closes too (a lingering close, so our reply is not lost to a reset).
    Linger(Conn),
    /// Done; the socket closes when this is dropped.
    Close,
}

/// What every connection turn may use.
pub struct Context {
    pub site: Site,
    pub log: AccessLog,
    pub deadlines: Deadlines,
    /// Set on shutdown: finish the reply in hand, then close.
    pub stopping: Arc<AtomicBool>,
}

/// A worker's reusable buffers and clock.
#[derive(Default)]
pub struct Scratch {
    input: Vec<u8>,
    output: Vec<u8>,
    clock: Clock,
}

/// Serves `conn` for as long as it has requests ready, and says what to do with it next.
pub fn serve(mut conn: Conn, ctx: &Context, scratch: &mut Scratch) -> Next {
    let Scratch {
        input,
        output,
        clock,
    } = scratch;
    input.clear();
    input.append(&mut conn.pending);
    if conn.expired {
        // RFC 9110 §15.5.9: the head was too slow; say so and close.
        let line = request::request_line(input).to_vec();
        reply_error(&conn, ctx, output, clock, HttpError::RequestTimeout, &line);
        return linger(conn);
    }

    let mut served = 0;
    loop {
        match request::parse(input) {
            Ok(Parsed::Complete(request, head_len)) => {
                conn.head_started = None;
                conn.served += 1;
                let (after, used) = answer(&conn, ctx, output, clock, &request, input, head_len);
                input.drain(..used);
                match after {
                    After::Close => return Next::Close,
                    After::Linger => return linger(conn),
                    After::KeepAlive => {
                        // Every request counts, buffered or freshly read, so a client that
                        // keeps sending cannot keep the worker from everyone else.
                        served += 1;
                        if served >= TURN {
                            conn.pending.extend_from_slice(input);
                            return if input.is_empty() {
                                Next::Park(conn)
                            } else {
                                Next::Yield(conn)
                            };
                        }
                        if !input.is_empty() {
                            continue;
                        }
                    }
                }
            }
            Ok(Parsed::Partial) => {
                if !input.is_empty() && conn.head_started.is_none() {
                    conn.head_started = Some(Instant::now());
                }
            }
            Err(err) => {
                let line = request::request_line(input).to_vec();
                reply_error(&conn, ctx, output, clock, err, &line);
                return linger(conn);
            }
        }
        match recv_nonblocking(&conn.stream, input) {
            Ok(0) => return Next::Close,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                conn.pending.extend_from_slice(input);
                if conn.head_started.is_some() && Instant::now() >= conn.deadline(&ctx.deadlines) {
                    // Data kept coming, but too slowly: the poller never saw it idle long
                    // enough to expire it.
                    conn.pending.clear();
                    let line = request::request_line(input).to_vec();
                    reply_error(&conn, ctx, output, clock, HttpError::RequestTimeout, &line);
                    return linger(conn);
                }
                return Next::Park(conn);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                log::debug!("{}: read: {err}", conn.peer);
                return Next::Close;
            }
        }
    }
}

/// What a connection does after one reply.
enum After {
    KeepAlive,
    Close,
    Linger,
}

/// Answers one complete request whose head is `input[..head_len]`: respond, write, log.
/// Returns what the connection does next and how many input bytes the request used.
fn answer(
    conn: &Conn,
    ctx: &Context,
    output: &mut Vec<u8>,
    clock: &mut Clock,
    request: &Request,
    input: &[u8],
    head_len: usize,
) -> (After, usize) {
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
    // A bug must cost one request, not the worker or the connection's client: a panic
    // becomes a 500 and the connection closes (its state may be inconsistent).
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| handler::respond(request, &ctx.site)))
        .unwrap_or_else(|panic| {
            log::error!(
                "{}: {} {}: handler panicked: {}",
                conn.peer,
                request.method.as_str(),
                request.target,
                panic_message(&*panic)
            );
            Err(HttpError::Internal)
        });
    let (response, mut keep_alive) = match outcome {
        Ok(response) => (response, request.keep_alive),
        Err(err) => {
            log::debug!(
                "{}: {} {}: {err:?}",
                conn.peer,
                request.method.as_str(),
                request.target
            );
            (
                ctx.site.pages.render(err),
                request.keep_alive && !err.closes_connection(),
            )
        }
    };
    keep_alive &= !body_unread && !ctx.stopping.load(Ordering::Relaxed);
    let status = response.status;
    let head_only = request.method == Method::Head;
    let result = send(
        &conn.stream,
        response,
        head_only,
        keep_alive,
        output,
        clock.now(),
    );
    let line = format!(
        "{} {} HTTP/1.{}",
        request.method.as_str(),
        request.target,
        request.minor_version
    );
    record(
        conn,
        ctx,
        clock,
        line.as_bytes(),
        status,
        &result,
        Some(request),
    );
    let after = match result {
        Err(err) => {
            log_write_error(conn.peer, &err.error);
            After::Close
        }
        Ok(_) if keep_alive => After::KeepAlive,
        // Unread input (a body, or requests pipelined after `Connection: close`) would make
        // our close a reset that can destroy the reply in flight.
        Ok(_) if body_unread || input.len() > used => After::Linger,
        Ok(_) => After::Close,
    };
    (after, used)
}

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
    let Scratch {
        input,
        output,
        clock,
    } = scratch;
    input.clear();
    let _ = stream.set_nonblocking(true);
    let _ = recv_nonblocking(&stream, input);
    let response = ctx.site.pages.render(HttpError::Unavailable);
    let status = response.status;
    response.encode_head(clock.now(), false, output);
    let body = match &response.body {
        Body::Static(bytes) => *bytes,
        Body::Bytes(bytes) => &bytes[..],
        _ => &[],
    };
    output.extend_from_slice(body);
    // One attempt on an empty send buffer; a huge custom page may be cut short.
    let sent = (&stream).write(output).map_or(0, |n| n);
    let body_sent = sent.saturating_sub(output.len() - body.len()) as u64;
    let line = request::request_line(input).to_vec();
    ctx.log.record(&Entry {
        client: peer.ip(),
        time: &clf_time(clock.now()),
        request_line: &line,
        status,
        bytes: body_sent,
        referer: None,
        user_agent: None,
    });
    let slot = slot?;
    let _ = stream.shutdown(Shutdown::Write);
    Some(Conn::new(stream, peer, Duration::from_secs(1), slot))
}

fn linger(conn: Conn) -> Next {
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
        match recv_nonblocking(&conn.stream, &mut sink) {
            Ok(0) => return true,
            Ok(n) => {
                conn.drained += n;
                if conn.drained >= DRAIN_LIMIT {
                    return true;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return err.kind() != io::ErrorKind::WouldBlock,
        }
    }
}

/// An error reply for a request we could not (fully) parse, or one that took too long.
fn reply_error(
    conn: &Conn,
    ctx: &Context,
    output: &mut Vec<u8>,
    clock: &mut Clock,
    err: HttpError,
    line: &[u8],
) {
    log::debug!("{}: {err:?}", conn.peer);
    let response = ctx.site.pages.render(err);
    let status = response.status;
    let result = send(&conn.stream, response, false, false, output, clock.now());
    record(conn, ctx, clock, line, status, &result, None);
    if let Err(err) = result {
        log_write_error(conn.peer, &err.error);
    }
}

/// The access-log line for one reply.
fn record(
    conn: &Conn,
    ctx: &Context,
    clock: &mut Clock,
    line: &[u8],
    status: u16,
    result: &Result<u64, SendError>,
    request: Option<&Request>,
) {
    ctx.log.record(&Entry {
        client: conn.peer.ip(),
        time: &clf_time(clock.now()),
        request_line: line,
        status,
        bytes: match result {
            Ok(sent) => *sent,
            Err(err) => err.sent,
        },
        referer: request.and_then(|r| r.referer.as_deref()),
        user_agent: request.and_then(|r| r.user_agent.as_deref()),
    });
}

/// A failed send, with how many body bytes went out before it failed.
struct SendError {
    error: io::Error,
    sent: u64,
}

impl From<io::Error> for SendError {
    fn from(error: io::Error) -> Self {
        SendError { error, sent: 0 }
    }
}

/// Writes the reply: head and small body in one write, a large file body by `sendfile`.
/// Returns the number of body bytes sent.
fn send(
    mut stream: &TcpStream,
    response: Response,
    head_only: bool,
    keep_alive: bool,
    output: &mut Vec<u8>,
    date: &str,
) -> Result<u64, SendError> {
    response.encode_head(date, keep_alive, output);
    if head_only || !response.has_body() {
        stream.write_all(output)?;
        return Ok(0);
    }
    match response.body {
        Body::Empty => {
            stream.write_all(output)?;
            Ok(0)
        }
        Body::Static(bytes) => {
            output.extend_from_slice(bytes);
            stream.write_all(output)?;
            Ok(bytes.len() as u64)
        }
        Body::Bytes(bytes) => {
            output.extend_from_slice(&bytes);
            stream.write_all(output)?;
            Ok(bytes.len() as u64)
        }
        Body::File { file, offset, len } if len <= SMALL_BODY => {
            let head_len = output.len();
            output.resize(head_len + len as usize, 0);
            file.read_exact_at(&mut output[head_len..], offset)?;
            stream.write_all(output)?;
            Ok(len)
        }
        Body::File { file, offset, len } => {
            stream.write_all(output)?;
            send_file(stream, &file, offset, len)
        }
        Body::Multipart {
            file,
            parts,
            closing,
        } => {
            // Corked, so the small part heads share packets with the data around them.
            let socket = socket2::SockRef::from(stream);
            let _ = socket.set_cork(true);
            let result = send_parts(stream, output, &file, &parts, &closing);
            let _ = socket.set_cork(false);
            result
        }
    }
}

/// The head, then each part's head and window of `file`, then the closing boundary.
fn send_parts(
    mut stream: &TcpStream,
    head: &[u8],
    file: &File,
    parts: &[crate::response::Part],
    closing: &[u8],
) -> Result<u64, SendError> {
    stream.write_all(head)?;
    let mut sent = 0;
    for part in parts {
        let with_sent = |error| SendError { error, sent };
        stream.write_all(&part.head).map_err(with_sent)?;
        sent += part.head.len() as u64;
        sent += send_file(stream, file, part.offset, part.len).map_err(|err| SendError {
            error: err.error,
            sent: sent + err.sent,
        })?;
    }
    stream
        .write_all(closing)
        .map_err(|error| SendError { error, sent })?;
    Ok(sent + closing.len() as u64)
}

/// The most one sendfile(2) call moves (the kernel's own cap, just under 2 GiB).
const SENDFILE_MAX: u64 = 0x7fff_f000;

/// Sends `len` bytes of `file` from `offset` with sendfile(2): page cache to socket, never
/// through user space, at any 64-bit offset and without moving the file position.
///
/// Called directly because `std::io::copy` deliberately does not use sendfile from a regular
/// file to a socket (std's `kernel_copy.rs`, `safe_kernel_copy`: a file changed mid-send
/// could show through). A static server accepts that, as nginx does.
fn send_file(stream: &TcpStream, file: &File, offset: u64, len: u64) -> Result<u64, SendError> {
    let mut sent = 0;
    while sent < len {
        let chunk = (len - sent).min(SENDFILE_MAX) as usize;
        let Ok(mut position) = libc::off64_t::try_from(offset + sent) else {
            return Err(SendError {
                error: io::Error::from(io::ErrorKind::InvalidInput),
                sent,
            });
        };
        // SAFETY: both descriptors are open for the duration of the call and `position` is a
        // valid, exclusively borrowed off64_t.
        let n =
            unsafe { libc::sendfile64(stream.as_raw_fd(), file.as_raw_fd(), &mut position, chunk) };
        match n {
            n if n > 0 => sent += n as u64,
            0 => {
                // The file shrank under us: the framing is broken, so the connection must end.
                return Err(SendError {
                    error: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shorter than its length",
                    ),
                    sent,
                });
            }
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    // EAGAIN here is SO_SNDTIMEO expiring: the client stopped reading.
                    return Err(SendError { error, sent });
                }
            }
        }
    }
    Ok(sent)
}

fn log_write_error(peer: SocketAddr, err: &io::Error) {
    // A client hanging up is not our error (habit 7).
    match err.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted => {
            log::debug!("{peer}: client went away: {err}")
        }
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            log::info!("{peer}: send timed out; closing")
        }
        _ => log::warn!("{peer}: write failed: {err}"),
    }
}

/// One non-blocking read into the spare capacity of `buf`. The socket itself stays blocking
/// (writes rely on SO_SNDTIMEO); MSG_DONTWAIT makes just this read return WouldBlock.
fn recv_nonblocking(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.reserve(READ_CHUNK);
    let spare = buf.spare_capacity_mut();
    // SAFETY: recv writes at most `spare.len()` bytes into the spare capacity.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            spare.as_mut_ptr().cast(),
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised the first `n` spare bytes.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_earns_time_at_the_minimum_rate_up_to_the_header_timeout() {
        let deadlines = Deadlines {
            idle: Duration::from_secs(5),
            header: Duration::from_secs(10),
            header_min_rate: 100,
        };
        let allowance = |received| head_allowance(&deadlines, received);
        assert_eq!(allowance(0), HEADER_SLACK);
        assert_eq!(allowance(50), HEADER_SLACK + Duration::from_millis(500));
        assert_eq!(allowance(500), HEADER_SLACK + Duration::from_secs(5));
        assert_eq!(allowance(5000), Duration::from_secs(10));
        let no_rate = Deadlines {
            header_min_rate: 0,
            ..deadlines
        };
        assert_eq!(head_allowance(&no_rate, 0), Duration::from_secs(10));
    }
}
