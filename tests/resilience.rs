//! Resilience over real sockets: idle and slow clients never hold a worker, every deadline is
//! crossed, admission control at the connection limit, stop and restart. (A panicking
//! request is in tests/fault.rs, behind the `fault-injection` feature.)

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{closed_by_server, read_to_close, site, Reply, Server};

const REQUEST: &[u8] = b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n";

/// Sends one keep-alive request on `stream` and returns the reply's status.
fn ask(stream: &mut TcpStream) -> u16 {
    common::ask(stream, REQUEST).status
}

/// Writes `chunk` every `every` until the server answers or closes (a write fails) or `stop`.
fn drip(mut stream: TcpStream, chunk: &'static [u8], every: Duration, stop: Arc<AtomicBool>) {
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) && stream.write_all(chunk).is_ok() {
            thread::sleep(every);
        }
    });
}

/// Reads the reply a slow client gets, with how long after `since` it ended.
fn reply_of(stream: &mut TcpStream, since: Instant) -> (String, Duration) {
    let bytes = read_to_close(stream);
    (
        String::from_utf8_lossy(&bytes).into_owned(),
        since.elapsed(),
    )
}

#[test]
fn two_thousand_idle_and_two_hundred_slowloris_leave_normal_requests_fast() {
    // A missing precondition is a failure, not a silent pass: `.ci/run` raises the hard limit.
    assert!(
        common::raise_fd_limit(3000),
        "the open-file hard limit is below 3000, too low to hold 2200 clients: raise it \
         (`ulimit -Hn`) and rerun"
    );
    let root = site();
    // Two workers; long deadlines so nothing is closed while the test holds it.
    let server = Server::start(
        root.path(),
        &[
            "-w",
            "2",
            "-t",
            "60",
            "--header-timeout",
            "60",
            "--header-min-rate",
            "0",
        ],
    );
    // 2000 keep-alive connections, each served once and then left idle.
    let mut idle: Vec<TcpStream> = (0..2000).map(|_| server.connect()).collect();
    for stream in &mut idle {
        stream.write_all(REQUEST).unwrap();
    }
    for stream in &mut idle {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        assert_eq!(Reply::read(&mut reader, false).unwrap().status, 200);
    }
    // 200 slowloris connections: a head that grows by one header line every half second.
    let stop = Arc::new(AtomicBool::new(false));
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut stream = server.connect();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
        drip(
            stream.try_clone().unwrap(),
            b"X-a: b\r\n",
            Duration::from_millis(500),
            Arc::clone(&stop),
        );
        slow.push(stream);
    }
    // 50 normal clients, one after another, each on a new connection.
    let mut worst = Duration::ZERO;
    for _ in 0..50 {
        let started = Instant::now();
        let reply = server.get("/index.html");
        assert_eq!(reply.status, 200);
        worst = worst.max(started.elapsed());
    }
    assert!(
        worst < Duration::from_secs(1),
        "slowest request took {worst:?}"
    );
    // The idle ones were never dropped: a sample still works.
    for stream in idle.iter_mut().step_by(400) {
        assert_eq!(ask(stream), 200);
    }
    stop.store(true, Ordering::Relaxed);
}

#[test]
fn a_head_that_keeps_dripping_gets_408_at_the_header_deadline() {
    let root = site();
    // Fast enough for the minimum rate (about 300 B/s), never finished: only the header
    // deadline can end it. One worker, which must stay free meanwhile.
    let server = Server::start(root.path(), &["-w", "1", "--header-timeout", "2"]);
    let mut slow = server.connect();
    let started = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    drip(
        slow.try_clone().unwrap(),
        b"X-Padding: aaaaaaaaaaaaaaaaaaaa\r\n",
        Duration::from_millis(100),
        Arc::clone(&stop),
    );
    assert_eq!(server.get("/style.css").status, 200);
    let (reply, after) = reply_of(&mut slow, started);
    stop.store(true, Ordering::Relaxed);
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply}");
    assert!(reply.contains("Connection: close"), "{reply}");
    assert!(
        after >= Duration::from_millis(1900) && after < Duration::from_secs(6),
        "408 after {after:?}"
    );
}

