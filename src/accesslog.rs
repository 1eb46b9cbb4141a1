//! The access log: one Combined Log Format line per response, formatted by the worker and
//! written by one writer thread (to a file or stderr), flushed whenever the queue runs dry
//! and on shutdown. May use: crossbeam-channel, std.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};

/// How many lines may wait for the writer before workers wait for it (back-pressure instead
/// of unbounded memory when the log is slower than the traffic).
const QUEUE: usize = 16 * 1024;

enum Msg {
    Line(String),
    Flush(Sender<()>),
}

/// A handle the workers log through. Cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    tx: Sender<Msg>,
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
    /// Opens the log (appending to `path`, or stderr) and starts its writer thread.
    pub fn open(path: Option<&Path>) -> io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match path {
            Some(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
            None => Box::new(io::stderr()),
        };
        let (tx, rx) = bounded(QUEUE);
        thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, BufWriter::with_capacity(64 * 1024, out)))?;
        Ok(AccessLog { tx })
    }

    /// Queues one line.
    pub fn record(&self, entry: &Entry<'_>) {
        let _ = self.tx.send(Msg::Line(format_line(entry)));
    }

    /// Waits (at most `timeout`) until every line queued so far is written out.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done_tx, done_rx) = bounded(1);
        self.tx.send(Msg::Flush(done_tx)).is_ok() && done_rx.recv_timeout(timeout).is_ok()
    }
}

fn write_lines(rx: Receiver<Msg>, mut out: BufWriter<Box<dyn Write + Send>>) {
    let mut failed = false;
    let mut handle = |msg: Msg, out: &mut BufWriter<Box<dyn Write + Send>>| match msg {
        Msg::Line(line) => {
            if out.write_all(line.as_bytes()).is_err() && !failed {
                failed = true;
                log::error!("access log: write failed; later lines may be lost");
            }
        }
        Msg::Flush(done) => {
            let _ = out.flush();
            let _ = done.send(());
        }
    };
    while let Ok(msg) = rx.recv() {
        handle(msg, &mut out);
        // Batch what is already queued, then flush before sleeping, so a quiet server's log
        // is always complete on disk.
        while let Ok(msg) = rx.try_recv() {
            handle(msg, &mut out);
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

/// `host - - [time] "request" status bytes "referer" "user-agent"` (Apache's "combined").
pub fn format_line(entry: &Entry<'_>) -> String {
    let mut line = String::with_capacity(160);
    line.push_str(&entry.client.to_string());
    line.push_str(" - - [");
    line.push_str(entry.time);
    line.push_str("] \"");
    escape_into(entry.request_line, &mut line);
    line.push_str("\" ");
    line.push_str(&entry.status.to_string());
    line.push(' ');
    if entry.bytes == 0 {
        line.push('-');
    } else {
        line.push_str(&entry.bytes.to_string());
    }
    for field in [entry.referer, entry.user_agent] {
        line.push_str(" \"");
        match field {
            Some(value) => escape_into(value.as_bytes(), &mut line),
            None => line.push('-'),
        }
        line.push('"');
    }
    line.push('\n');
    line
}

/// The most of one client-supplied field (request line, referer, user agent) that is logged;
/// the rest is replaced by `...`, so a 16 KiB header cannot make a 16 KiB log line.
pub const MAX_FIELD: usize = 2048;

/// Printable ASCII stays; quotes, backslashes, control and non-ASCII bytes become `\xHH`, so
/// a client can neither forge a line nor a field.
fn escape_into(bytes: &[u8], out: &mut String) {
    let (bytes, cut) = match bytes.get(..MAX_FIELD) {
        Some(head) if bytes.len() > MAX_FIELD => (head, true),
        _ => (bytes, false),
    };
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    if cut {
        out.push_str("...");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn lines_reach_the_file_and_flush_waits_for_them() {
        let dir = std::env::temp_dir().join(format!("httpd-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let log = AccessLog::open(Some(&path)).unwrap();
        let time = "06/Nov/1994:08:49:37 +0000";
        for status in [200, 404] {
            log.record(&Entry {
                client: "::1".parse().unwrap(),
                time,
                request_line: b"GET / HTTP/1.1",
                status,
                bytes: 1,
                referer: None,
                user_agent: Some("t"),
            });
        }
        assert!(log.flush(Duration::from_secs(5)));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.starts_with("::1 - - ["), "{text}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
