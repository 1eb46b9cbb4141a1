//! One connection's turn on a worker: read what has arrived (never waiting for more), parse,
//! respond, write what the socket takes (never waiting for it to take more), log, and say what
//! happens next: park it until the client sends more or makes room for the rest of a reply,
//! keep going with pipelined requests, or close. The only module that reads or writes a client
//! socket. May use: request, handler, response, error, accesslog, config (deadlines), pool
//! (panic text).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::accesslog::{AccessLog, Entry};
use crate::config::Deadlines;
use crate::error::HttpError;
use crate::handler::{self, Site};
use crate::panics;
use crate::request::{self, Framing, Method, Parsed, Request};
use crate::response::{clf_time, Body, Clock, Response};
use crate::sys;

/// File bodies up to this size are read into the head's buffer and leave in one write;
/// larger ones go by `sendfile`.
pub const SMALL_BODY: u64 = 32 * 1024;
/// Requests served back to back from one connection's buffer before it yields the worker.
const TURN: usize = 32;
/// File bytes one turn may send before the connection yields the worker to others (nginx's
/// `sendfile_max_chunk` idea): a fast client of a huge file does not hold a worker for the
/// whole file while small requests queue.
const WRITE_TURN: u64 = 8 * 1024 * 1024;
/// Time a head gets before the minimum rate applies (a slow link's first round trips).
pub const HEADER_SLACK: Duration = Duration::from_secs(2);
/// The most a lingering close reads and throws away.
const DRAIN_LIMIT: u32 = 1024 * 1024;

/// A client connection: what has been read from it but not yet used, and what of a reply has
/// not yet been taken by it.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Bytes of a request head (or pipelined requests) read but not yet handled.
    pending: Vec<u8>,
    /// When the first byte of the current, incomplete head arrived.
    head_started: Option<Instant>,
    /// The poller's verdict: the head did not complete before its deadline, or (with a reply
    /// outgoing) the client took no byte for the send timeout.
    expired: bool,
    /// Requests answered on this connection so far.
    served: u32,
    /// Since when the connection has had nothing to do for its client: its accept, or the
    /// start of the write that completed its last reply. Taken before that write, so a
    /// connection whose reply a client saw before sending a request on another always counts
    /// as idle longer than that other one (admission control closes the oldest idle first).
    idle_since: Instant,
    /// Bytes thrown away by a lingering close so far.
    drained: u32,
    /// A reply the socket has not fully taken: continued when it is writable again.
    outgoing: Option<Box<Outgoing>>,
    _slot: Slot,
}

/// One open connection's (or parked file's) place in the server's count; given back when it
/// drops.
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
    /// Wraps an accepted socket. It is made non-blocking: no read or write on it ever waits
    /// for the client. `TCP_NODELAY` matters: a head and a sendfile body are two writes, and
    /// Nagle would hold the second behind the client's delayed ACK.
    pub fn new(stream: TcpStream, peer: SocketAddr, slot: Slot) -> Conn {
        if let Err(err) = stream
            .set_nonblocking(true)
            .and_then(|()| stream.set_nodelay(true))
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
            idle_since: Instant::now(),
            drained: 0,
            outgoing: None,
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
        self.pending.is_empty() && !self.expired && self.outgoing.is_none()
    }

    /// Whether the connection has answered a request (so closing it while idle loses nothing
    /// a client is waiting for).
    pub fn has_served(&self) -> bool {
        self.served > 0
    }

    /// Since when the connection has had nothing to do for its client (see the field).
    pub fn idle_since(&self) -> Instant {
        self.idle_since
    }

    /// Whether part of a reply waits for the client to make room for it.
    pub fn is_writing(&self) -> bool {
        self.outgoing.is_some()
    }

    /// When a connection parked now should be given up. Writing: `deadlines.send` after the
    /// client last took a byte (nginx's `send_timeout`). Idle: `deadlines.idle` from now.
    /// With part of a head: the header deadline from its first byte (so a slow sender cannot
    /// stretch it byte by byte), or sooner if the head falls behind the minimum rate.
    pub fn deadline(&self, deadlines: &Deadlines) -> Instant {
        if let Some(out) = &self.outgoing {
            return out.last_progress + deadlines.send;
        }
        match self.head_started {
            None => Instant::now() + deadlines.idle,
            Some(started) => started + head_allowance(deadlines, self.pending.len()),
        }
    }

    /// For a parked reply, when its sample is due: looks at the socket's send queue. The
    /// kernel keeps moving queued bytes to a client that reads, and a large send buffer can
    /// take longer than the timeout to drain far enough to be writable, so a queue smaller
    /// than at the last sample is progress. The first sample after parking only sets the
    /// baseline (the queue still drains into the client's window for a moment after the
    /// socket fills, which is not the client reading). Returns the deadline, which moves
    /// only with progress; `None` if no sample was due.
    pub fn sample_send_queue(&mut self, now: Instant) -> Option<Instant> {
        let out = self.outgoing.as_mut()?;
        if now < out.next_sample {
            return None;
        }
        out.next_sample = now + sample_interval(out.send_timeout);
        if let Some(unsent) = sys::unsent_bytes(self.stream.as_fd()) {
            if out.unsent.is_some_and(|before| unsent < before) {
                out.last_progress = now;
            }
            out.unsent = Some(unsent);
        }
        Some(out.last_progress + out.send_timeout)
    }

    /// Marks the connection as having missed its deadline; its next turn answers 408 (a head
    /// in progress) or gives up the reply (a write).
    pub fn expire(&mut self) {
        self.expired = true;
    }
}

