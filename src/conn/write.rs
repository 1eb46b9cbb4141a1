//! A reply on its way out: made from a `Response` in one place ([`Outgoing::new`]), written as
//! far as the socket takes it without ever waiting (write(2) for bytes, sendfile(2) for file
//! windows), and logged in one place ([`Outgoing::record`]) when it ends, completed or cut
//! off. The write half of the connection module. May use: response, accesslog, metrics, sys.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Slot;
use crate::accesslog::{Entry, LogBuf};
use crate::metrics::Board;
use crate::response::{Body, Clock, Date, Response};
use crate::sys;

/// File bodies up to this size are read into the head's buffer and leave in one write;
/// larger ones go by `sendfile`.
pub(super) const SMALL_BODY: u64 = 32 * 1024;
/// File bytes one turn may send before the connection yields the worker to others (nginx's
/// `sendfile_max_chunk` idea): a fast client of a huge file does not hold a worker for the
/// whole file while small requests queue.
pub(super) const WRITE_TURN: u64 = 8 * 1024 * 1024;

/// What a connection does after one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    KeepAlive,
    Close,
    Linger,
}

/// The rest of a reply that the socket has not taken yet, and what to do once it has: the
/// state a worker parks when the client is slow to read, so that any worker can continue
/// exactly where the last one stopped.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// Bytes to send first: the head (with a small body in the same buffer), later a part
    /// head or the closing boundary of a multipart body.
    bytes: Vec<u8>,
    /// How much of `bytes` has gone.
    pos: usize,
    /// A window of `file` to send after `bytes`.
    window: Option<Window>,
    /// What follows: the later parts of a multipart body.
    tail: VecDeque<Chunk>,
    file: Option<Arc<File>>,
    /// Bytes of the response head, which the access log does not count as body.
    head_len: u64,
    /// Bytes sent so far, head included.
    sent: u64,
    /// `TCP_CORK` is on for this reply (multipart: small part heads share packets).
    corked: bool,
    pub(super) after: After,
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
    /// When its request was read, for the status page's histogram (`--status` only).
    started: Option<Instant>,
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
    status: u16,
    text: LogText,
    /// When the request's head was complete (the log's duration starts there).
    started: Instant,
}

/// The request as the access log names it: copied out of the request head, because the head
/// is drained from the input (and the request that borrowed it gone) before a reply ends.
/// The buffers are the worker's, lent to each reply and given back when it ends
/// ([`Outgoing::give_back_buffers`]), so once they have grown the copy allocates nothing.
#[derive(Debug, Default)]
pub(super) struct LogText {
    request_line: Vec<u8>,
    /// The Referer, then the User-Agent.
    fields: String,
    /// Where the Referer ends in `fields`, if one was sent.
    referer_end: Option<usize>,
    user_agent: bool,
}

impl LogText {
    /// Takes the buffers of `spare` (leaving it empty) and fills them.
    fn fill(
        spare: &mut LogText,
        request_line: &[&[u8]],
        referer: Option<&str>,
        user_agent: Option<&str>,
    ) -> LogText {
        let mut text = std::mem::take(spare);
        text.request_line.clear();
        for part in request_line {
            text.request_line.extend_from_slice(part);
        }
        text.fields.clear();
        text.referer_end = referer.map(|referer| {
            text.fields.push_str(referer);
            text.fields.len()
        });
        text.user_agent = user_agent.is_some();
        text.fields.push_str(user_agent.unwrap_or(""));
        text
    }

    fn referer(&self) -> Option<&str> {
        self.referer_end.map(|end| &self.fields[..end])
    }

    fn user_agent(&self) -> Option<&str> {
        let start = self.referer_end.unwrap_or(0);
        self.user_agent.then(|| &self.fields[start..])
    }
}

/// Where [`Outgoing::send`] stopped.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pumped {
    /// Everything is sent.
    Done,
    /// The socket's buffer is full: wait until it is writable.
    Blocked,
    /// This turn's [`WRITE_TURN`] is used up; the socket would take more.
    TurnOver,
}

