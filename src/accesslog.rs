//! The access log: one line per response, in the `--log-format` chosen (`accesslog/format.rs`),
//! formatted by the worker that sent it straight into that worker's own buffer ([`LogBuf`])
//! and written, whole lines only, with one write(2) when the buffer fills, before the worker
//! waits for work, at least once a second, and when the buffer is dropped. No thread hop, no
//! lock, no allocation per line. A log file is reopened by its name on request
//! ([`AccessLog::reopen`], SIGUSR1/SIGHUP), for logrotate.
//! May use: config (the format), libc, log, serde, serde_json, std.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::LogFormat;

/// Buffered bytes that make a worker write its lines out (nginx's `access_log … buffer=64k`).
pub const BUFFER: usize = 64 * 1024;
/// The most one write(2) to a pipe may carry and still be atomic (POSIX `PIPE_BUF`, 4096 on
/// Linux): a longer write may be split, and another writer's bytes land in between.
pub const PIPE_BUF: usize = 4096;
/// The most of the request line (in JSON, of its method, path and protocol together) that is
/// logged, escaped; the rest is replaced by `...`, so a 8 KiB target cannot make an 8 KiB log
/// line.
pub const MAX_FIELD: usize = 2048;
/// The most of the `Referer` or `User-Agent` value that is logged, escaped. With
/// [`MAX_FIELD`] this keeps every line within [`PIPE_BUF`] (a test checks the worst case of
/// each format), so no line is ever torn, whatever the log is.
pub const MAX_HEADER: usize = 896;

/// Where lines go, shared by every worker's buffer, and their format. Cheap to clone. `off`
/// has nowhere.
#[derive(Clone)]
pub struct AccessLog {
    sink: Option<Arc<Sink>>,
    format: LogFormat,
}

/// The open log and how much one write to it may carry.
struct Sink {
    /// The file's name, to reopen it by (`None`: stderr, or a descriptor the tests made).
    path: Option<PathBuf>,
    /// Held while a buffer is written, so this process's writers take turns, and while the
    /// file is swapped for a reopened one: a buffer goes wholly to the old file or wholly to
    /// the new one.
    out: Mutex<Out>,
    /// Writes are failing: the first failure is logged, not every one after it.
    failing: AtomicBool,
    /// Lines lost since writes started failing, reported when they work again.
    lost: AtomicU64,
}

/// The file lines are written to.
struct Out {
    file: File,
    /// Bytes one write(2) may carry without being torn: unlimited for a regular file (opened
    /// `O_APPEND`, each write lands whole at the end, under the inode's lock), [`PIPE_BUF`]
    /// for a pipe, a terminal, a socket.
    atomic: usize,
    /// A failed write (a disk that filled mid-write) left part of a line at the end of the
    /// log, which the next write then ends with a newline before anything else.
    torn: bool,
}

impl Out {
    fn new(file: File) -> io::Result<Out> {
        let regular = file.metadata()?.file_type().is_file();
        Ok(Out {
            file,
            atomic: if regular { usize::MAX } else { PIPE_BUF },
            torn: false,
        })
    }
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
    /// From the complete request head to the reply's last byte handed to the kernel (or its
    /// end, cut off).
    pub duration: Duration,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// Appends to `path`, creating it if missing (mode 0666 less the umask). `O_APPEND`: every
/// write goes to the end, so workers (and other processes logging to the same file) never
/// overwrite each other.
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl AccessLog {
    /// Lines in `format`, appended to `path` (see [`open_append`]).
    pub fn open(path: &Path, format: LogFormat) -> io::Result<AccessLog> {
        let file = open_append(path)?;
        AccessLog::to(file, Some(path.to_owned()), format)
    }

    /// Lines in `format` to this process's stderr (a copy of descriptor 2). A closed stderr
    /// turns the log off, as std's `eprintln!` ignores a closed stderr.
    pub fn stderr(format: LogFormat) -> io::Result<AccessLog> {
        match io::stderr().as_fd().try_clone_to_owned() {
            Ok(fd) => AccessLog::to(File::from(fd), None, format),
            Err(err) if err.raw_os_error() == Some(libc::EBADF) => Ok(AccessLog::off()),
            Err(err) => Err(err),
        }
    }

    /// No access log (`-l off`): recording a line costs nothing.
    pub fn off() -> AccessLog {
        AccessLog {
            sink: None,
            format: LogFormat::Combined,
        }
    }

    /// Logs to `file` (named `path`, if it has a name to reopen), whatever it is: a regular
    /// file takes any write whole; anything else (pipe, terminal, socket) gets writes of at
    /// most [`PIPE_BUF`].
    fn to(file: File, path: Option<PathBuf>, format: LogFormat) -> io::Result<AccessLog> {
        Ok(AccessLog {
            sink: Some(Arc::new(Sink {
                path,
                out: Mutex::new(Out::new(file)?),
                failing: AtomicBool::new(false),
                lost: AtomicU64::new(0),
            })),
            format,
        })
    }

    /// Opens the log file again by its name, appending (created if missing), and sends every
    /// line written from now on there, buffered ones included: after logrotate renamed it
    /// (nginx's SIGUSR1). Each buffer goes wholly to the old file or wholly to the new one, so
    /// no line is torn, lost or written twice. `Ok(None)`: there is no file to reopen (stderr,
    /// off). On failure (the error names the file) the old file stays in use.
    pub fn reopen(&self) -> io::Result<Option<&Path>> {
        let Some((sink, path)) = self
            .sink
            .as_ref()
            .and_then(|sink| Some((sink, sink.path.as_deref()?)))
        else {
            return Ok(None);
        };
        // Opened before the lock is taken: writers wait only for the swap.
        let fresh = open_append(path)
            .and_then(Out::new)
            .map_err(|err| io::Error::new(err.kind(), format!("'{}': {err}", path.display())))?;
        let old = std::mem::replace(
            &mut *sink.out.lock().unwrap_or_else(PoisonError::into_inner),
            fresh,
        );
        // Closed after the lock is released.
        drop(old);
        Ok(Some(path))
    }

    /// A buffer for one thread's lines (a worker's, the accept loop's).
    pub fn buffer(&self) -> LogBuf {
        LogBuf {
            buf: match self.sink {
                // Room for a full buffer plus the line that fills it: never grows.
                Some(_) => Vec::with_capacity(BUFFER + PIPE_BUF),
                None => Vec::new(),
            },
            sink: self.sink.clone(),
            format: self.format,
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
    format: LogFormat,
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
        format::write_line(self.format, entry, &mut self.buf);
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
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let Out { file, atomic, torn } = &mut *out;
        self.write_lines_to(&mut &*file, *atomic, torn, lines);
    }

    /// [`Sink::write_lines`] to any writer (the tests' stands in for a disk that fills), each
    /// write at most `atomic` bytes; `torn` as in [`Out`]. Called with the lock held.
    fn write_lines_to(&self, out: &mut impl Write, atomic: usize, torn: &mut bool, lines: &[u8]) {
        let mut rest = lines;
        while !rest.is_empty() {
            let (chunk, later) = rest.split_at(whole_lines(rest, atomic));
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

mod format;

#[cfg(test)]
mod tests;
