//! One connection's turn on a worker: read what has arrived (never waiting for more), parse,
//! respond (the reply is made in `conn/reply.rs`), write what the socket takes (never waiting
//! for it to take more: `conn/write.rs`), log, and say what happens next: park it until the
//! client sends more or makes room for the rest of a reply, keep going with pipelined
//! requests, or close. The only module that reads or writes a client socket. May use, with
//! its parts: request, handler, response, error, accesslog, config (deadlines), panics,
//! metrics (`--status`), sys.

mod close;
mod reply;
mod score;
mod write;

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::accesslog::{AccessLog, LogBuf};
use crate::config::Deadlines;
use crate::error::HttpError;
use crate::handler::Site;
use crate::metrics::{Board, Metrics, State};
use crate::request::{self, Parsed};
use crate::response::Clock;
use crate::sys;
use close::linger;
pub use close::{abandon, drain, refuse};
use reply::{answer, error_reply};
use write::{log_write_error, After, LogText, Outgoing, Pumped, WRITE_TURN};

/// Requests served back to back from one connection's buffer before it yields the worker.
const TURN: usize = 32;
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
    /// A reply the socket has not fully taken: continued when it is writable again. Boxed
    /// only here, when it parks: a reply that goes out at once never leaves the stack.
    outgoing: Option<Box<Outgoing>>,
    /// Added to the workers' epoll set (by its first park): later parks only re-arm it.
    registered: bool,
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
    /// Wraps a socket from [`crate::sys::accept_nonblocking`] (non-blocking, `TCP_NODELAY`).
    pub fn accepted(stream: TcpStream, peer: SocketAddr, slot: Slot) -> Conn {
        Conn::wrap(stream, peer, slot)
    }

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
        Conn::wrap(stream, peer, slot)
    }

    fn wrap(stream: TcpStream, peer: SocketAddr, slot: Slot) -> Conn {
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
            registered: false,
            _slot: slot,
        }
    }

    /// The socket, for registering with a poller.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// Whether the socket is in the workers' epoll set (it leaves it when it closes).
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// Notes that the socket was added to the workers' epoll set.
    pub fn set_registered(&mut self) {
        self.registered = true;
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
            return out.last_progress() + deadlines.send;
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
        out.sample_send_queue(self.stream.as_fd(), now)
    }

    /// Marks the connection as having missed its deadline; its next turn answers 408 (a head
    /// in progress) or gives up the reply (a write).
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
    /// Where each thread's log buffer ([`Scratch::new`]) writes its lines.
    pub log: AccessLog,
    pub deadlines: Deadlines,
    /// Set on shutdown: finish the reply in hand, then close.
    pub stopping: Arc<AtomicBool>,
    /// Files held open by replies that wait for their client: each is a descriptor the
    /// admission control must count.
    pub parked_files: Arc<AtomicUsize>,
    /// The status page's counters (`--status`; `None`: off, and nothing is counted).
    pub metrics: Option<Arc<Metrics>>,
}

/// A worker's reusable buffers, clock and access-log buffer (the accept loop has one too, for
/// its 503s).
pub struct Scratch {
    input: Vec<u8>,
    output: Vec<u8>,
    rec: Recorder,
}

/// What dates a reply and logs it: the thread's clock, its access-log buffer, the buffers a
/// reply copies its log line's request fields into (lent to each reply), and its slot on
/// the status page (`--status` only: `conn/score.rs`).
struct Recorder {
    clock: Clock,
    log: LogBuf,
    text: LogText,
    board: Option<Board>,
}

impl Scratch {
    /// Buffers for one thread, its log lines gathered for `log`.
    pub fn new(log: &AccessLog) -> Scratch {
        Scratch {
            input: Vec::new(),
            output: Vec::new(),
            rec: Recorder {
                clock: Clock::default(),
                log: log.buffer(),
                text: LogText::default(),
                board: None,
            },
        }
    }

    /// Writes out the access-log lines gathered so far: the thread is about to wait (for
    /// work, for connections), and a quiet server's log must be complete. Lines left are
    /// written when the `Scratch` is dropped, too.
    pub fn flush_log(&mut self) {
        self.rec.log.flush();
    }

    /// The buffers for a new turn: the input emptied, the output buffer and recorder as left.
    fn fresh(&mut self) -> (&mut Vec<u8>, &mut Vec<u8>, &mut Recorder) {
        self.input.clear();
        (&mut self.input, &mut self.output, &mut self.rec)
    }
}

impl Recorder {
    /// At the start of a turn: writes out log lines that have waited since an earlier second,
    /// so a worker that never runs out of work still writes at least once a second. Reads
    /// the clock only when lines are waiting.
    fn write_stale_lines(&mut self) {
        if !self.log.is_empty() {
            let (_, second) = self.clock.log_time();
            self.log.flush_if_older(second);
        }
    }

