//! The access log under load, over sockets: each worker buffers its own lines and writes
//! whole lines, so after many concurrent keep-alive requests the log holds exactly one
//! well-formed line per response, none torn or interleaved, whether it is a file (`-l FILE`)
//! or a pipe (stderr); and `-l off` writes nothing at all.

mod common;

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::{connect, read_reply, site, wait_until, Server, TempDir};

const CLIENTS: usize = 8;
const REQUESTS: usize = 2000;

/// A `User-Agent` whose length varies with `n` (up to 700 bytes), so lines of many lengths
/// straddle every buffer and `PIPE_BUF` boundary.
fn agent(client: usize, n: usize) -> String {
    let len = (client * 131 + n * 17) % 700;
    format!("ua{client}-{n}-{}", "x".repeat(len))
}

/// `CLIENTS` threads, each sending `REQUESTS` GETs one after another on one keep-alive
/// connection, each request its own target; every reply must be 200.
fn load(addr: SocketAddr) {
    let clients: Vec<JoinHandle<()>> = (0..CLIENTS)
        .map(|client| {
            thread::spawn(move || {
                let mut stream = connect(addr);
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                for n in 0..REQUESTS {
                    let raw = format!(
                        "GET /index.html?c={client}&n={n} HTTP/1.1\r\nHost: t\r\nUser-Agent: {}\r\n\r\n",
                        agent(client, n)
                    );
                    stream.write_all(raw.as_bytes()).expect("write request");
                    let reply = read_reply(&mut reader, false);
                    assert_eq!(reply.status, 200, "request {client}/{n}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
}

/// Checks that `text` has exactly one well-formed line for every request [`load`] sent, and
/// that every other line is the server's own (`[… INFO …]`), not a piece of an access line.
fn assert_one_whole_line_per_response(text: &str) {
    let mut seen: HashMap<(usize, usize), usize> = HashMap::new();
    for line in text.lines() {
        if !line.contains("HTTP/1.1\"") && !line.starts_with("127.0.0.1") {
            // The server's own log (stderr case), e.g. `[2026-… INFO httpd::server] …`.
            assert!(line.starts_with('['), "torn or foreign line: {line:?}");
            continue;
        }
        let (client, n) = parse(line).unwrap_or_else(|| panic!("malformed line: {line:?}"));
        *seen.entry((client, n)).or_default() += 1;
    }
    for client in 0..CLIENTS {
        for n in 0..REQUESTS {
            let count = seen.get(&(client, n)).copied().unwrap_or(0);
            assert_eq!(count, 1, "request {client}/{n} logged {count} times");
        }
    }
    assert_eq!(seen.len(), CLIENTS * REQUESTS);
}

/// `127.0.0.1 - - [DD/Mon/YYYY:HH:MM:SS +0000] "GET /index.html?c=C&n=N HTTP/1.1" 200 34
/// "-" "uaC-N-xxx…"`, exactly; (C, N).
fn parse(line: &str) -> Option<(usize, usize)> {
    let rest = line.strip_prefix("127.0.0.1 - - [")?;
    let (time, rest) = rest.split_once("] \"GET /index.html?c=")?;
    if time.len() != "06/Nov/1994:08:49:37 +0000".len() || !time.ends_with(" +0000") {
        return None;
    }
    let (client, rest) = rest.split_once("&n=")?;
    let (n, rest) = rest.split_once(' ')?;
    let (client, n) = (client.parse().ok()?, n.parse().ok()?);
    let tail = format!("HTTP/1.1\" 200 34 \"-\" \"{}\"", agent(client, n));
    (rest == tail).then_some((client, n))
}

#[test]
fn a_log_file_gets_one_whole_line_per_response() {
    let root = site();
    let mut server = Server::start(root.path(), &["-w", "8"]);
    load(server.addr);
    // Idle workers have written out their lines before waiting for more work: the log is
    // complete while the server still runs.
    let total = CLIENTS * REQUESTS;
    assert!(
        wait_until(Duration::from_secs(20), || server.log_lines().len()
            >= total),
        "{} of {total} lines while running",
        server.log_lines().len()
    );
    assert!(server.terminate().success());
    let text = std::fs::read_to_string(&server.log).expect("read log");
    assert_one_whole_line_per_response(&text);
}

/// Starts `httpd ARGS` in `cwd` on port 0 with stderr piped; its address and the child.
fn spawn(root: &Path, cwd: &Path, args: &[&str]) -> (SocketAddr, Child) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_httpd"))
        .current_dir(cwd)
        .arg("-r")
        .arg(root)
        .args(["-p", "0", "-a", "127.0.0.1"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn httpd");
    let addr = common::listening_addr(&mut child);
    (addr, child)
}

/// Reads all the child's stderr (until it exits) on a thread. With `small_pipe`, the pipe
/// holds one page instead of 16: writers fill it and wait for the reader all the time, which
/// is when a write longer than PIPE_BUF would be split and interleaved with another's.
fn collect_stderr(child: &mut Child, small_pipe: bool) -> JoinHandle<String> {
    let mut stderr = child.stderr.take().expect("stderr");
    if small_pipe {
        // SAFETY: fcntl(2) on the pipe descriptor we own; F_SETPIPE_SZ takes an int.
        let size = unsafe { libc::fcntl(stderr.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
        assert!(
            size >= 4096,
            "F_SETPIPE_SZ: {}",
            std::io::Error::last_os_error()
        );
    }
    thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).expect("read stderr");
        text
    })
}

#[test]
fn a_log_to_a_pipe_gets_one_whole_line_per_response() {
    let root = site();
    let cwd = TempDir::new("cwd");
    // No `-l`: the log is stderr, here a pipe, so writes of at most PIPE_BUF keep lines whole.
    let (addr, mut child) = spawn(root.path(), cwd.path(), &["-w", "8"]);
    let stderr = collect_stderr(&mut child, true);
    load(addr);
    common::signal(child.id() as i32, libc::SIGTERM);
    let status = common::wait_bounded(&mut child, Duration::from_secs(40));
    assert!(status.success(), "{status:?}");
    let text = stderr.join().expect("stderr reader");
    assert_one_whole_line_per_response(&text);
}

#[test]
fn log_off_writes_no_access_log() {
    let root = site();
    let cwd = TempDir::new("cwd");
    for flag in ["-l", "--log"] {
        let (addr, mut child) = spawn(root.path(), cwd.path(), &[flag, "off"]);
        let stderr = collect_stderr(&mut child, false);
        for target in ["/index.html", "/missing"] {
            let mut stream = connect(addr);
            let raw = format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            stream.write_all(raw.as_bytes()).expect("write");
            let mut reader = BufReader::new(stream);
            read_reply(&mut reader, false);
        }
        common::signal(child.id() as i32, libc::SIGTERM);
        assert!(common::wait_bounded(&mut child, Duration::from_secs(40)).success());
        let text = stderr.join().expect("stderr reader");
        assert!(!text.contains("HTTP/1.1\""), "{flag} off: {text}");
        assert!(
            text.contains("INFO"),
            "the server's own log stays on: {text}"
        );
        // Nor is `off` taken for a file name.
        let made: Vec<_> = std::fs::read_dir(cwd.path()).expect("cwd").collect();
        assert!(made.is_empty(), "{flag} off created {made:?}");
    }
}