/// How often a parked reply's send queue is sampled: often enough that a reply is given up
/// close to `--send-timeout` after the client's last byte (within a fifth of it), rarely
/// enough that thousands of parked replies cost the poller little.
fn sample_interval(send_timeout: Duration) -> Duration {
    (send_timeout / 5).clamp(Duration::from_millis(250), Duration::from_secs(2))
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
    /// Waiting for the client to send more: hold it outside the workers until readable.
    Park(Conn),
    /// Waiting for the client to make room for the rest of a reply: hold it outside the
    /// workers until writable.
    ParkWrite(Conn),
    /// More work is ready (buffered requests, or more of a large reply the socket would take),
    /// but others deserve a turn first.
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
    /// Files held open by replies that wait for their client: each is a descriptor the
    /// admission control must count.
    pub parked_files: Arc<AtomicUsize>,
}

/// A worker's reusable buffers and clock.
#[derive(Default)]
pub struct Scratch {
    input: Vec<u8>,
    output: Vec<u8>,
    clock: Clock,
}

/// What a connection does after one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    KeepAlive,
    Close,
    Linger,
}

/// The rest of a reply that the socket has not taken yet, and what to do once it has: the
/// state a worker parks when the client is slow to read, so that any worker can continue
/// exactly where the last one stopped.
#[derive(Debug)]
struct Outgoing {
    /// Bytes to send first: the head (with a small body in the same buffer), later a part
    /// head or the closing boundary of a multipart body.
    bytes: Vec<u8>,
    /// How much of `bytes` has gone.
    pos: usize,
    /// A window of `file` to send after `bytes`.
    window: Option<Window>,
    /// What follows: the later parts of a multipart body.
    tail: VecDeque<Chunk>,
    file: Option<File>,
    /// Bytes of the response head, which the access log does not count as body.
    head_len: u64,
    /// Bytes sent so far, head included.
    sent: u64,
    /// `TCP_CORK` is on for this reply (multipart: small part heads share packets).
    corked: bool,
    after: After,
    log: LogLine,
    /// When the client last took a byte of this reply.
    last_progress: Instant,
    /// Bytes in the socket's send queue at the last sample while parked (`None` until the
    /// first): the kernel keeps moving them to a client that reads, so a queue that shrank
    /// is progress too.
    unsent: Option<usize>,
    /// When the poller next looks at the send queue.
    next_sample: Instant,
    /// `--send-timeout`, from the last progress.
    send_timeout: Duration,
    /// The open file's place in the descriptor count while the reply is parked.
    file_slot: Option<Slot>,
}

/// A byte window of the reply's file.
#[derive(Debug, Clone, Copy)]
struct Window {
    offset: u64,
    len: u64,
}

#[derive(Debug)]
enum Chunk {
    Bytes(Vec<u8>),
    Window(Window),
}

