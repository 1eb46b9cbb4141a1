//! The access log as tools read it, over sockets: each `--log-format` line as the server
//! writes it for real requests (odd ones included), a combined log that GoAccess parses
//! without one invalid line, and SIGUSR1/SIGHUP reopening the log file after a rename (as
//! logrotate does) under load, with every response logged exactly once across the files,
//! and neither signal stopping the server, whatever the log is; and `deploy/logrotate`, run
//! by logrotate itself against a running server. The GoAccess and logrotate tests say
//! "skipped" when the tool is missing (.ci/run installs both).

mod common;

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{connect, read_reply, site, wait_until, Server, TempDir};
use serde_json::Value;

/// Requests whose lines the format tests check, each with its expected status: a file with
/// a query and both headers (quotes and a backslash in them), a 404, a HEAD (no body bytes),
/// a byte that is not UTF-8 and a control byte in the target, and a line that is no request.
const ODD: &[(&[u8], u16)] = &[
    (
        b"GET /index.html?q=1 HTTP/1.1\r\nHost: t\r\nReferer: http://r/\"x\"\r\nUser-Agent: Mozilla/5.0 \"quoted\" \\ x\r\n\r\n",
        200,
    ),
    (b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n", 404),
    (b"HEAD /index.html HTTP/1.1\r\nHost: t\r\n\r\n", 200),
    (b"GET /caf\xe9 HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET /a\x01b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GARBAGE\r\n\r\n", 400),
];

/// Sends each of [`ODD`] on its own connection (closed after the reply) and checks its status.
fn send_odd(addr: SocketAddr) {
    for (raw, status) in ODD {
        let mut stream = connect(addr);
        stream.write_all(raw).expect("write");
        let mut reader = BufReader::new(stream);
        let reply = read_reply(&mut reader, raw.starts_with(b"HEAD "));
        assert_eq!(reply.status, *status, "{}", String::from_utf8_lossy(raw));
    }
}

/// Starts a server with `--log-format FORMAT`, sends [`ODD`], and returns its log's lines
/// (the server is stopped first, so all are written), sorted: workers write their lines in
/// the order each writes out its buffer, not in the order of the requests.
fn odd_lines(format: &str) -> Vec<String> {
    let root = site();
    let mut server = Server::start(root.path(), &["--log-format", format]);
    send_odd(server.addr);
    assert!(server.terminate().success());
    let mut lines = server.log_lines();
    assert_eq!(lines.len(), ODD.len(), "{lines:#?}");
    lines.sort();
    lines
}

/// `127.0.0.1 - - [DD/Mon/YYYY:HH:MM:SS +0000] ` and the rest.
fn after_clf_time(line: &str) -> &str {
    let rest = line.strip_prefix("127.0.0.1 - - [").expect(line);
    let (time, rest) = rest.split_once("] ").expect(line);
    assert_eq!(time.len(), "06/Nov/1994:08:49:37 +0000".len(), "{line}");
    assert!(time.ends_with(" +0000"), "{line}");
    rest
}

#[test]
fn combined_lines_escape_as_nginx_does() {
    let lines = odd_lines("combined");
    let mut tails: Vec<&str> = lines.iter().map(|l| after_clf_time(l)).collect();
    tails.sort_unstable();
    let mut want = [
            "\"GET /index.html?q=1 HTTP/1.1\" 200 34 \"http://r/\\x22x\\x22\" \"Mozilla/5.0 \\x22quoted\\x22 \\x5C x\"",
            "\"GET /missing HTTP/1.1\" 404 116 \"-\" \"-\"",
            "\"HEAD /index.html HTTP/1.1\" 200 - \"-\" \"-\"",
            "\"GET /caf\\xE9 HTTP/1.1\" 400 120 \"-\" \"-\"",
            "\"GET /a\\x01b HTTP/1.1\" 400 120 \"-\" \"-\"",
            "\"GARBAGE\" 400 120 \"-\" \"-\"",
    ];
    want.sort_unstable();
    assert_eq!(tails, want);
}

#[test]
fn common_lines_end_at_the_bytes() {
    let lines = odd_lines("common");
    let mut tails: Vec<&str> = lines.iter().map(|l| after_clf_time(l)).collect();
    tails.sort_unstable();
    let mut want = [
        "\"GET /index.html?q=1 HTTP/1.1\" 200 34",
        "\"GET /missing HTTP/1.1\" 404 116",
        "\"HEAD /index.html HTTP/1.1\" 200 -",
        "\"GET /caf\\xE9 HTTP/1.1\" 400 120",
        "\"GET /a\\x01b HTTP/1.1\" 400 120",
        "\"GARBAGE\" 400 120",
    ];
    want.sort_unstable();
    assert_eq!(tails, want);
}

#[test]
fn json_lines_are_objects_a_json_parser_reads() {
    let lines = odd_lines("json");
    let values: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect();
    let mut keys = [
        "time",
        "client",
        "method",
        "path",
        "protocol",
        "status",
        "bytes",
        "duration_us",
        "referer",
        "user_agent",
    ];
    // (serde_json's map sorts keys; the unit tests check their order in the line.)
    keys.sort_unstable();
    for (value, line) in values.iter().zip(&lines) {
        let object = value.as_object().expect(line);
        assert_eq!(object.keys().collect::<Vec<_>>(), keys, "{line}");
        let time = value["time"].as_str().expect(line);
        // RFC 3339, UTC: 2026-11-23T14:48:32Z.
        assert_eq!(time.len(), 20, "{line}");
        assert!(time.ends_with('Z') && &time[10..11] == "T", "{line}");
        assert_eq!(value["client"], "127.0.0.1");
        assert!(
            value["duration_us"].as_u64().expect(line) < 10_000_000,
            "{line}"
        );
    }
    // The line of the request whose `key` is `value`.
    let find = |key: &str, value: &str| {
        values
            .iter()
            .position(|v| v[key] == value)
            .unwrap_or_else(|| panic!("no line with {key} {value:?}: {lines:#?}"))
    };
    let field = |i: usize, key: &str| values[i][key].clone();
    let file = find("path", "/index.html?q=1");
    let missing = find("path", "/missing");
    let head = find("method", "HEAD");
    let latin1 = find("path", "/caf\u{FFFD}");
    let control = find("path", "/a\u{1}b");
    let garbage = find("method", "GARBAGE");
    assert_eq!(field(file, "method"), "GET");
    assert_eq!(field(file, "path"), "/index.html?q=1");
    assert_eq!(field(file, "protocol"), "HTTP/1.1");
    assert_eq!(field(file, "status"), 200);
    assert_eq!(field(file, "bytes"), 34);
    assert_eq!(field(file, "referer"), "http://r/\"x\"");
    assert_eq!(field(file, "user_agent"), "Mozilla/5.0 \"quoted\" \\ x");
    assert_eq!(field(missing, "status"), 404);
    assert_eq!(field(missing, "referer"), Value::Null);
    assert_eq!(field(missing, "user_agent"), Value::Null);
    assert_eq!(field(head, "method"), "HEAD");
    assert_eq!(field(head, "bytes"), 0);
    // Not UTF-8: U+FFFD in its place. A control byte: escaped by the JSON writer.
    assert_eq!(field(latin1, "path"), "/caf\u{FFFD}");
    assert_eq!(field(control, "path"), "/a\u{1}b");
    assert!(lines[control].contains("\\u0001"), "{}", lines[control]);
    assert_eq!(field(garbage, "method"), "GARBAGE");
    assert_eq!(field(garbage, "path"), "");
    assert_eq!(field(garbage, "protocol"), "");
}

#[test]
fn goaccess_reads_a_combined_log_with_no_invalid_line() {
    if !have("goaccess") {
        return;
    }
    let lines = odd_lines("combined");
    let dir = TempDir::new("goaccess");
    let log = dir.write("access.log", lines.join("\n") + "\n");
    let report = dir.path().join("report.json");
    let output = Command::new("goaccess")
        .arg(&log)
        .args(["--log-format=COMBINED", "--no-progress", "-o"])
        .arg(&report)
        .stdin(Stdio::null())
        .output()
        .expect("run goaccess");
    assert!(output.status.success(), "goaccess: {output:?}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let general = &report["general"];
    assert_eq!(general["total_requests"], ODD.len(), "{general}");
    assert_eq!(general["failed_requests"], 0, "invalid lines: {general}");
    assert_eq!(general["valid_requests"], ODD.len(), "{general}");
}

/// Client threads.
const CLIENTS: usize = 4;
/// Requests each client sends during the rotations.
const REQUESTS: usize = 300;

/// Renames `log` to `to`, sends `signal`, and waits for the server to create `log` afresh
/// (it reopens at once, on its signal thread).
fn rotate(server: &Server, to: &Path, signal: i32) {
    std::fs::rename(&server.log, to).expect("rename the log");
    common::signal(server.pid(), signal);
    assert!(
        wait_until(Duration::from_secs(10), || server.log.exists()),
        "signal {signal}: no new log file"
    );
}

/// (client, n) of a line for `GET /index.html?c=C&n=N`; `None` for any other line.
fn request_of(line: &str) -> Option<(usize, usize)> {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"));
    let path = value["path"].as_str()?;
    let (client, n) = path.strip_prefix("/index.html?c=")?.split_once("&n=")?;
    assert_eq!(value["status"], 200, "{line}");
    Some((client.parse().ok()?, n.parse().ok()?))
}

#[test]
fn usr1_and_hup_reopen_the_log_under_load_losing_no_line() {
    let root = site();
    let mut server = Server::start(root.path(), &["-w", "4", "--log-format", "json"]);
    let addr = server.addr;
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let done = Arc::clone(&done);
            thread::spawn(move || {
                let mut stream = connect(addr);
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                for n in 0..REQUESTS {
                    let raw =
                        format!("GET /index.html?c={client}&n={n} HTTP/1.1\r\nHost: t\r\n\r\n");
                    stream.write_all(raw.as_bytes()).expect("write request");
                    assert_eq!(read_reply(&mut reader, false).status, 200);
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let total = CLIENTS * REQUESTS;
    let first: PathBuf = server.log.with_extension("log.1");
    let second: PathBuf = server.log.with_extension("log.2");
    // Rotations while requests are being served and logged.
    assert!(wait_until(Duration::from_secs(30), || done
        .load(Ordering::SeqCst)
        >= total / 3));
    rotate(&server, &first, libc::SIGUSR1);
    assert!(wait_until(Duration::from_secs(30), || done
        .load(Ordering::SeqCst)
        >= 2 * total / 3));
    rotate(&server, &second, libc::SIGHUP);
    for client in clients {
        client.join().expect("client");
    }
    // After both signals the server still serves, and these lines go to the new file.
    for n in 0..5 {
        assert_eq!(server.get(&format!("/index.html?c=99&n={n}")).status, 200);
    }
    assert!(server.terminate().success(), "the signals did not stop it");

    let mut seen: HashMap<(usize, usize), usize> = HashMap::new();
    let mut per_file = Vec::new();
    for path in [&first, &second, &server.log] {
        let text = std::fs::read_to_string(path).expect("read a log");
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{}",
            path.display()
        );
        let mut count = 0;
        for line in text.lines() {
            let key = request_of(line).unwrap_or_else(|| panic!("foreign line {line:?}"));
            *seen.entry(key).or_default() += 1;
            count += 1;
        }
        per_file.push(count);
    }
    for (key, count) in &seen {
        assert_eq!(*count, 1, "{key:?} logged {count} times");
    }
    assert_eq!(seen.len(), total + 5, "lines per file: {per_file:?}");
    assert!(per_file[0] > 0 && per_file[2] >= 5, "{per_file:?}");
    let last = std::fs::read_to_string(&server.log).expect("read the new log");
    for n in 0..5 {
        assert!(last.contains(&format!("c=99&n={n}\"")), "{last}");
    }
}

#[test]
fn usr1_and_hup_are_harmless_with_the_log_on_stderr_or_off() {
    let root = site();
    let cwd = TempDir::new("cwd");
    for log in [&[][..], &["-l", "off"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_httpd"))
            .current_dir(cwd.path())
            .arg("-r")
            .arg(root.path())
            .args(["-p", "0", "-a", "127.0.0.1"])
            .args(log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn httpd");
        let addr = common::listening_addr(&mut child);
        let mut stderr = child.stderr.take().expect("stderr");
        let reader = thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).expect("read stderr");
            text
        });
        for signal in [libc::SIGUSR1, libc::SIGHUP] {
            common::signal(child.id() as i32, signal);
            let mut stream = connect(addr);
            stream
                .write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .expect("write");
            assert_eq!(read_reply(&mut BufReader::new(stream), false).status, 200);
        }
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "{log:?}: died"
        );
        common::signal(child.id() as i32, libc::SIGTERM);
        let status = common::wait_bounded(&mut child, Duration::from_secs(40));
        assert!(status.success(), "{log:?}: {status:?}");
        let text = reader.join().expect("stderr reader");
        for name in ["SIGUSR1", "SIGHUP"] {
            assert!(
                text.contains(&format!(
                    "{name}: the access log is not a file; nothing to reopen"
                )),
                "{log:?}: {text}"
            );
        }
        let logged = text.matches("\"GET /index.html HTTP/1.1\" 200").count();
        assert_eq!(
            logged,
            if log.is_empty() { 2 } else { 0 },
            "{log:?}: {text}"
        );
        let made: Vec<_> = std::fs::read_dir(cwd.path()).expect("cwd").collect();
        assert!(made.is_empty(), "{log:?} created {made:?}");
    }
}

/// Whether `tool` runs; if not, says the test is skipped and why.
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        eprintln!("skipped: {tool} is not installed (apt-get install {tool}; .ci/run does)");
    }
    found
}

