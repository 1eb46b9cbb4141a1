//! The access log: one Combined Log Format line per response, formatted by the worker that
//! sent it straight into that worker's own buffer ([`LogBuf`]) and written, whole lines only,
//! with one write(2) when the buffer fills, before the worker waits for work, at least once a
//! second, and when the buffer is dropped. No thread hop, no lock, no allocation per line.
//! May use: libc, log, std.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Buffered bytes that make a worker write its lines out (nginx's `access_log … buffer=64k`).
pub const BUFFER: usize = 64 * 1024;
/// The most one write(2) to a pipe may carry and still be atomic (POSIX `PIPE_BUF`, 4096 on
/// Linux): a longer write may be split, and another writer's bytes land in between.
pub const PIPE_BUF: usize = 4096;
/// The most of the request line that is logged, escaped; the rest is replaced by `...`, so a
/// 8 KiB target cannot make an 8 KiB log line.
pub const MAX_FIELD: usize = 2048;
/// The most of the `Referer` or `User-Agent` value that is logged, escaped. With
/// [`MAX_FIELD`] this keeps every line within [`PIPE_BUF`] (a test checks the worst case), so
/// no line is ever torn, whatever the log is.
pub const MAX_HEADER: usize = 896;

/// Where lines go, shared by every worker's buffer. Cheap to clone. `off` has nowhere.
#[derive(Clone)]
pub struct AccessLog(Option<Arc<Sink>>);

/// The open log and how much one write to it may carry.
struct Sink {
    file: File,
    /// Bytes one write(2) may carry without being torn: unlimited for a regular file (opened
    /// `O_APPEND`, each write lands whole at the end, under the inode's lock), [`PIPE_BUF`]
    /// for a pipe, a terminal, a socket.
    atomic: usize,
    /// Writes are failing: the first failure is logged, not every one after it.
    failing: AtomicBool,
    /// Lines lost since writes started failing, reported when they work again.
    lost: AtomicU64,
    /// Held while a buffer is written, so this process's writers take turns; true while a
    /// failed write (a disk that filled mid-write) left part of a line at the end of the log,
    /// which the next write then ends with a newline before anything else.
    torn: Mutex<bool>,
}

/// What one response contributes to its log line.
pub struct Entry<'a> {
    pub client: IpAddr,
    /// Common Log Format time, e.g. `06/Nov/1994:08:49:37 +0000`.
    pub time: &'a str,
    /// The request line, raw (it is escaped here).
    pub request_line: &'a [u8],
    pub status: u16,
    pub bytes: u64,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

impl AccessLog {
    /// Appends to `path` (created if missing). `O_APPEND`: every write goes to the end, so
    /// workers (and other processes logging to the same file) never overwrite each other.
    pub fn open(path: &Path) -> io::Result<AccessLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        AccessLog::to(file)
    }

    /// Writes to this process's stderr (a copy of descriptor 2). A closed stderr turns the
    /// log off, as std's `eprintln!` ignores a closed stderr.
    pub fn stderr() -> io::Result<AccessLog> {
        match io::stderr().as_fd().try_clone_to_owned() {
            Ok(fd) => AccessLog::to(File::from(fd)),
            Err(err) if err.raw_os_error() == Some(libc::EBADF) => Ok(AccessLog::off()),
            Err(err) => Err(err),
        }
    }

    /// No access log (`-l off`): recording a line costs nothing.
    pub fn off() -> AccessLog {
        AccessLog(None)
    }

    /// Logs to `file`, whatever it is: a regular file takes any write whole; anything else
    /// (pipe, terminal, socket) gets writes of at most [`PIPE_BUF`].
    fn to(file: File) -> io::Result<AccessLog> {
        let regular = file.metadata()?.file_type().is_file();
        Ok(AccessLog(Some(Arc::new(Sink {
            file,
            atomic: if regular { usize::MAX } else { PIPE_BUF },
            failing: AtomicBool::new(false),
            lost: AtomicU64::new(0),
            torn: Mutex::new(false),
        }))))
    }

    /// A buffer for one thread's lines (a worker's, the accept loop's).
    pub fn buffer(&self) -> LogBuf {
        LogBuf {
            buf: match self.0 {
                // Room for a full buffer plus the line that fills it: never grows.
                Some(_) => Vec::with_capacity(BUFFER + PIPE_BUF),
                None => Vec::new(),
            },
            sink: self.0.clone(),
            since: 0,
        }
    }
}

/// One thread's lines not yet written. Writes them out, whole lines only, when
/// [`BUFFER`] bytes have gathered, when the oldest line waiting is from an earlier clock
/// second than a new line or a new turn of the worker ([`LogBuf::flush_if_older`]: a busy
/// worker writes at least once a second), on [`LogBuf::flush`] (a worker about to wait for
/// work) and when dropped (a worker that stops).
pub struct LogBuf {
    sink: Option<Arc<Sink>>,
    buf: Vec<u8>,
    /// The clock second of the oldest line in `buf`.
    since: u64,
}

impl LogBuf {
    /// Whether lines go anywhere (`false` with `-l off`).
    pub fn is_on(&self) -> bool {
        self.sink.is_some()
    }