#[test]
fn a_head_slower_than_the_minimum_rate_gets_408_early() {
    let root = site();
    // A 30 s header deadline, but 50 B/s required after 2 s of slack: a byte every 200 ms
    // (5 B/s) falls behind at about 2.5 s.
    let server = Server::start(
        root.path(),
        &["--header-timeout", "30", "--header-min-rate", "50"],
    );
    let mut slow = server.connect();
    let started = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    drip(
        slow.try_clone().unwrap(),
        b"X",
        Duration::from_millis(200),
        Arc::clone(&stop),
    );
    let (reply, after) = reply_of(&mut slow, started);
    stop.store(true, Ordering::Relaxed);
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply}");
    assert!(
        after >= Duration::from_millis(1900) && after < Duration::from_secs(10),
        "408 after {after:?}"
    );

    // The same drip at a rate above the minimum is left alone until the head completes.
    let mut steady = server.connect();
    steady.write_all(b"GET /style.css HTTP/1.1\r\n").unwrap();
    for _ in 0..30 {
        steady.write_all(b"X-Padding: aaaaaaaaaaaaaaa\r\n").unwrap();
        thread::sleep(Duration::from_millis(100));
    }
    steady.write_all(b"Host: t\r\n\r\n").unwrap();
    let mut reader = BufReader::new(steady.try_clone().unwrap());
    assert_eq!(Reply::read(&mut reader, false).unwrap().status, 200);
}

#[test]
fn at_the_limit_the_oldest_idle_connection_makes_room_then_newcomers_get_503() {
    let root = site();
    let mut server = Server::start(
        root.path(),
        &[
            "-w",
            "2",
            "--max-connections",
            "4",
            "-t",
            "60",
            "--header-timeout",
            "60",
            "--header-min-rate",
            "0",
        ],
    );
    // Four idle keep-alive connections, oldest first.
    let mut open: Vec<TcpStream> = Vec::new();
    for _ in 0..4 {
        let mut stream = server.connect();
        assert_eq!(ask(&mut stream), 200);
        open.push(stream);
    }
    // A fifth: the oldest idle one is closed to make room, and the newcomer is served. A
    // connection is a candidate once its worker has put it down after the reply (parked,
    // waiting to read), a moment after the client has read it; on a loaded machine a worker
    // can be preempted for that moment, so wait until all four are parked.
    assert!(
        common::wait_until(Duration::from_secs(10), || open
            .iter()
            .all(|stream| server.parked_for_reading(stream))),
        "the four served connections were never parked as idle"
    );
    let mut fifth = server.connect();
    assert_eq!(ask(&mut fifth), 200);
    let mut oldest = open.remove(0);
    assert!(
        closed_by_server(&mut oldest),
        "the oldest idle connection stayed open"
    );
    open.push(fifth);
    // The other three are still there.
    for stream in open.iter_mut().take(3) {
        assert_eq!(ask(stream), 200);
    }
    // Now make all four busy (a head in progress each): nothing is idle, so a newcomer gets
    // 503 with Retry-After, at once, and the busy ones are untouched.
    for stream in &mut open {
        stream.write_all(b"GET /style.css HTTP/1.1\r\n").unwrap();
    }
    // A partial head the server has not read yet still looks idle (and would be evicted
    // instead of the newcomer getting 503). Only a worker reads a client socket, and it takes
    // the connection out of the idle set before reading, so once the kernel shows no unread
    // bytes on the server's end of all four, none of them is idle.
    assert!(
        common::wait_until(Duration::from_secs(10), || open
            .iter()
            .all(|stream| server.has_read_all(stream))),
        "the server never read the four partial heads"
    );
    let started = Instant::now();
    let mut newcomer = server.connect();
    newcomer
        .write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(newcomer.try_clone().unwrap());
    let reply = Reply::read(&mut reader, false).unwrap();
    assert_eq!(reply.status, 503, "{}", reply.head);
    assert_eq!(reply.header("Retry-After"), Some("1"));
    assert_eq!(reply.header("Connection"), Some("close"));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(closed_by_server(&mut newcomer));
    for stream in &mut open {
        stream.write_all(b"Host: t\r\n\r\n").unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        assert_eq!(Reply::read(&mut reader, false).unwrap().status, 200);
    }
    assert!(server.terminate().success());
    // The 503 is logged. The newcomer is answered at accept without waiting for it, so its
    // request line is in the log only if the request had already arrived then.
    let lines = server.log_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"GET /index.html HTTP/1.1\" 503 ") || l.contains("\"\" 503 ")),
        "{lines:?}"
    );
}