impl Outgoing {
    /// The one way a `Response` becomes a reply to write: its head is encoded into `buf`
    /// (whose allocation the reply takes), a body in memory follows it in the same buffer, a
    /// file body is a window to `sendfile` (see [`Outgoing::read_small_body`]), a multipart
    /// body a sequence of part heads and windows. A HEAD request, or a status that has no
    /// body, sends the head alone.
    pub(super) fn new(
        response: Response,
        head_only: bool,
        keep_alive: bool,
        date: Date<'_>,
        buf: &mut Vec<u8>,
    ) -> Outgoing {
        response.encode_head(date, keep_alive, buf);
        let has_body = !head_only && response.has_body();
        let now = Instant::now();
        let mut out = Outgoing {
            head_len: buf.len() as u64,
            bytes: std::mem::take(buf),
            pos: 0,
            window: None,
            tail: VecDeque::new(),
            file: None,
            sent: 0,
            corked: false,
            after: if keep_alive {
                After::KeepAlive
            } else {
                After::Close
            },
            log: LogLine {
                status: response.status,
                text: LogText::default(),
                started: now,
            },
            last_progress: now,
            unsent: None,
            next_sample: now,
            send_timeout: Duration::ZERO,
            file_slot: None,
            started: None,
        };
        if !has_body {
            return out;
        }
        match response.body {
            Body::Empty => {}
            Body::Static(body) => out.bytes.extend_from_slice(body),
            Body::Bytes(body) => out.bytes.extend_from_slice(&body),
            Body::Shared(body) => out.bytes.extend_from_slice(&body),
            Body::File { file, offset, len } => {
                out.file = Some(file);
                out.window = Some(Window { offset, len });
            }
            Body::Multipart {
                file,
                parts,
                closing,
            } => {
                for part in parts {
                    out.tail.push_back(Chunk::Bytes(part.head));
                    out.tail.push_back(Chunk::Window(Window {
                        offset: part.offset,
                        len: part.len,
                    }));
                }
                out.tail.push_back(Chunk::Bytes(closing));
                out.file = Some(file);
                // Corked from the start, so the small part heads share packets with the
                // data around them; uncorked when the reply ends.
                out.corked = true;
            }
        }
        out
    }

    /// Reads a file body of at most [`SMALL_BODY`] into the head's buffer, so head and body
    /// leave in one write and the file closes at once. Fails only if the file cannot be read.
    pub(super) fn read_small_body(&mut self) -> io::Result<()> {
        let (Some(window), Some(file)) = (self.window, &self.file) else {
            return Ok(());
        };
        if window.len > SMALL_BODY {
            return Ok(());
        }
        let head_len = self.bytes.len();
        self.bytes.resize(head_len + window.len as usize, 0);
        file.read_exact_at(&mut self.bytes[head_len..], window.offset)?;
        self.window = None;
        self.file = None;
        Ok(())
    }

    /// Names the request in the reply's access-log line: the request line is `request_line`
    /// joined, copied into the buffers of `spare` (the worker's, given back by
    /// [`Outgoing::give_back_buffers`]); its duration counts from `started`.
    pub(super) fn log_as(
        &mut self,
        spare: &mut LogText,
        request_line: &[&[u8]],
        referer: Option<&str>,
        user_agent: Option<&str>,
        started: Instant,
    ) {
        self.log.text = LogText::fill(spare, request_line, referer, user_agent);
        self.log.started = started;
    }

    /// Bytes sent so far, head included.
    pub(super) fn sent(&self) -> u64 {
        self.sent
    }

    /// When the request was read (`--status` only: it costs a clock read).
    pub(super) fn set_started(&mut self, started: Option<Instant>) {
        self.started = started;
    }

    /// Counts the reply, ended, on the scoreboard: status, bytes sent, time taken.
    pub(super) fn count(&self, board: &Board) {
        let took = self.started.map(|started| started.elapsed());
        board.replied(self.log.status, self.sent, took);
    }

    /// Shows the reply's request on the scoreboard, as a worker takes it up again.
    pub(super) fn show(&self, board: &Board) {
        board.request(&[&self.log.text.request_line]);
    }

    /// Sends what `stream` takes now, never waiting. `budget` is the file bytes this turn
    /// may still send.
    pub(super) fn send(&mut self, stream: &TcpStream, budget: &mut u64) -> io::Result<Pumped> {
        if self.corked && self.sent == 0 {
            let _ = socket2::SockRef::from(stream).set_cork(true);
        }
        let pumped = self.pump(stream, budget)?;
        if let Pumped::Done = pumped {
            if self.corked {
                let _ = socket2::SockRef::from(stream).set_cork(false);
            }
        }
        Ok(pumped)
    }