    /// Adds `entry`'s line, formatted in place. `second` is the clock's second now (the
    /// worker's `Clock` ticks once a second), for the age check.
    pub fn record(&mut self, entry: &Entry<'_>, second: u64) {
        if self.sink.is_none() {
            return;
        }
        if self.buf.is_empty() {
            self.since = second;
        }
        write_line(entry, &mut self.buf);
        if self.buf.len() >= BUFFER {
            self.flush();
        } else {
            self.flush_if_older(second);
        }
    }

    /// Whether no line is waiting.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Writes out the buffered lines if the oldest is from a clock second before `second`:
    /// checked on every line and every turn of a worker, so one that never runs out of work
    /// still writes at least once a second.
    pub fn flush_if_older(&mut self, second: u64) {
        // `!=`, not `<`: a clock set back must not hold lines until it catches up.
        if !self.buf.is_empty() && second != self.since {
            self.flush();
        }
    }

    /// Writes out every buffered line now.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if let Some(sink) = &self.sink {
            sink.write_lines(&self.buf);
        }
        // Lost or written, they are gone: a log that fails must not grow a worker's memory.
        self.buf.clear();
    }
}

impl Drop for LogBuf {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Sink {
    /// Writes `lines` (whole lines) in as few write(2)s as keep each one untorn.
    fn write_lines(&self, lines: &[u8]) {
        self.write_lines_to(&mut &self.file, lines);
    }

    /// [`Sink::write_lines`] to any writer (the tests' stands in for a disk that fills).
    fn write_lines_to(&self, out: &mut impl Write, lines: &[u8]) {
        let mut torn = self.torn.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rest = lines;
        while !rest.is_empty() {
            let (chunk, later) = rest.split_at(whole_lines(rest, self.atomic));
            let written = if *torn {
                write_all(out, b"\n").and_then(|()| {
                    *torn = false;
                    write_all(out, chunk)
                })
            } else {
                write_all(out, chunk)
            };
            if let Err((part, err)) = written {
                *torn |= part > 0;
                let lost = rest.iter().filter(|&&b| b == b'\n').count() as u64;
                self.lost.fetch_add(lost, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    log::warn!("access log: write failed ({err}); lines are lost until it works");
                }
                return;
            }
            rest = later;
        }
        if self.failing.load(Ordering::Relaxed) && self.failing.swap(false, Ordering::Relaxed) {
            let lost = self.lost.swap(0, Ordering::Relaxed);
            log::warn!("access log: writing again; about {lost} lines were lost");
        }
    }
}

/// The length of the longest start of `lines` that is whole lines and at most `limit` bytes.
/// A first line longer than `limit` is taken alone: one write(2) still carries it, but to a
/// pipe it is no longer atomic and may interleave with another writer's. (The field caps keep
/// every line we format within [`PIPE_BUF`], so that does not happen here.)
fn whole_lines(lines: &[u8], limit: usize) -> usize {
    if lines.len() <= limit {
        return lines.len();
    }
    let within = lines.get(..limit).unwrap_or(lines);
    match within.iter().rposition(|&b| b == b'\n') {
        Some(end) => end + 1,
        None => lines
            .iter()
            .position(|&b| b == b'\n')
            .map_or(lines.len(), |end| end + 1),
    }
}

/// Writes all of `bytes`, going on after a short write or EINTR. A short write to a regular
/// file happens only when the disk fills (or a file size limit is hit); the rest then goes in
/// a second write, which another process's may precede. On failure, says how many bytes did
/// go out first.
fn write_all(file: &mut impl Write, bytes: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut done = 0;
    while let Some(rest) = bytes.get(done..).filter(|rest| !rest.is_empty()) {
        match file.write(rest) {
            Ok(0) => return Err((done, io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // A non-blocking log descriptor (inherited that way) that is full is a failure
            // too: a worker never spins on it.
            Err(err) => return Err((done, err)),
        }
    }
    Ok(())
}

/// Appends `host - - [time] "request" status bytes "referer" "user-agent"\n` (Apache's
/// "combined") to `out`, without allocating.
fn write_line(entry: &Entry<'_>, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{} - - [{}] \"", entry.client, entry.time);
    escape_into(entry.request_line, MAX_FIELD, out);
    let _ = write!(out, "\" {} ", entry.status);
    if entry.bytes == 0 {
        out.push(b'-');
    } else {
        let _ = write!(out, "{}", entry.bytes);
    }
    for field in [entry.referer, entry.user_agent] {
        out.extend_from_slice(b" \"");
        match field {
            Some(value) => escape_into(value.as_bytes(), MAX_HEADER, out),
            None => out.push(b'-'),
        }
        out.push(b'"');
    }
    out.push(b'\n');
}

/// Printable ASCII stays; quotes, backslashes, control and non-ASCII bytes become `\xHH`, so
/// a client can neither forge a line nor a field. At most `cap` bytes come out (no escape is
/// cut in two); if the field does not fit, `...` follows what does.
fn escape_into(bytes: &[u8], cap: usize, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut room = cap;
    for &b in bytes {
        let plain = (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
        let width = if plain { 1 } else { 4 };
        if width > room {
            out.extend_from_slice(b"...");
            return;
        }
        room -= width;
        if plain {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        }
    }
}

#[cfg(test)]
mod tests;