/// What a reply's access-log line says besides the bytes sent, kept until the reply ends.
#[derive(Debug)]
struct LogLine {
    request_line: Vec<u8>,
    status: u16,
    referer: Option<String>,
    user_agent: Option<String>,
}

impl Outgoing {
    /// A reply whose head (and any small body) is all in `bytes`, the first `head_len` of
    /// them being the head.
    fn new(bytes: Vec<u8>, head_len: usize, status: u16, keep_alive: bool) -> Box<Outgoing> {
        Box::new(Outgoing {
            bytes,
            pos: 0,
            window: None,
            tail: VecDeque::new(),
            file: None,
            head_len: head_len as u64,
            sent: 0,
            corked: false,
            after: if keep_alive {
                After::KeepAlive
            } else {
                After::Close
            },
            log: LogLine {
                request_line: Vec::new(),
                status,
                referer: None,
                user_agent: None,
            },
            last_progress: Instant::now(),
            unsent: None,
            next_sample: Instant::now(),
            send_timeout: Duration::ZERO,
            file_slot: None,
        })
    }

    /// Body bytes that went out, for the access log.
    fn body_sent(&self) -> u64 {
        self.sent.saturating_sub(self.head_len)
    }
}

/// Serves `conn` for as long as it has work the socket allows: first the rest of a parked
/// reply, then every request already buffered or readable without waiting.
pub fn serve(mut conn: Conn, ctx: &Context, scratch: &mut Scratch) -> Next {
    let Scratch {
        input,
        output,
        clock,
    } = scratch;
    input.clear();
    let mut budget = WRITE_TURN;
    if let Some(out) = conn.outgoing.take() {
        if conn.expired {
            // The client took no byte for --send-timeout (nginx's `send_timeout`), or the
            // grace period of a stop is over.
            let why = if ctx.stopping.load(Ordering::Relaxed) {
                "grace period over"
            } else {
                "send timed out"
            };
            log::info!(
                "{}: {why} after {} bytes of the reply; closing",
                conn.peer,
                out.sent
            );
            record(&conn, ctx, clock, &out);
            // Reset, not FIN: a FIN would queue behind the megabytes the client refuses, and
            // the orphaned socket would hold them for as long as the client keeps it open
            // (nginx's `reset_timedout_connection`).
            let _ = socket2::SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO));
            return Next::Close;
        }
        conn = match finish(conn, out, ctx, input, output, clock, &mut budget) {
            Ok(conn) => conn,
            Err(next) => return next,
        };
    }
    input.append(&mut conn.pending);
    if conn.expired {
        // RFC 9110 §15.5.9: the head was too slow; say so and close.
        conn.expired = false;
        let line = request::request_line(input).to_vec();
        input.clear();
        let out = error_reply(ctx, output, clock, HttpError::RequestTimeout, line);
        return end(finish(conn, out, ctx, input, output, clock, &mut budget));
    }

    let mut served = 0;
    loop {
        match request::parse(input) {
            Ok(Parsed::Complete(request, head_len)) => {
                conn.head_started = None;
                conn.served = conn.served.saturating_add(1);
                let (out, used) = answer(&conn, ctx, output, clock, request, input, head_len);
                input.drain(..used);
                conn = match finish(conn, out, ctx, input, output, clock, &mut budget) {
                    Ok(conn) => conn,
                    Err(next) => return next,
                };
                // Every request counts, buffered or freshly read, so a client that keeps
                // sending cannot keep the worker from everyone else.
                served += 1;
                if served >= TURN {
                    let more = !input.is_empty();
                    conn.pending.append(input);
                    return if more {
                        Next::Yield(conn)
                    } else {
                        Next::Park(conn)
                    };
                }
                if !input.is_empty() {
                    continue;
                }
            }
            Ok(Parsed::Partial) => {
                if !input.is_empty() && conn.head_started.is_none() {
                    conn.head_started = Some(Instant::now());
                }
            }
            Err(err) => {
                let line = request::request_line(input).to_vec();
                input.clear();
                let out = error_reply(ctx, output, clock, err, line);
                return end(finish(conn, out, ctx, input, output, clock, &mut budget));
            }
        }
        match sys::recv_nonblocking(conn.stream.as_fd(), input) {
            Ok(0) => return Next::Close,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if conn.head_started.is_some() && Instant::now() >= deadline_of(&conn, ctx, input) {
                    // Data kept coming, but too slowly: the poller never saw it idle long
                    // enough to expire it.
                    let line = request::request_line(input).to_vec();
                    input.clear();
                    let out = error_reply(ctx, output, clock, HttpError::RequestTimeout, line);
                    return end(finish(conn, out, ctx, input, output, clock, &mut budget));
                }
                conn.pending.append(input);
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

/// The head deadline of `conn` with `input` (not yet moved back to `pending`) received.
fn deadline_of(conn: &Conn, ctx: &Context, input: &[u8]) -> Instant {
    match conn.head_started {
        Some(started) => started + head_allowance(&ctx.deadlines, input.len()),
        None => conn.deadline(&ctx.deadlines),
    }
}

/// After an error reply the connection never continues: whatever `finish` decided, or a
/// lingering close.
fn end(result: Result<Conn, Next>) -> Next {
    match result {
        Ok(conn) => linger(conn),
        Err(next) => next,
    }
}

/// Sends what the socket takes of `out`, without waiting. `Ok(conn)`: the reply is complete
/// and the connection goes on to its next request. `Err(next)`: the reply waits for the
/// client (parked with `input` kept as pending), yields the worker, or the connection ends.
/// Logs the reply when it ends, completed or cut off, with the body bytes actually sent.
fn finish(
    mut conn: Conn,
    mut out: Box<Outgoing>,
    ctx: &Context,
    input: &mut Vec<u8>,
    output: &mut Vec<u8>,
    clock: &mut Clock,
    budget: &mut u64,
) -> Result<Conn, Next> {
    if out.corked && out.sent == 0 {
        // Corked from the start, so the small part heads share packets with the data around
        // them; uncorked when the reply ends.
        let _ = socket2::SockRef::from(&conn.stream).set_cork(true);
    }
    let attempt = Instant::now();
    match pump(&conn.stream, &mut out, budget) {
        Ok(Pumped::Done) => {
            conn.idle_since = attempt;
            if out.corked {
                let _ = socket2::SockRef::from(&conn.stream).set_cork(false);
            }
            record(&conn, ctx, clock, &out);
            let after = out.after;
            // The head's buffer goes back to the worker for its next reply.
            if out.bytes.capacity() >= output.capacity() {
                *output = std::mem::take(&mut out.bytes);
            }
            match after {
                After::KeepAlive => Ok(conn),
                // Input that arrived while the reply went out (a request sent after ours
                // with `Connection: close`) would turn our close into a reset that destroys
                // the end of the reply still in flight: linger instead, as nginx does.
                After::Close if sys::unread_bytes(conn.stream.as_fd()) > 0 => Err(linger(conn)),
                After::Close => Err(Next::Close),
                After::Linger => Err(linger(conn)),
            }
        }
        Ok(waiting) => {
            conn.pending.append(input);
            if let Pumped::Blocked = waiting {
                out.send_timeout = ctx.deadlines.send;
                out.unsent = None;
                out.next_sample = Instant::now() + sample_interval(out.send_timeout);
            }
            if out.file.is_some() && out.file_slot.is_none() {
                out.file_slot = Some(Slot::take(&ctx.parked_files));
            }
            conn.outgoing = Some(out);
            Err(match waiting {
                Pumped::Blocked => Next::ParkWrite(conn),
                Pumped::Done | Pumped::TurnOver => Next::Yield(conn),
            })
        }
        Err(err) => {
            log_write_error(conn.peer, &err);
            record(&conn, ctx, clock, &out);
            Err(Next::Close)
        }
    }
}

/// Where [`pump`] stopped.
enum Pumped {
    /// Everything is sent.
    Done,
    /// The socket's buffer is full: wait until it is writable.
    Blocked,
    /// This turn's [`WRITE_TURN`] is used up; the socket would take more.
    TurnOver,
}

/// Writes as much of `out` as the socket takes now: bytes with write(2), file windows with
/// sendfile(2), never waiting. `budget` is the file bytes this turn may still send.
fn pump(mut stream: &TcpStream, out: &mut Outgoing, budget: &mut u64) -> io::Result<Pumped> {
    loop {
        if out.pos < out.bytes.len() {
            match stream.write(&out.bytes[out.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    out.pos += n;
                    out.sent += n as u64;
                    out.last_progress = Instant::now();
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(Pumped::Blocked),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
            continue;
        }
        if let Some(window) = &mut out.window {
            if window.len == 0 {
                out.window = None;
                continue;
            }
            if *budget == 0 {
                return Ok(Pumped::TurnOver);
            }
            let Some(file) = &out.file else {
                return Err(io::Error::other("file window without a file"));
            };
            let chunk = window.len.min(*budget);
            match sys::sendfile(stream.as_fd(), file.as_fd(), window.offset, chunk) {
                Ok(0) => {
                    // The file shrank under us: the framing is broken, so the connection
                    // must end.
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shorter than its length",
                    ));
                }
                Ok(n) => {
                    window.offset += n;
                    window.len -= n;
                    out.sent += n;
                    *budget = budget.saturating_sub(n);
                    out.last_progress = Instant::now();
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(Pumped::Blocked),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
            continue;
        }
        match out.tail.pop_front() {
            Some(Chunk::Bytes(bytes)) => {
                out.bytes = bytes;
                out.pos = 0;
            }
            Some(Chunk::Window(window)) => out.window = Some(window),
            None => return Ok(Pumped::Done),
        }
    }
}

/// Answers one complete request whose head is `input[..head_len]`: the reply, ready to
/// write, and how many input bytes the request used.
fn answer(
    conn: &Conn,
    ctx: &Context,
    output: &mut Vec<u8>,
    clock: &mut Clock,
    request: Request,
    input: &[u8],
    head_len: usize,
) -> (Box<Outgoing>, usize) {
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
    let mut buf = std::mem::take(output);
    // A bug must cost one request, not the worker or the connection's client: a panic
    // anywhere in making the reply (the handler, the head's encoding, reading a small body)
    // becomes a 500 and the connection closes (its state may be inconsistent).
    let prepared = panic::catch_unwind(AssertUnwindSafe(|| {
        let (response, keep_alive) = match handler::respond(&request, &ctx.site) {
            Ok(response) => (response, wants_keep_alive),
            Err(err) => {
                log::debug!(
                    "{}: {} {}: {err:?}",
                    conn.peer,
                    request.method.as_str(),
                    request.target
                );
                (
                    ctx.site.pages.render(err),
                    wants_keep_alive && !err.closes_connection(),
                )
            }
        };
        prepare(response, head_only, keep_alive, clock.now(), &mut buf)
    }));
    let mut out = match prepared {
        Ok(Ok(out)) => out,
        Ok(Err(err)) => {
            log::warn!(
                "{}: {} {}: reading the body: {err}",
                conn.peer,
                request.method.as_str(),
                request.target
            );
            fault_reply(ctx, head_only, clock, buf)
        }
        Err(panic) => {
            log::error!(
                "{}: {} {}: handler panicked: {}",
                conn.peer,
                request.method.as_str(),
                request.target,
                panics::message(&*panic)
            );
            fault_reply(ctx, head_only, clock, buf)
        }
    };
    // Unread input (a body, or requests pipelined after `Connection: close`) would make our
    // close a reset that can destroy the reply in flight.
    if out.after == After::Close && (body_unread || input.len() > used) {
        out.after = After::Linger;
    }
    out.log.request_line = format!(
        "{} {} HTTP/1.{}",
        request.method.as_str(),
        request.target,
        request.minor_version
    )
    .into_bytes();
    out.log.referer = request.referer;
    out.log.user_agent = request.user_agent;
    (out, used)
}

/// Encodes `response`'s head into `buf` and makes the reply to write: head and small body in
/// one buffer, a large file body as a window to `sendfile`, a multipart body as a sequence.
/// Fails only if a small body cannot be read.
fn prepare(
    response: Response,
    head_only: bool,
    keep_alive: bool,
    date: &str,
    buf: &mut Vec<u8>,
) -> io::Result<Box<Outgoing>> {
    response.encode_head(date, keep_alive, buf);
    let head_len = buf.len();
    let status = response.status;
    let has_body = !head_only && response.has_body();
    let mut bytes = std::mem::take(buf);
    let body = if has_body { response.body } else { Body::Empty };
    match body {
        Body::Empty => Ok(Outgoing::new(bytes, head_len, status, keep_alive)),
        Body::Static(body) => {
            bytes.extend_from_slice(body);
            Ok(Outgoing::new(bytes, head_len, status, keep_alive))
        }
        Body::Bytes(body) => {
            bytes.extend_from_slice(&body);
            Ok(Outgoing::new(bytes, head_len, status, keep_alive))
        }
        Body::File { file, offset, len } if len <= SMALL_BODY => {
            bytes.resize(head_len + len as usize, 0);
            if let Err(err) = file.read_exact_at(&mut bytes[head_len..], offset) {
                bytes.clear();
                *buf = bytes;
                return Err(err);
            }
            Ok(Outgoing::new(bytes, head_len, status, keep_alive))
        }
        Body::File { file, offset, len } => {
            let mut out = Outgoing::new(bytes, head_len, status, keep_alive);
            out.file = Some(file);
            out.window = Some(Window { offset, len });
            Ok(out)
        }
        Body::Multipart {
            file,
            parts,
            closing,
        } => {
            let mut out = Outgoing::new(bytes, head_len, status, keep_alive);
            for part in parts {
                out.tail.push_back(Chunk::Bytes(part.head));
                out.tail.push_back(Chunk::Window(Window {
                    offset: part.offset,
                    len: part.len,
                }));
            }
            out.tail.push_back(Chunk::Bytes(closing));
            out.file = Some(file);
            out.corked = true;
            Ok(out)
        }
    }
}

/// The 500 that replaces a reply that could not be made; the connection closes after it.
fn fault_reply(
    ctx: &Context,
    head_only: bool,
    clock: &mut Clock,
    mut buf: Vec<u8>,
) -> Box<Outgoing> {
    let response = ctx.site.pages.render(HttpError::Internal);
    let status = response.status;
    response.encode_head(clock.now(), false, &mut buf);
    let head_len = buf.len();
    if !head_only {
        if let Body::Static(page) = response.body {
            buf.extend_from_slice(page);
        }
    }
    Outgoing::new(buf, head_len, status, false)
}

/// An error reply for a request we could not (fully) parse, or one that took too long. The
/// connection lingers after it.
fn error_reply(
    ctx: &Context,
    output: &mut Vec<u8>,
    clock: &mut Clock,
    err: HttpError,
    request_line: Vec<u8>,
) -> Box<Outgoing> {
    let response = ctx.site.pages.render(err);
    let mut out = prepare(response, false, false, clock.now(), output)
        .unwrap_or_else(|_| fault_reply(ctx, false, clock, Vec::new()));
    out.after = After::Linger;
    out.log.request_line = request_line;
    out
}

/// The access-log line for a reply that has ended, completed or cut off.
fn record(conn: &Conn, ctx: &Context, clock: &mut Clock, out: &Outgoing) {
    ctx.log.record(&Entry {
        client: conn.peer.ip(),
        time: &clf_time(clock.now()),
        request_line: &out.log.request_line,
        status: out.log.status,
        bytes: out.body_sent(),
        referer: out.log.referer.as_deref(),
        user_agent: out.log.user_agent.as_deref(),
    });
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
    let _ = sys::recv_nonblocking(stream.as_fd(), input);
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
    Some(Conn::new(stream, peer, slot))
}

/// Closes a connection the server can no longer hold (the poller has stopped at the end of
/// the grace period): a reply in progress is logged with the bytes that went out.
pub fn abandon(conn: Conn, ctx: &Context, scratch: &mut Scratch) {
    if let Some(out) = &conn.outgoing {
        log::info!(
            "{}: grace period over after {} bytes of the reply; closing",
            conn.peer,
            out.sent
        );
        record(&conn, ctx, &mut scratch.clock, out);
    }
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

fn log_write_error(peer: SocketAddr, err: &io::Error) {
    // A client hanging up is not our error (habit 7).
    match err.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted => {
            log::debug!("{peer}: client went away: {err}")
        }
        _ => log::warn!("{peer}: write failed: {err}"),
    }
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
            send: Duration::from_secs(30),
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