    /// Writes as much as the socket takes now: bytes with write(2), file windows with
    /// sendfile(2), never waiting.
    fn pump(&mut self, mut stream: &TcpStream, budget: &mut u64) -> io::Result<Pumped> {
        loop {
            if self.pos < self.bytes.len() {
                match taken(stream.write(&self.bytes[self.pos..]).map(|n| n as u64))? {
                    Taken::Bytes(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Taken::Bytes(n) => {
                        self.pos += n as usize;
                        self.sent += n;
                        self.last_progress = Instant::now();
                    }
                    Taken::Full => return Ok(Pumped::Blocked),
                    Taken::Again => {}
                }
                continue;
            }
            if let Some(window) = &mut self.window {
                if window.len == 0 {
                    self.window = None;
                    continue;
                }
                if *budget == 0 {
                    return Ok(Pumped::TurnOver);
                }
                let Some(file) = &self.file else {
                    return Err(io::Error::other("file window without a file"));
                };
                let chunk = window.len.min(*budget);
                match taken(sys::sendfile(
                    stream.as_fd(),
                    file.as_fd(),
                    window.offset,
                    chunk,
                ))? {
                    Taken::Bytes(0) => {
                        // The file shrank under us: the framing is broken, so the connection
                        // must end.
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file shorter than its length",
                        ));
                    }
                    Taken::Bytes(n) => {
                        window.offset += n;
                        window.len -= n;
                        self.sent += n;
                        *budget = budget.saturating_sub(n);
                        self.last_progress = Instant::now();
                    }
                    Taken::Full => return Ok(Pumped::Blocked),
                    Taken::Again => {}
                }
                continue;
            }
            match self.tail.pop_front() {
                Some(Chunk::Bytes(bytes)) => {
                    self.bytes = bytes;
                    self.pos = 0;
                }
                Some(Chunk::Window(window)) => self.window = Some(window),
                None => return Ok(Pumped::Done),
            }
        }
    }

    /// Gets the reply ready to wait outside the workers after [`Outgoing::send`] stopped at
    /// `waiting`. A full socket starts the send timeout's clock over, from the last progress,
    /// with a fresh send-queue baseline; an open file takes its place in the descriptor count.
    pub(super) fn hold(
        &mut self,
        waiting: Pumped,
        send_timeout: Duration,
        parked_files: &Arc<AtomicUsize>,
    ) {
        if let Pumped::Blocked = waiting {
            self.send_timeout = send_timeout;
            self.unsent = None;
            self.next_sample = Instant::now() + sample_interval(send_timeout);
        }
        if self.file.is_some() && self.file_slot.is_none() {
            self.file_slot = Some(Slot::take(parked_files));
        }
    }

    /// When the client last took a byte of this reply.
    pub(super) fn last_progress(&self) -> Instant {
        self.last_progress
    }

    /// For a parked reply, when its sample is due: looks at the socket's send queue (see
    /// `Conn::sample_send_queue`). Returns the deadline, which moves only with progress;
    /// `None` if no sample was due.
    pub(super) fn sample_send_queue(
        &mut self,
        socket: BorrowedFd<'_>,
        now: Instant,
    ) -> Option<Instant> {
        if now < self.next_sample {
            return None;
        }
        self.next_sample = now + sample_interval(self.send_timeout);
        if let Some(unsent) = sys::unsent_bytes(socket) {
            if self.unsent.is_some_and(|before| unsent < before) {
                self.last_progress = now;
            }
            self.unsent = Some(unsent);
        }
        Some(self.last_progress + self.send_timeout)
    }

    /// The access-log line for a reply that has ended, completed or cut off, with the body
    /// bytes that actually went out: the one place a reply is logged.
    pub(super) fn record(&self, client: IpAddr, log: &mut LogBuf, clock: &mut Clock) {
        let (time, second) = clock.log_time();
        log.record(
            &Entry {
                client,
                time,
                request_line: &self.log.text.request_line,
                status: self.log.status,
                bytes: self.sent.saturating_sub(self.head_len),
                duration: self.log.started.elapsed(),
                referer: self.log.text.referer(),
                user_agent: self.log.text.user_agent(),
            },
            second,
        );
    }

    /// Gives the head's buffer and the log line's buffers back to the worker for its next
    /// reply, each if it is the larger. Call once the reply has been logged.
    pub(super) fn give_back_buffers(&mut self, output: &mut Vec<u8>, spare: &mut LogText) {
        if self.bytes.capacity() >= output.capacity() {
            *output = std::mem::take(&mut self.bytes);
        }
        let text = &mut self.log.text;
        if text.request_line.capacity() + text.fields.capacity()
            >= spare.request_line.capacity() + spare.fields.capacity()
        {
            *spare = std::mem::take(text);
        }
    }
}

/// How often a parked reply's send queue is sampled: often enough that a reply is given up
/// close to `--send-timeout` after the client's last byte (within a fifth of it), rarely
/// enough that thousands of parked replies cost the poller little.
fn sample_interval(send_timeout: Duration) -> Duration {
    (send_timeout / 5).clamp(Duration::from_millis(250), Duration::from_secs(2))
}

/// Logs a failed write. A client that hangs up mid-reply (a closed tab, a cancelled
/// download) is normal traffic, not a fault of ours: debug, not a warning.
pub(super) fn log_write_error(peer: SocketAddr, err: &io::Error) {
    match err.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted => {
            log::debug!("{peer}: client went away: {err}")
        }
        _ => log::warn!("{peer}: write failed: {err}"),
    }
}

/// What one non-blocking write or sendfile came to.
enum Taken {
    /// The socket took this many bytes (0: it can take no more, ever).
    Bytes(u64),
    /// The socket's buffer is full: wait until it is writable.
    Full,
    /// Interrupted by a signal before anything was written: try again.
    Again,
}

/// Sorts a write's result into [`Taken`]; any other error ends the reply.
fn taken(result: io::Result<u64>) -> io::Result<Taken> {
    match result {
        Ok(n) => Ok(Taken::Bytes(n)),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(Taken::Full),
        Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(Taken::Again),
        Err(err) => Err(err),
    }
}
