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
mod tests {
    use super::*;
    use crate::sys;
    use std::io::Read;

    fn format_line(entry: &Entry<'_>) -> String {
        let mut line = Vec::new();
        write_line(entry, &mut line);
        String::from_utf8(line).unwrap()
    }

    fn entry(status: u16) -> Entry<'static> {
        Entry {
            client: "::1".parse().unwrap(),
            time: "06/Nov/1994:08:49:37 +0000",
            request_line: b"GET / HTTP/1.1",
            status,
            bytes: 1,
            referer: None,
            user_agent: Some("t"),
        }
    }

    #[test]
    fn combined_log_format() {
        let entry = Entry {
            client: "127.0.0.1".parse().unwrap(),
            time: "06/Nov/1994:08:49:37 +0000",
            request_line: b"GET /a\"b\\c\x1b HTTP/1.1",
            status: 200,
            bytes: 1234,
            referer: Some("http://example.test/"),
            user_agent: None,
        };
        assert_eq!(
            format_line(&entry),
            "127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a\\x22b\\x5Cc\\x1B HTTP/1.1\" 200 1234 \"http://example.test/\" \"-\"\n"
        );
        let entry = Entry {
            bytes: 0,
            status: 304,
            request_line: b"",
            ..entry
        };
        assert!(format_line(&entry).contains("\"\" 304 - "));
        let long = vec![b'a'; MAX_FIELD * 4];
        let line = format_line(&Entry {
            request_line: &long,
            ..entry
        });
        assert!(line.len() < MAX_FIELD + 200, "{}", line.len());
        assert!(line.contains("aaa...\" 304"));
    }

    #[test]
    fn the_longest_line_fits_one_atomic_pipe_write() {
        let escaped = vec![0xffu8; 16 * 1024];
        let text = "\"".repeat(16 * 1024);
        let line = format_line(&Entry {
            client: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
            time: "06/Nov/1994:08:49:37 +0000",
            request_line: &escaped,
            status: 599,
            bytes: u64::MAX,
            referer: Some(&text),
            user_agent: Some(&text),
        });
        assert!(line.len() <= PIPE_BUF, "{}", line.len());
        assert_eq!(line.matches("...").count(), 3, "{line}");
        // No escape is cut in two.
        assert!(line.contains("\\xFF...\""), "{line}");
        assert!(line.contains("\\x22...\""), "{line}");
    }

    #[test]
    fn whole_lines_only_and_an_overlong_line_alone() {
        let lines = b"aaa\nbb\ncccc\n";
        assert_eq!(whole_lines(lines, usize::MAX), lines.len());
        assert_eq!(whole_lines(lines, 7), 7, "exactly two lines");
        assert_eq!(whole_lines(lines, 6), 4, "the second line does not fit");
        assert_eq!(
            whole_lines(lines, 2),
            4,
            "a line longer than the limit goes alone"
        );
        assert_eq!(whole_lines(b"aaaa", 2), 4);
    }

    /// Lines written to a pipe, as the reader sees them: each read(2) of a pipe returns
    /// what one or more whole writes put there, so we see the write boundaries too.
    fn drain(mut reader: File) -> Vec<Vec<u8>> {
        let mut reads = Vec::new();
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                return reads;
            }
            reads.push(buf[..n].to_vec());
        }
    }

    #[test]
    fn a_pipe_gets_writes_of_whole_lines_within_pipe_buf() {
        let (read_end, write_end) = sys::pipe().unwrap();
        let log = AccessLog::to(File::from(write_end)).unwrap();
        let reader = std::thread::spawn(move || drain(File::from(read_end)));
        let mut buf = log.buffer();
        let long_ua = "u".repeat(700);
        let mut wanted = Vec::new();
        // Enough lines of uneven length to fill the buffer several times in one second.
        for i in 0..1000u16 {
            let e = Entry {
                status: 200 + i % 300,
                user_agent: Some(&long_ua[..usize::from(i) % 700]),
                ..entry(200)
            };
            write_line(&e, &mut wanted);
            buf.record(&e, 7);
            assert!(buf.buf.len() < BUFFER, "a full buffer is written at once");
        }
        drop(buf);
        drop(log);
        let reads = reader.join().unwrap();
        assert_eq!(reads.concat(), wanted, "every line, in order, once");
        // A pipe read never returns more than is in the pipe, and each of our writes is at
        // most PIPE_BUF and ends a line: so does every read that did not fill the pipe
        // buffer (64 KiB) — reads of a pipe hold whole writes.
        for read in &reads {
            assert_eq!(read.last(), Some(&b'\n'));
        }
    }

    #[test]
    fn writes_are_within_pipe_buf_and_whole_lines() {
        // The same through the write path directly: every chunk `write_lines` hands to
        // write(2) is whole lines and at most PIPE_BUF.
        let mut lines = Vec::new();
        for i in 0..300u16 {
            let ua = "x".repeat(usize::from(i) * 3 % 900);
            write_line(
                &Entry {
                    user_agent: Some(&ua),
                    ..entry(200)
                },
                &mut lines,
            );
        }
        let mut rest = &lines[..];
        let mut chunks = 0;
        while !rest.is_empty() {
            let n = whole_lines(rest, PIPE_BUF);
            assert!(n <= PIPE_BUF && n > 0);
            assert_eq!(rest[n - 1], b'\n');
            rest = &rest[n..];
            chunks += 1;
        }
        assert!(chunks > 1);
    }

    /// A log file in a fresh directory, and the directory (removed when dropped).
    struct TempLog(std::path::PathBuf);

    impl TempLog {
        fn new(name: &str) -> TempLog {
            let dir = std::env::temp_dir().join(format!("httpd-log-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempLog(dir)
        }
        fn path(&self) -> std::path::PathBuf {
            self.0.join("access.log")
        }
        fn lines(&self) -> usize {
            std::fs::read_to_string(self.path())
                .unwrap_or_default()
                .lines()
                .count()
        }
    }

    impl Drop for TempLog {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn lines_reach_the_file_on_flush_and_on_drop() {
        let dir = TempLog::new("flush");
        let log = AccessLog::open(&dir.path()).unwrap();
        let mut buf = log.buffer();
        for status in [200, 404] {
            buf.record(&entry(status), 1);
        }
        assert_eq!(dir.lines(), 0, "buffered, not yet written");
        buf.flush();
        let text = std::fs::read_to_string(dir.path()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.starts_with("::1 - - ["), "{text}");
        buf.record(&entry(500), 1);
        assert_eq!(dir.lines(), 2);
        drop(buf);
        assert_eq!(dir.lines(), 3, "dropping the buffer writes its lines");
    }

    #[test]
    fn a_full_buffer_or_a_line_a_second_later_is_written() {
        let dir = TempLog::new("size-age");
        let log = AccessLog::open(&dir.path()).unwrap();
        let mut buf = log.buffer();
        let line = format_line(&entry(200)).len();
        let fit = BUFFER.div_ceil(line);
        for n in 1..fit {
            buf.record(&entry(200), 5);
            assert_eq!(dir.lines(), 0, "line {n} of {fit} stays buffered");
        }
        buf.record(&entry(200), 5);
        assert_eq!(dir.lines(), fit, "the line that fills the buffer writes it");
        buf.record(&entry(200), 5);
        assert_eq!(dir.lines(), fit);
        // The next clock second: the oldest line waiting is from the one before.
        buf.record(&entry(200), 6);
        assert_eq!(dir.lines(), fit + 2);
        buf.record(&entry(200), 6);
        buf.record(&entry(200), 6);
        assert_eq!(dir.lines(), fit + 2);
        // A clock set back counts as time passing too.
        buf.record(&entry(200), 3);
        assert_eq!(dir.lines(), fit + 5);
        // A worker between lines checks the age too.
        buf.record(&entry(200), 9);
        buf.flush_if_older(9);
        assert_eq!(dir.lines(), fit + 5);
        assert!(!buf.is_empty());
        buf.flush_if_older(10);
        assert_eq!(dir.lines(), fit + 6);
        assert!(buf.is_empty());
    }

    #[test]
    fn off_writes_nothing_and_holds_nothing() {
        let mut buf = AccessLog::off().buffer();
        assert!(!buf.is_on());
        buf.record(&entry(200), 1);
        assert!(buf.buf.is_empty() && buf.buf.capacity() == 0);
    }

    #[test]
    fn a_failing_log_loses_lines_without_growing() {
        let (read_end, write_end) = sys::pipe().unwrap();
        let log = AccessLog::to(File::from(write_end)).unwrap();
        drop(read_end); // EPIPE from now on (SIGPIPE is ignored by Rust programs).
        let mut buf = log.buffer();
        for second in 0..3 {
            for _ in 0..2000 {
                buf.record(&entry(200), second);
            }
        }
        assert!(buf.buf.len() < BUFFER);
        let sink = log.0.as_ref().unwrap();
        assert!(sink.failing.load(Ordering::Relaxed));
        assert!(sink.lost.load(Ordering::Relaxed) > 0);
    }

    /// A log that takes `room` bytes, then fails as a full disk does, until given more room.
    struct FillingDisk {
        written: Vec<u8>,
        room: usize,
    }

    impl Write for FillingDisk {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = bytes.len().min(self.room);
            self.written.extend_from_slice(&bytes[..n]);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_disk_that_fills_mid_line_leaves_no_line_joined_to_the_next() {
        let (_read_end, write_end) = sys::pipe().unwrap();
        let log = AccessLog::to(File::from(write_end)).unwrap();
        let sink = log.0.as_ref().unwrap();
        let mut disk = FillingDisk {
            written: Vec::new(),
            room: 10,
        };
        sink.write_lines_to(&mut disk, b"first line\nsecond line\n");
        assert_eq!(disk.written, b"first line");
        // Still full: nothing more, the state kept.
        sink.write_lines_to(&mut disk, b"lost line\n");
        assert_eq!(disk.written, b"first line");
        disk.room = usize::MAX;
        sink.write_lines_to(&mut disk, b"third line\n");
        assert_eq!(disk.written, b"first line\nthird line\n");
        // Again, mid-line. (Had a write stopped exactly at a line's end, the newline would
        // make an empty line: harmless, where a joined one is not.)
        disk.room = 5;
        sink.write_lines_to(&mut disk, b"fourth\n");
        disk.room = usize::MAX;
        sink.write_lines_to(&mut disk, b"fifth\n");
        assert_eq!(disk.written, b"first line\nthird line\nfourt\nfifth\n");
        assert!(!sink.failing.load(Ordering::Relaxed));
    }
}