#[test]
fn sigterm_closes_idle_connections_at_once_and_serves_new_ones_before_exiting() {
    let root = site();
    let mut server = Server::start(root.path(), &["-t", "30"]);
    let mut idle = server.connect();
    assert_eq!(ask(&mut idle), 200);
    let mut fresh = server.connect();
    // The server must have taken the new connection in before the signal: accepted, found
    // empty by a worker, and parked waiting for its request.
    assert!(
        common::wait_until(Duration::from_secs(10), || server
            .parked_for_reading(&fresh)),
        "the new connection was never accepted and parked"
    );
    common::signal(server.pid(), libc::SIGTERM);
    let started = Instant::now();
    assert!(closed_by_server(&mut idle));
    assert!(started.elapsed() < Duration::from_secs(3));
    // A connection accepted before the stop still gets its (last) answer.
    fresh
        .write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(fresh.try_clone().unwrap());
    let reply = Reply::read(&mut reader, false).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert!(server.wait_exit().success());
}

#[test]
fn two_instances_share_a_port_and_a_restart_loses_no_request() {
    let root = site();
    let mut old = Server::start(root.path(), &[]);
    let port = old.addr.port().to_string();
    let new = Server::start(root.path(), &["-p", &port]);
    assert_eq!(new.addr, old.addr);

    // Clients on new connections, nonstop, while the old instance is stopped.
    let addr = old.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            let served = Arc::clone(&served);
            thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let outcome = std::panic::catch_unwind(|| {
                        let mut stream = common::connect(addr);
                        stream
                            .write_all(
                                b"GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                            )
                            .map_err(|err| err.to_string())?;
                        let mut reader = BufReader::new(stream);
                        Reply::read(&mut reader, false)
                            .map(|reply| reply.status)
                            .map_err(|err| err.to_string())
                    });
                    match outcome {
                        Ok(Ok(200)) => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Ok(status)) => failures.push(format!("status {status}")),
                        Ok(Err(err)) => failures.push(err),
                        Err(_) => failures.push("connect failed".to_string()),
                    }
                }
                failures
            })
        })
        .collect();
    assert!(common::wait_until(Duration::from_secs(10), || served
        .load(Ordering::Relaxed)
        >= 200));
    assert!(old.terminate().success());
    let at_stop = served.load(Ordering::Relaxed);
    assert!(common::wait_until(Duration::from_secs(10), || served
        .load(Ordering::Relaxed)
        >= at_stop + 200));
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|client| client.join().unwrap())
        .collect();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    // Both instances served: the old one until its stop, the new one after.
    assert!(old.log_lines().len() > 10);
    assert!(new.get("/index.html").status == 200);
}

#[test]
fn every_dispatch_mode_serves_new_and_keep_alive_connections() {
    let root = site();
    for mode in ["direct", "defer"] {
        let server = Server::start(root.path(), &["-w", "1", "--dispatch", mode]);
        // A client that connects and waits before sending is still served. (The pause is
        // the client's behaviour under test, not a wait for the server: with `defer` the
        // server does not even see the connection until its first bytes.)
        let mut late = server.connect();
        thread::sleep(Duration::from_millis(300));
        for _ in 0..3 {
            assert_eq!(ask(&mut late), 200, "--dispatch {mode}");
        }
        assert_eq!(server.get("/index.html").status, 200, "--dispatch {mode}");
    }
}