#[test]
fn the_shipped_logrotate_config_rotates_a_running_server() {
    if !have("logrotate") {
        return;
    }
    let root = site();
    let mut server = Server::start(root.path(), &[]);
    for n in 0..3 {
        assert_eq!(server.get(&format!("/index.html?before={n}")).status, 200);
    }
    assert!(wait_until(Duration::from_secs(10), || server
        .log_lines()
        .len()
        == 3));
    // deploy/logrotate as shipped, but for this log and this process (not a systemd unit).
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/logrotate"))
            .expect("read deploy/logrotate");
    let signal_line = "systemctl kill -s USR1 httpd.service >/dev/null 2>&1 || true";
    assert!(shipped.contains(signal_line) && shipped.contains("/var/log/httpd/access.log {"));
    let config = shipped
        .replace(
            "/var/log/httpd/access.log",
            server.log.to_str().expect("path"),
        )
        .replace(signal_line, &format!("kill -USR1 {}", server.pid()));
    let dir = TempDir::new("logrotate");
    let config_path = dir.write("httpd", config);
    let output = Command::new("logrotate")
        .arg("--force")
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg(&config_path)
        .output()
        .expect("run logrotate");
    assert!(output.status.success(), "logrotate: {output:?}");
    assert!(
        wait_until(Duration::from_secs(10), || server.log.exists()),
        "no new log after logrotate"
    );
    for n in 0..2 {
        assert_eq!(server.get(&format!("/index.html?after={n}")).status, 200);
    }
    assert!(server.terminate().success());
    let rotated = std::fs::read_to_string(server.log.with_extension("log.1")).expect(".1");
    assert_eq!(rotated.lines().count(), 3, "{rotated}");
    assert!(!rotated.contains("after="), "{rotated}");
    let fresh = server.log_lines();
    assert_eq!(fresh.len(), 2, "{fresh:#?}");
    assert!(
        fresh.iter().all(|line| line.contains("?after=")),
        "{fresh:#?}"
    );
}