    /// Logs the reply `out`, ended (completed or cut off), to the thread's buffer, and
    /// counts it (`--status`).
    fn record(&mut self, client: IpAddr, out: &Outgoing) {
        if self.log.is_on() {
            out.record(client, &mut self.log, &mut self.clock);
        }
        self.count(out);
    }
}

/// Serves `conn` for as long as it has work the socket allows: first the rest of a parked
/// reply, then every request already buffered or readable without waiting.
pub fn serve(conn: Conn, ctx: &Context, scratch: &mut Scratch) -> Next {
    scratch.rec.mark(State::Reading);
    let next = serve_turn(conn, ctx, scratch);
    scratch.rec.mark(State::Idle);
    next
}

fn serve_turn(mut conn: Conn, ctx: &Context, scratch: &mut Scratch) -> Next {
    let (input, output, rec) = scratch.fresh();
    rec.write_stale_lines();
    let mut budget = WRITE_TURN;
    if let Some(out) = conn.outgoing.take() {
        rec.show(&out);
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
                out.sent()
            );
            rec.record(conn.peer.ip(), &out);
            // Reset, not FIN: a FIN would queue behind the megabytes the client refuses, and
            // the orphaned socket would hold them for as long as the client keeps it open
            // (nginx's `reset_timedout_connection`).
            let _ = socket2::SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO));
            return Next::Close;
        }
        conn = match finish(conn, *out, ctx, input, output, rec, &mut budget) {
            Ok(conn) => conn,
            Err(next) => return next,
        };
    }
    input.append(&mut conn.pending);
    if conn.expired {
        // RFC 9110 §15.5.9: the head was too slow; say so and close.
        conn.expired = false;
        let line = request::request_line(input);
        let out = error_reply(ctx, output, rec, HttpError::RequestTimeout, line);
        input.clear();
        return end(finish(conn, out, ctx, input, output, rec, &mut budget));
    }

    let mut served = 0;
    // The last read took all the socket had (it did not fill the room it was given).
    let mut drained = false;
    loop {
        match request::parse(input) {
            Ok(Parsed::Complete(request, head_len)) => {
                conn.head_started = None;
                conn.served = conn.served.saturating_add(1);
                let (out, used) = answer(conn.peer, ctx, output, rec, request, input, head_len);
                // The request borrowed from `input`; it is gone with `answer`, and the log
                // line holds its own copy.
                input.drain(..used);
                conn = match finish(conn, out, ctx, input, output, rec, &mut budget) {
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
                if drained {
                    // Nothing was left to read a moment ago: park at once, without a read to
                    // learn that again (what arrived since makes the re-armed socket ready).
                    return Next::Park(conn);
                }
            }
            Ok(Parsed::Partial) => {
                if !input.is_empty() && conn.head_started.is_none() {
                    conn.head_started = Some(Instant::now());
                }
            }
            Err(err) => {
                let line = request::request_line(input);
                let out = error_reply(ctx, output, rec, err, line);
                input.clear();
                return end(finish(conn, out, ctx, input, output, rec, &mut budget));
            }
        }
        match sys::recv_nonblocking(conn.stream.as_fd(), input) {
            Ok(0) => return Next::Close,
            Ok(_) => drained = input.len() < input.capacity(),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if conn.head_started.is_some() && Instant::now() >= deadline_of(&conn, ctx, input) {
                    // Data kept coming, but too slowly: the poller never saw it idle long
                    // enough to expire it.
                    let line = request::request_line(input);
                    let out = error_reply(ctx, output, rec, HttpError::RequestTimeout, line);
                    input.clear();
                    return end(finish(conn, out, ctx, input, output, rec, &mut budget));
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
    mut out: Outgoing,
    ctx: &Context,
    input: &mut Vec<u8>,
    output: &mut Vec<u8>,
    rec: &mut Recorder,
    budget: &mut u64,
) -> Result<Conn, Next> {
    let attempt = Instant::now();
    match out.send(&conn.stream, budget) {
        Ok(Pumped::Done) => {
            conn.idle_since = attempt;
            rec.record(conn.peer.ip(), &out);
            out.give_back_buffers(output, &mut rec.text);
            match out.after {
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
            out.hold(waiting, ctx.deadlines.send, &ctx.parked_files);
            conn.outgoing = Some(Box::new(out));
            Err(match waiting {
                Pumped::Blocked => Next::ParkWrite(conn),
                Pumped::Done | Pumped::TurnOver => Next::Yield(conn),
            })
        }
        Err(err) => {
            log_write_error(conn.peer, &err);
            rec.record(conn.peer.ip(), &out);
            out.give_back_buffers(output, &mut rec.text);
            Err(Next::Close)
        }
    }
}

#[cfg(test)]
mod tests;
