//! Clients that are slow to take a reply, or never take it, over real sockets: a worker never
//! waits for them ("write completion", as event-driven servers do it). The unfinished reply waits in the poller and
//! any worker continues it when the socket is writable; `--send-timeout` closes a connection
//! whose client took no byte for that long, and its log line shows the bytes that went out.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::{pattern, site, wait_until, Reply, Server, IO_TIMEOUT};
use socket2::{Domain, Socket, Type};

const BIG: usize = 10 * 1024 * 1024;

/// A connection whose receive buffer is as small as the kernel allows (set before connecting,
/// so the window is small from the handshake on): the server's writes fill it at once.
fn small_window(addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

/// Bytes that have arrived on `stream` and wait to be read (FIONREAD).
fn unread(stream: &TcpStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points at a local.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    usize::try_from(n).unwrap_or(0)
}

/// One request for `target` on a new connection; the reply and how long it took.
fn probe(server: &Server, target: &str) -> (u16, Duration) {
    let begun = Instant::now();
    let reply = server.get(target);
    (reply.status, begun.elapsed())
}

/// The body byte count of the access-log line for `request` (e.g. `GET /big.bin HTTP/1.1`)
/// with status 200, one per matching line.
fn logged_bytes(server: &Server, request: &str) -> Vec<usize> {
    let marker = format!("\"{request}\" 200 ");
    server
        .log_lines()
        .iter()
        .filter_map(|line| line.split_once(&marker))
        .map(|(_, rest)| {
            let bytes = rest.split(' ').next().unwrap_or("-");
            bytes.parse().unwrap_or(0)
        })
        .collect()
}

#[test]
fn stalled_readers_hold_no_worker_and_are_cut_off_after_the_send_timeout() {
    let root = site();
    let big = pattern(BIG);
    root.write("big.bin", &big);
    root.write("small.txt", "small");
    let server = Server::start(root.path(), &["-w", "2", "--send-timeout", "4"]);

    // 16 connections (8 per worker) each pipeline 4 requests for a 10 MiB file and read
    // nothing. Under the old blocking writes the two workers sat in sendfile for good.
    let request = b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n".repeat(4);
    let mut stalled: Vec<TcpStream> = (0..16).map(|_| small_window(server.addr)).collect();
    for stream in &mut stalled {
        stream.write_all(&request).expect("send requests");
    }
    // Every one of them has been answered as far as its window allows.
    assert!(
        wait_until(Duration::from_secs(20), || stalled
            .iter()
            .all(|s| unread(s) > 0)),
        "not every stalled connection got the start of a reply"
    );

    // The workers are free: 20 probes, each answered at once.
    for i in 0..20 {
        let (status, took) = probe(&server, "/small.txt");
        assert_eq!(status, 200, "probe {i}");
        assert!(
            took < Duration::from_millis(500),
            "probe {i} took {took:?} while 16 readers stalled"
        );
    }

    // One stalled client starts reading: its four replies arrive whole and byte-exact,
    // continued by whichever worker the poller handed the connection to.
    let reader = stalled.remove(0);
    let mut replies = BufReader::with_capacity(64 * 1024, &reader);
    for i in 0..4 {
        let reply = Reply::read(&mut replies, false).expect("a whole reply");
        assert_eq!(reply.status, 200, "reply {i}");
        assert_eq!(reply.header("Connection"), Some("keep-alive"), "reply {i}");
        assert!(
            reply.body == big,
            "reply {i}: the body differs from the file"
        );
    }

    // The other 15 took nothing for --send-timeout: each is closed, and its log line shows
    // the part of the body that went out (more than nothing, less than the file).
    let request_line = "GET /big.bin HTTP/1.1";
    assert!(
        wait_until(Duration::from_secs(30), || logged_bytes(
            &server,
            request_line
        )
        .len()
            >= 4 + 15),
        "the stalled replies were not cut off and logged: {:?}",
        server.log_lines()
    );
    let bytes = logged_bytes(&server, request_line);
    assert_eq!(
        bytes.iter().filter(|&&b| b == BIG).count(),
        4,
        "completed replies: {bytes:?}"
    );
    let cut: Vec<usize> = bytes.iter().copied().filter(|&b| b != BIG).collect();
    assert_eq!(cut.len(), 15, "{bytes:?}");
    assert!(cut.iter().all(|&b| b > 0 && b < BIG), "{cut:?}");
    for (i, stream) in stalled.iter_mut().enumerate() {
        let mut rest = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        // The connection ends (EOF or reset) with less than the four replies delivered.
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => panic!("stalled connection {i}: not closed: {err}"),
            }
        }
        assert!(rest.len() < 4 * BIG, "stalled connection {i}");
    }
}