/// An idle server, and one handing its port over after SIGTERM, sleep: the workers in the
/// epoll set and the accept loop in its own wait for the whole of the hand-off (which once
/// spun on a stop event that stayed ready). A CPU-time bound, so only on a quiet machine:
/// `.ci/run` runs it after the parallel suite.
#[test]
#[ignore = "CPU-time bound, wants a quiet machine: run by .ci/run"]
fn an_idle_or_stopping_server_does_not_spin() {
    let root = site();
    let mut server = Server::start(root.path(), &["-w", "8"]);
    // One keep-alive connection stays open, so the stop has something to wait for.
    let mut held = server.connect();
    assert_eq!(ask(&mut held), 200);
    // USER_HZ on Linux.
    let ticks_per_second = 100.0;
    // Each window is where the CPU the server uses is measured, not a wait for it to reach
    // some state: spinning is a rate, and a rate needs an interval.
    for phase in ["idle", "stopping"] {
        if phase == "stopping" {
            common::signal(server.pid(), libc::SIGTERM);
        }
        let before = common::cpu_ticks(server.pid());
        let window = Instant::now();
        thread::sleep(Duration::from_millis(400));
        let used = common::cpu_ticks(server.pid()) - before;
        let elapsed = window.elapsed().as_secs_f64();
        assert!(
            (used as f64) < 0.2 * elapsed * ticks_per_second,
            "{used} ticks of CPU in {elapsed:.2}s while {phase}"
        );
    }
    drop(held);
    assert!(server.wait_exit().success());
}

/// Leader/followers: a connection that yields its worker with more requests buffered goes
/// through the workers' queue, parked ones come back through the epoll set. A client that
/// pipelines without end keeps the queue from ever being empty; the set must still be
/// looked at, or a parked client's next request waits until its idle deadline closes it
/// unanswered.
#[test]
fn a_client_that_keeps_its_worker_busy_does_not_starve_a_parked_one() {
    use std::io::Read;
    let root = site();
    let server = Server::start(root.path(), &["-w", "1"]);
    let mut waiting = server.connect();
    assert_eq!(ask(&mut waiting), 200);
    // Now parked. Another client pipelines requests in large batches and reads every reply.
    let busy = server.connect();
    let stop = Arc::new(AtomicBool::new(false));
    let read = Arc::new(AtomicUsize::new(0));
    let mut writer = busy.try_clone().unwrap();
    let writing = Arc::clone(&stop);
    thread::spawn(move || {
        let batch = REQUEST.repeat(4096);
        while !writing.load(Ordering::Relaxed) && writer.write_all(&batch).is_ok() {}
    });
    let mut reader = busy.try_clone().unwrap();
    let counted = Arc::clone(&read);
    thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            counted.fetch_add(n, Ordering::Relaxed);
        }
    });
    assert!(common::wait_until(Duration::from_secs(10), || {
        read.load(Ordering::Relaxed) > 1_000_000
    }));
    let begun = Instant::now();
    let before = read.load(Ordering::Relaxed);
    waiting
        .write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (reply, took) = reply_of(&mut waiting, begun);
    // The busy client was still busy then: it goes on getting replies.
    let busy_still = common::wait_until(Duration::from_secs(5), || {
        read.load(Ordering::Relaxed) > before
    });
    stop.store(true, Ordering::Relaxed);
    let _ = busy.shutdown(std::net::Shutdown::Both);
    assert!(
        reply.starts_with("HTTP/1.1 200 "),
        "{reply:?} after {took:?}"
    );
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    assert!(busy_still, "the busy client was served all along");
}
