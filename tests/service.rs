//! The server as a process: many concurrent clients, timeouts, the command line, IPv6 and
//! signals. Everything over loopback, bounded in count and time.

mod common;

use std::io::{BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{closed_by_server, pattern, read_to_close, site, Reply, Server};

fn checksum(bytes: &[u8]) -> u64 {
    // FNV-1a: enough to catch a wrong, short or reordered body.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[test]
fn two_hundred_concurrent_clients_get_intact_files() {
    let root = site();
    root.write("sizes/1k.bin", pattern(1024));
    root.write("sizes/100k.bin", pattern(100 * 1024));
    root.write("sizes/1m.bin", pattern(1024 * 1024));
    let expected = [
        ("/sizes/1k.bin", checksum(&pattern(1024))),
        ("/sizes/100k.bin", checksum(&pattern(100 * 1024))),
        ("/sizes/1m.bin", checksum(&pattern(1024 * 1024))),
    ];
    let server = Server::start(root.path(), &["-w", "4"]);
    let addr = server.addr;
    let clients: Vec<_> = (0..200)
        .map(|i| {
            thread::spawn(move || {
                let mut stream = common::connect(addr);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                // Each client makes three keep-alive requests, rotating through the sizes.
                for round in 0..3 {
                    let (path, sum) = expected[(i + round) % expected.len()];
                    stream
                        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
                        .unwrap();
                    let reply = Reply::read(&mut reader, false).unwrap();
                    assert_eq!(reply.status, 200, "client {i} {path}");
                    assert_eq!(checksum(&reply.body), sum, "client {i} {path}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
}

#[test]
fn idle_keep_alive_connections_close_after_the_timeout() {
    let root = site();
    let server = Server::start(root.path(), &["-t", "1"]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert_eq!(Reply::read(&mut reader, false).unwrap().status, 200);
    let idle = Instant::now();
    assert!(closed_by_server(&mut stream), "idle connection not closed");
    let waited = idle.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    // A connection that never sends anything is closed the same way.
    let mut silent = server.connect();
    assert!(closed_by_server(&mut silent));
}

#[test]
fn a_head_that_never_completes_gets_408_and_does_not_hold_a_worker() {
    let root = site();
    // One worker: if the slow client held it, the second client would never be answered.
    let server = Server::start(root.path(), &["-w", "1", "-t", "1"]);
    let mut slow = server.connect();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    let reply = server.get("/style.css");
    assert_eq!(reply.status, 200);
    let bytes = read_to_close(&mut slow);
    assert!(
        bytes.starts_with(b"HTTP/1.1 408 "),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
}

#[test]
fn keep_alive_clients_beyond_the_worker_count_are_all_served() {
    let root = site();
    // More open keep-alive connections than workers: none may wait for another to close.
    let server = Server::start(root.path(), &["-w", "2"]);
    let mut streams: Vec<_> = (0..20).map(|_| server.connect()).collect();
    for round in 0..3 {
        for (i, stream) in streams.iter_mut().enumerate() {
            stream
                .write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let reply = Reply::read(&mut reader, false).unwrap();
            assert_eq!(reply.status, 200, "round {round} connection {i}");
        }
    }
}

/// Starts a server whose connection limit the descriptors cannot back (64 fds), so that
/// accept(2) itself fails with EMFILE, and fills it: 120 clients, each answered at once
/// (served while descriptors last, then 503), none left hanging in the backlog. Returns the
/// server and the clients, still connected.
fn out_of_descriptors(root: &std::path::Path) -> (Server, Vec<std::net::TcpStream>) {
    let server =
        Server::start_with_fd_limit(root, &["-w", "2", "--max-connections", "1000"], Some(64));
    let mut held: Vec<_> = (0..120).map(|_| server.connect()).collect();
    let (mut ok, mut refused, mut closed) = (0, 0, 0);
    for stream in held.iter_mut() {
        // A refused client may already be closed: the write can fail, the reply still counts.
        let _ = stream.write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        match Reply::read(&mut reader, false) {
            Ok(reply) if reply.status == 200 => ok += 1,
            Ok(reply) if reply.status == 503 => {
                assert_eq!(reply.header("Retry-After"), Some("1"), "{}", reply.head);
                refused += 1;
            }
            Ok(reply) => panic!("unexpected status {}", reply.status),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("a client was left hanging: {err}")
            }
            Err(_) => closed += 1,
        }
    }
    // Every client got an answer at once: served while descriptors lasted, then 503.
    assert!(ok >= 10, "{ok} served, {refused} refused, {closed} closed");
    assert!(
        refused >= 1,
        "{ok} served, {refused} refused, {closed} closed"
    );
    assert!(
        closed <= 5,
        "{ok} served, {refused} refused, {closed} closed without a reply"
    );
    (server, held)
}

/// Once the clients holding the descriptors leave, service resumes and the 503s were logged.
fn resumes_after(mut server: Server, held: Vec<std::net::TcpStream>) {
    drop(held);
    assert!(common::wait_until(Duration::from_secs(10), || {
        server.get("/index.html").status == 200
    }));
    assert!(server.terminate().success());
    assert!(server
        .log_lines()
        .iter()
        .any(|line| line.contains("\" 503 ")));
}

#[test]
fn running_out_of_file_descriptors_is_survived() {
    let root = site();
    let (server, mut held) = out_of_descriptors(root.path());
    // More clients arrive while descriptors are exhausted; none of that stops the server.
    held.extend((0..40).map(|_| server.connect()));
    resumes_after(server, held);
}

/// The CPU check of running out of descriptors, on its own because a CPU-time bound is only
/// meaningful on a quiet machine: `.ci/run` runs it after the parallel suite.
#[test]
#[ignore = "CPU-time bound, wants a quiet machine: run by .ci/run"]
fn running_out_of_file_descriptors_does_not_spin() {
    let root = site();
    let (server, mut held) = out_of_descriptors(root.path());
    // With descriptors exhausted and more clients arriving, no spinning: well under half a
    // core over a second.
    held.extend((0..40).map(|_| server.connect()));
    let before = common::cpu_ticks(server.pid());
    let window = Instant::now();
    // USER_HZ on Linux.
    let ticks_per_second = 100;
    // The second is the measurement window for the CPU the server uses, not a wait for it
    // to reach some state: spinning is a rate, and a rate needs an interval.
    std::thread::sleep(Duration::from_secs(1));
    let used = common::cpu_ticks(server.pid()) - before;
    let elapsed = window.elapsed().as_secs_f64();
    assert!(
        (used as f64) < 0.5 * elapsed * ticks_per_second as f64,
        "{used} ticks of CPU in {elapsed:.2}s while out of descriptors"
    );
    resumes_after(server, held);
}

/// Requests `/large.bin` and reads until the reply has started (a 200 head arrived), so it
/// is in flight. Returns the stream and what was read.
fn start_download(server: &Server) -> (std::net::TcpStream, Vec<u8>) {
    let mut stream = server.connect();
    stream
        .write_all(b"GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 4096];
    let n = common::read_some(&mut stream, &mut first);
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{:?}",
        &first[..n]
    );
    (stream, first[..n].to_vec())
}

#[test]
fn a_client_that_stops_reading_is_cut_off_after_the_send_timeout() {
    let root = site();
    let size = 64 * 1024 * 1024;
    root.write("large.bin", pattern(size));
    // One worker: a stalled download must not hold it.
    let server = Server::start(root.path(), &["-w", "1", "--send-timeout", "1"]);
    let (mut stalled, first) = start_download(&server);
    let n = first.len();
    // The stalled client reads nothing more; its reply waits in the poller, and the one
    // worker serves the next client at once.
    assert_eq!(server.get("/style.css").status, 200);
    // After a second in which the client took nothing, the reply is given up, and its log
    // line says how much of the body went out.
    let logged = |server: &Server| {
        server
            .log_lines()
            .into_iter()
            .find(|line| line.contains("\"GET /large.bin HTTP/1.1\" 200 "))
    };
    assert!(common::wait_until(Duration::from_secs(20), || logged(
        &server
    )
    .is_some()));
    let line = logged(&server).unwrap();
    let bytes: usize = line
        .split("\" 200 ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|bytes| bytes.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {line}"));
    assert!(bytes > 0 && bytes < size, "{line}");
    // What is left in flight ends before the file does.
    let rest = read_to_close(&mut stalled);
    assert!(
        n + rest.len() < size,
        "all {} bytes arrived",
        n + rest.len()
    );
}

#[test]
fn the_grace_period_bounds_a_stop() {
    let root = site();
    root.write("large.bin", pattern(64 * 1024 * 1024));
    // One worker and 32 downloads nobody reads: each would otherwise wait out the
    // whole send timeout (30 s), and all are cut off when the grace period ends.
    let mut server = Server::start(root.path(), &["--grace", "1", "-w", "1"]);
    let stalled: Vec<_> = (0..32).map(|_| start_download(&server)).collect();
    common::signal(server.pid(), libc::SIGTERM);
    let begun = Instant::now();
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}");
    let took = begun.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "stop took {took:?} with --grace 1"
    );
    // Every reply cut off by the end of the grace period still has its log line, with the
    // part of the body that went out.
    let lines = server.log_lines();
    let cut: Vec<usize> = lines
        .iter()
        .filter_map(|line| line.split_once("\"GET /large.bin HTTP/1.1\" 200 "))
        .filter_map(|(_, rest)| rest.split(' ').next()?.parse::<usize>().ok())
        .collect();
    assert_eq!(cut.len(), stalled.len(), "{lines:?}");
    assert!(
        cut.iter()
            .all(|&bytes| bytes > 0 && bytes < 64 * 1024 * 1024),
        "{cut:?}"
    );
}

#[test]
fn garbage_on_many_connections_leaves_the_server_serving() {
    fn next(state: &mut u64) -> u64 {
        // xorshift64*: deterministic, so a failure replays.
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    let root = site();
    let server = Server::start(root.path(), &["-w", "2", "-t", "1"]);
    let addr = server.addr;
    let clients: Vec<_> = (0..8u64)
        .map(|t| {
            thread::spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15 ^ (t + 1);
                for _ in 0..50 {
                    let mut bytes = match next(&mut rng) % 3 {
                        // Plausible request lines with random headers, random bytes, or both.
                        0 => b"GET / HTTP/1.1\r\n".to_vec(),
                        1 => b"GET /index.html HTTP/1.1\r\nHost: t\r\nX-A: ".to_vec(),
                        _ => Vec::new(),
                    };
                    let len = next(&mut rng) % 20_000;
                    bytes.extend((0..len).map(|_| next(&mut rng) as u8));
                    let mut stream = common::connect(addr);
                    let mut rest = &bytes[..];
                    while !rest.is_empty() {
                        let cut = (1 + next(&mut rng) % 4096).min(rest.len() as u64) as usize;
                        if stream.write_all(&rest[..cut]).is_err() {
                            break;
                        }
                        rest = &rest[cut..];
                    }
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                    // Whatever comes back (an error reply, or nothing), the server must close.
                    let mut sink = [0u8; 4096];
                    loop {
                        match stream.read(&mut sink) {
                            Ok(0) => break,
                            Ok(_) => {}
                            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                            // A reset after an error reply is a close too.
                            Err(_) => break,
                        }
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
    for _ in 0..20 {
        let reply = server.get("/index.html");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "<!DOCTYPE html><title>home</title>");
    }
}

#[test]
fn sigterm_lets_a_download_finish_then_exits_zero() {
    let root = site();
    root.write("large.bin", pattern(32 * 1024 * 1024));
    let mut server = Server::start(root.path(), &[]);
    // The reply is in flight when the signal comes.
    let (mut stream, mut all) = start_download(&server);
    common::signal(server.pid(), libc::SIGTERM);
    all.append(&mut read_to_close(&mut stream));
    let reply = Reply::read(&mut &all[..], false).unwrap();
    assert_eq!(
        reply.body.len(),
        32 * 1024 * 1024,
        "the download was cut short"
    );
    assert_eq!(checksum(&reply.body), checksum(&pattern(32 * 1024 * 1024)));
    let status = server.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    // The access log was flushed before exit.
    let lines = server.log_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("GET /large.bin HTTP/1.1\" 200 33554432")),
        "{lines:?}"
    );
    // And the port no longer accepts.
    assert!(std::net::TcpStream::connect(server.addr).is_err());
}

#[test]
fn sigint_on_an_idle_server_exits_zero_promptly() {
    let root = site();
    let mut server = Server::start(root.path(), &[]);
    let mut idle = server.connect();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(idle.try_clone().unwrap());
    Reply::read(&mut reader, false).unwrap();
    let begun = Instant::now();
    common::signal(server.pid(), libc::SIGINT);
    assert!(closed_by_server(&mut idle), "idle connection left open");
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(begun.elapsed() < Duration::from_secs(10));
}

#[test]
fn ipv6_loopback_works() {
    // A machine without an IPv6 loopback fails here with the reason, rather than passing
    // without testing anything.
    if let Err(err) = std::net::TcpListener::bind("[::1]:0") {
        panic!("no IPv6 loopback on this machine ({err}): enable ::1 on lo to run this test");
    }
    let root = site();
    let server = Server::start(root.path(), &["-a", "::1"]);
    assert!(server.addr.is_ipv6());
    assert_eq!(server.get("/").status, 200);
}

fn run_cli(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_httpd"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = common::wait_bounded(&mut child, Duration::from_secs(20));
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), out, err)
}

#[test]
fn bad_command_lines_fail_with_one_clear_line() {
    let root = site();
    let file = root.path().join("index.html");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let r = root.path().to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-r", "/no/such/dir", "-p", "0"], "/no/such/dir"),
        (
            vec!["-r", file.to_str().unwrap(), "-p", "0"],
            "not a directory",
        ),
        (vec!["-r", r, "-p", &port], "cannot listen"),
        (
            vec!["-r", r, "-p", "0", "-a", "not-an-address"],
            "invalid address",
        ),
        (
            vec!["-r", r, "-p", "0", "-a", "203.0.113.1"],
            "cannot listen",
        ),
        (vec!["-r", r, "-p", "0", "-w", "0"], "--workers"),
        (vec!["-r", r, "-p", "0", "-t", "0"], "--timeout"),
        (
            vec!["-r", r, "-p", "0", "--header-timeout", "0"],
            "--header-timeout",
        ),
        (
            vec!["-r", r, "-p", "0", "--max-connections", "0"],
            "--max-connections",
        ),
        (vec!["-r", r, "-p", "0", "--dispatch", "fast"], "--dispatch"),
        (
            vec!["-r", r, "-p", "0", "--charset", "utf-8; x"],
            "--charset \"utf-8; x\": expected a charset name",
        ),
        (
            vec!["-r", r, "-p", "0", "--log-format", "apache"],
            "--log-format 'apache'",
        ),
        (
            vec!["-r", r, "-p", "0", "-l", "/no/such/dir/access.log"],
            "access log",
        ),
        (vec!["-r", r, "-p", "99999"], "'-p'"),
        (vec!["-r", r, "--no-such-flag"], "no-such-flag"),
    ];
    for (args, needle) in cases {
        let (code, out, err) = run_cli(&args);
        assert_ne!(code, 0, "{args:?} should fail");
        assert!(
            out.is_empty() || !out.contains("listening"),
            "{args:?}: {out}"
        );
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty() && lines.len() <= 2, "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err:?}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_port_another_program_holds_fails_with_the_one_error_line() {
    // A plain listener, without SO_REUSEPORT: httpd cannot share its port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let root = site();
    let r = root.path().to_str().unwrap();
    let (code, out, err) = run_cli(&["-r", r, "-p", &addr.port().to_string()]);
    assert_ne!(code, 0, "{err}");
    assert!(!out.contains("listening"), "{out}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {err:?}");
    assert!(
        lines[0].starts_with(&format!("httpd: cannot listen on {addr}: ")),
        "{err:?}"
    );
    assert!(!err.contains("sharing"), "{err:?}");
}

#[test]
fn a_second_signal_exits_at_once_with_failure() {
    let root = site();
    root.write("large.bin", pattern(64 * 1024 * 1024));
    let mut server = Server::start(root.path(), &[]);
    // A download that is not being read keeps the graceful shutdown waiting.
    let (_stream, _) = start_download(&server);
    common::signal(server.pid(), libc::SIGTERM);
    let begun = Instant::now();
    // The first signal has been handled once the listener is closed; only then is the
    // second one a second signal (two pending SIGTERMs can merge into one).
    assert!(common::wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(server.addr).is_err()
    }));
    common::signal(server.pid(), libc::SIGTERM);
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(1), "{status:?}");
    assert!(begun.elapsed() < Duration::from_secs(10));
}

#[test]
fn version_and_help() {
    let (code, out, _) = run_cli(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("httpd {}", env!("CARGO_PKG_VERSION")));
    let (code, out, _) = run_cli(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--root",
        "--workers",
        "--host",
        "--port",
        "--timeout",
        "--log",
        "--debug",
        "--version",
    ] {
        assert!(out.contains(flag), "{flag} missing from --help: {out}");
    }
}

#[test]
fn the_sample_site_serves_everything_its_front_page_links_to() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docroot");
    let server = Server::start(&root, &[]);
    let front = server.get("/");
    assert_eq!(front.status, 200);
    let html = front.text();
    let mut links: Vec<String> = Vec::new();
    for attr in ["href=\"", "src=\""] {
        for piece in html.split(attr).skip(1) {
            links.push(piece.split('"').next().unwrap().to_string());
        }
    }
    assert!(links.len() >= 6, "{links:?}");
    for link in &links {
        let reply = server.get(link);
        let expected = if link == "/nope.html" { 404 } else { 200 };
        assert_eq!(reply.status, expected, "{link}");
    }
    assert_eq!(server.get("/docs").status, 301);
    let payload = server.get("/payload.bin");
    assert!(
        (90_000..=110_000).contains(&payload.body.len()),
        "{}",
        payload.body.len()
    );
    assert_eq!(
        payload.header("Content-Type"),
        Some("application/octet-stream")
    );
    // The stylesheet ships precompressed: a gzip-accepting client gets the .gz file.
    let raw = "GET /style.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip, br\r\nConnection: close\r\n\r\n";
    let bytes = server.exchange(raw.as_bytes());
    let css = Reply::read(&mut &bytes[..], false).unwrap();
    assert_eq!(css.header("Content-Encoding"), Some("gzip"));
    assert_eq!(css.header("Vary"), Some("Accept-Encoding"));
    assert_eq!(css.body, std::fs::read(root.join("style.css.gz")).unwrap());
}

/// The CPU check of a stop's hand-off, on its own for the same reason as the one above
/// (`.ci/run` runs it after the parallel suite): while the accept loop keeps accepting for
/// the hand-off (half a second), it waits for connections, it does not spin on the stop
/// that woke it.
#[test]
#[ignore = "CPU-time bound, wants a quiet machine: run by .ci/run"]
fn a_stop_does_not_spin_while_it_hands_the_port_over() {
    let root = site();
    let mut server = Server::start(root.path(), &[]);
    assert_eq!(server.get("/index.html").status, 200);
    let before = common::cpu_ticks(server.pid());
    let window = Instant::now();
    common::signal(server.pid(), libc::SIGTERM);
    // USER_HZ on Linux.
    let ticks_per_second = 100;
    // The measurement window for the CPU a rate needs, inside the hand-off (500 ms), so the
    // process is still there to be measured.
    std::thread::sleep(Duration::from_millis(400));
    let used = common::cpu_ticks(server.pid()) - before;
    let elapsed = window.elapsed().as_secs_f64();
    assert!(
        (used as f64) < 0.25 * elapsed * ticks_per_second as f64,
        "{used} ticks of CPU in {elapsed:.2}s of an idle server's hand-off"
    );
    assert!(server.wait_exit().success());
}