#[test]
fn a_slow_steady_reader_holds_no_worker_and_is_not_cut_off() {
    let root = site();
    let big = pattern(BIG);
    root.write("big.bin", &big);
    root.write("small.txt", "small");
    // One worker, a send timeout of one second: the reader takes 1 KiB every 100 ms (a
    // few KB/s), so it is never idle for a second and must not be cut off, although the
    // socket stays full far longer than that; nor may it hold the worker.
    let server = Server::start(root.path(), &["-w", "1", "--send-timeout", "1"]);
    let mut reader = small_window(server.addr);
    reader
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send request");
    let paced = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        let begun = Instant::now();
        // About 10 KB/s for 3 s: far from the whole file, steady all along. (The pause paces
        // the client; it synchronises nothing.)
        while begun.elapsed() < Duration::from_secs(3) {
            let n = common::read_some(&mut reader, &mut buf);
            assert!(n > 0, "closed after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
            std::thread::sleep(Duration::from_millis(100));
        }
        (reader, got)
    });
    let begun = Instant::now();
    let mut probes = 0;
    while begun.elapsed() < Duration::from_millis(2500) {
        let (status, took) = probe(&server, "/small.txt");
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_millis(500),
            "probe {probes} took {took:?} beside a slow reader"
        );
        probes += 1;
    }
    let (mut reader, got) = paced.join().expect("reader thread");
    assert!(got.len() > 8 * 1024, "only {} bytes in 3 s", got.len());
    // Still open and still in step: the rest of the reply follows, byte-exact.
    let mut rest = Vec::new();
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    rest.extend_from_slice(&got[head_end..]);
    let mut buf = vec![0u8; 256 * 1024];
    while rest.len() < BIG {
        let n = common::read_some(&mut reader, &mut buf);
        assert!(n > 0, "cut off after {} body bytes", rest.len());
        rest.extend_from_slice(&buf[..n]);
    }
    assert!(rest == big, "the body differs from the file");
    assert!(probes >= 3, "{probes} probes");
}

#[test]
fn keep_alive_pipelining_and_lingering_close_work_after_a_parked_write() {
    let root = site();
    let big = pattern(2 * 1024 * 1024);
    root.write("two.bin", &big);
    let server = Server::start(root.path(), &["-w", "1"]);
    let mut stream = small_window(server.addr);
    // Two pipelined requests, the second with `Connection: close`, then bytes the server
    // will not read: it must close with a lingering close, so no reset destroys the replies.
    stream
        .write_all(
            b"GET /two.bin HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /two.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n\
              GET /ignored HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .expect("send requests");
    assert!(wait_until(Duration::from_secs(20), || unread(&stream) > 0));
    let mut replies = BufReader::new(&stream);
    let first = Reply::read(&mut replies, false).expect("first reply");
    assert_eq!(first.header("Connection"), Some("keep-alive"));
    assert!(first.body == big, "first body differs");
    let second = Reply::read(&mut replies, false).expect("second reply");
    assert_eq!(second.header("Connection"), Some("close"));
    assert!(second.body == big, "second body differs");
    let mut rest = Vec::new();
    replies.read_to_end(&mut rest).expect("clean end, no reset");
    assert!(rest.is_empty(), "{} bytes after the replies", rest.len());
    assert!(wait_until(Duration::from_secs(10), || logged_bytes(
        &server,
        "GET /two.bin HTTP/1.1"
    ) == vec![
        big.len(),
        big.len()
    ]));
}

#[test]
fn sigterm_lets_replies_in_flight_finish_at_full_speed_or_parked() {
    let root = site();
    let len: u64 = 1 << 30;
    let tail = b"the last bytes";
    root.sparse("huge.bin", len, &[(len - tail.len() as u64, tail)]);
    let mut server = Server::start(root.path(), &["-w", "2"]);
    // Fast downloads spend much of their time at a worker (8 MiB per turn, then a yield),
    // not parked: the stop must wait for them all the same, and for a reader that is parked
    // when it comes.
    let fast: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = server.connect();
            stream
                .write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .expect("send request");
            stream
        })
        .collect();
    let mut slow = small_window(server.addr);
    slow.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-4194303\r\n\r\n")
        .expect("send request");
    assert!(wait_until(Duration::from_secs(20), || fast
        .iter()
        .chain([&slow])
        .all(|s| unread(s) > 0)));
    common::signal(server.pid(), libc::SIGTERM);
    let readers: Vec<_> = fast
        .into_iter()
        .map(|mut stream| {
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1024 * 1024];
                let mut got = 0usize;
                let mut last = Vec::new();
                loop {
                    let n = common::read_some(&mut stream, &mut buf);
                    if n == 0 {
                        return (got, last);
                    }
                    got += n;
                    last.extend_from_slice(&buf[..n]);
                    let keep = last.len().saturating_sub(tail.len());
                    last.drain(..keep);
                }
            })
        })
        .collect();
    let mut slow_reply = BufReader::new(&slow);
    let partial = Reply::read(&mut slow_reply, false).expect("the parked reply, whole");
    assert_eq!(partial.status, 206);
    assert_eq!(partial.body.len(), 4 * 1024 * 1024);
    for reader in readers {
        let (got, last) = reader.join().expect("reader");
        assert!(got as u64 > len, "a download was cut short at {got} bytes");
        assert_eq!(last, tail, "a download's last bytes");
    }
    let status = server.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    let lines = server.log_lines();
    let full = format!("\"GET /huge.bin HTTP/1.1\" 200 {len} ");
    assert_eq!(
        lines.iter().filter(|l| l.contains(&full)).count(),
        3,
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"GET /huge.bin HTTP/1.1\" 206 4194304 ")),
        "{lines:?}"
    );
}

#[test]
fn a_reply_with_connection_close_survives_a_request_sent_after_it() {
    let root = site();
    let big = pattern(8 * 1024 * 1024);
    root.write("big.bin", &big);
    let server = Server::start(root.path(), &["-w", "1"]);
    let mut stream = small_window(server.addr);
    stream
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("send request");
    // The reply is parked (the window is full); then the client sends more, which the server
    // will never read. Closing with that input unread would reset the end of the reply away.
    assert!(wait_until(Duration::from_secs(20), || unread(&stream) > 0));
    stream
        .write_all(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send late request");
    let mut replies = BufReader::new(&stream);
    let reply = Reply::read(&mut replies, false).expect("the whole reply, no reset");
    assert!(reply.body == big, "the body differs from the file");
    let mut rest = Vec::new();
    replies.read_to_end(&mut rest).expect("a clean end");
    assert!(rest.is_empty(), "{} bytes after the reply", rest.len());
}
