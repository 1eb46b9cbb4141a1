//! The access log's tables: line formats and escaping, field caps, whole-line writes to
//! files and pipes, flushing by size, age and drop, a log that fails, and reopening.
use super::format::write_line;
use super::*;
use crate::sys;
use std::io::Read;

fn format_line(entry: &Entry<'_>) -> String {
    format_as(LogFormat::Combined, entry)
}

pub(super) fn format_as(format: LogFormat, entry: &Entry<'_>) -> String {
    let mut line = Vec::new();
    write_line(format, entry, &mut line);
    String::from_utf8(line).unwrap()
}

/// A log to `file`, with no name to reopen, in combined format.
fn log_to(file: File) -> AccessLog {
    AccessLog::to(file, None, LogFormat::Combined).unwrap()
}

pub(super) fn entry(status: u16) -> Entry<'static> {
    Entry {
        client: "::1".parse().unwrap(),
        time: "06/Nov/1994:08:49:37 +0000",
        request_line: b"GET / HTTP/1.1",
        status,
        bytes: 1,
        duration: Duration::from_micros(1500),
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
        duration: Duration::ZERO,
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
    let log = log_to(File::from(write_end));
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
        write_line(LogFormat::Combined, &e, &mut wanted);
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
            LogFormat::Combined,
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
    let log = AccessLog::open(&dir.path(), LogFormat::Combined).unwrap();
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
    let log = AccessLog::open(&dir.path(), LogFormat::Combined).unwrap();
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
    let log = log_to(File::from(write_end));
    drop(read_end); // EPIPE from now on (SIGPIPE is ignored by Rust programs).
    let mut buf = log.buffer();
    for second in 0..3 {
        for _ in 0..2000 {
            buf.record(&entry(200), second);
        }
    }
    assert!(buf.buf.len() < BUFFER);
    let sink = log.sink.as_ref().unwrap();
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
    let log = log_to(File::from(write_end));
    let sink = log.sink.as_ref().unwrap();
    let mut torn = false;
    let mut write = |disk: &mut FillingDisk, lines: &[u8]| {
        sink.write_lines_to(disk, usize::MAX, &mut torn, lines);
    };
    let mut disk = FillingDisk {
        written: Vec::new(),
        room: 10,
    };
    write(&mut disk, b"first line\nsecond line\n");
    assert_eq!(disk.written, b"first line");
    // Still full: nothing more, the state kept.
    write(&mut disk, b"lost line\n");
    assert_eq!(disk.written, b"first line");
    disk.room = usize::MAX;
    write(&mut disk, b"third line\n");
    assert_eq!(disk.written, b"first line\nthird line\n");
    // Again, mid-line. (Had a write stopped exactly at a line's end, the newline would
    // make an empty line: harmless, where a joined one is not.)
    disk.room = 5;
    write(&mut disk, b"fourth\n");
    disk.room = usize::MAX;
    write(&mut disk, b"fifth\n");
    assert_eq!(disk.written, b"first line\nthird line\nfourt\nfifth\n");
    assert!(!sink.failing.load(Ordering::Relaxed));
}

#[test]
fn reopen_sends_buffered_and_later_lines_to_a_new_file() {
    let dir = TempLog::new("reopen");
    let log = AccessLog::open(&dir.path(), LogFormat::Common).unwrap();
    let mut before = log.buffer();
    let mut after = log.buffer();
    before.record(&entry(200), 1);
    before.flush();
    // Buffered when the file is renamed and reopened: it goes to the new file.
    after.record(&entry(201), 1);
    let rotated = dir.0.join("access.log.1");
    std::fs::rename(dir.path(), &rotated).unwrap();
    assert_eq!(log.reopen().unwrap(), Some(dir.path().as_path()));
    assert!(dir.path().exists(), "the new file exists at once");
    after.flush();
    before.record(&entry(202), 1);
    drop(before);
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(dir.path()).unwrap();
    assert_eq!(old.lines().count(), 1, "{old}");
    assert!(old.contains("\" 200 1\n"), "{old}");
    assert_eq!(new.lines().count(), 2, "{new}");
    assert!(
        new.contains("\" 201 1\n") && new.contains("\" 202 1\n"),
        "{new}"
    );
    assert!(!new.contains(" \"t\""), "the format is kept: {new}");
}

#[test]
fn reopen_without_a_file_is_a_no_op_and_a_failure_keeps_the_old_file() {
    assert_eq!(AccessLog::off().reopen().unwrap(), None);
    let (_read_end, write_end) = sys::pipe().unwrap();
    assert_eq!(log_to(File::from(write_end)).reopen().unwrap(), None);

    let dir = TempLog::new("reopen-fails");
    let log = AccessLog::open(&dir.path(), LogFormat::Combined).unwrap();
    let rotated = std::env::temp_dir().join(format!("httpd-log-{}-moved", std::process::id()));
    std::fs::rename(dir.path(), &rotated).unwrap();
    // The directory is gone: nowhere to create the new file.
    std::fs::remove_dir(&dir.0).unwrap();
    let err = log.reopen().unwrap_err();
    assert!(err.to_string().contains("access.log"), "{err}");
    let mut buf = log.buffer();
    buf.record(&entry(200), 1);
    buf.flush();
    let old = std::fs::read_to_string(&rotated).unwrap();
    let _ = std::fs::remove_file(&rotated);
    assert_eq!(
        old.lines().count(),
        1,
        "still written to the old file: {old}"
    );
}
