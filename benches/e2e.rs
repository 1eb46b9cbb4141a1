//! End to end over loopback: the built binary at each worker count (1, 2, 4, 8, 16, 64), with
//! 16 clients at once, keep-alive and a connection per request, for a small file and a 404.
//! Reports the wall time per request under that concurrency, so worker counts compare
//! directly. `cargo bench --bench e2e` runs it; ab_results/ has the same comparison with ab
//! and wrk next to other servers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// Clients sending at once.
const CLIENTS: u64 = 16;
const WORKERS: [usize; 6] = [1, 2, 4, 8, 16, 64];

/// The sample site, as `cargo run` serves it.
fn docroot() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docroot")
}

/// `httpd -w N` on a free loopback port, with the access log thrown away; killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(workers: usize) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_httpd"))
            .arg("-r")
            .arg(docroot())
            .args(["-p", "0", "-l", "/dev/null", "-w", &workers.to_string()])
            // Keep-alive clients may idle between samples.
            .args(["-t", "60", "--max-connections", "4096"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start httpd (cargo bench builds it)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one response whose body length is in Content-Length; returns its status.
fn read_reply(reader: &mut BufReader<TcpStream>) -> u16 {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header");
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("length");
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    status
}

/// Sends `count` requests for `target` on one client's connection(s); checks each status.
fn client(addr: SocketAddr, target: &str, keep_alive: bool, count: u64, expect: u16) {
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: bench\r\n{}\r\n",
        if keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        }
    );
    let connect = || {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        BufReader::new(stream)
    };
    let mut reader = connect();
    for _ in 0..count {
        if !keep_alive {
            reader = connect();
        }
        reader
            .get_mut()
            .write_all(request.as_bytes())
            .expect("send");
        assert_eq!(read_reply(&mut reader), expect);
    }
}

/// Wall time for `iters` requests spread over [`CLIENTS`] clients.
fn run(
    addr: SocketAddr,
    target: &'static str,
    keep_alive: bool,
    expect: u16,
    iters: u64,
) -> Duration {
    let per_client = iters.div_ceil(CLIENTS);
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| thread::spawn(move || client(addr, target, keep_alive, per_client, expect)))
        .collect();
    for handle in clients {
        handle.join().expect("client");
    }
    // Per request actually sent, scaled back to what criterion asked for.
    started
        .elapsed()
        .mul_f64(iters as f64 / (per_client * CLIENTS) as f64)
}

fn e2e(c: &mut Criterion) {
    for (name, target, expect) in [("small", "/style.css", 200), ("404", "/missing", 404)] {
        for keep_alive in [true, false] {
            let mode = if keep_alive { "keepalive" } else { "close" };
            let mut group = c.benchmark_group(format!("e2e/{name}/{mode}"));
            group
                .sample_size(10)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(2));
            for workers in WORKERS {
                let server = Server::start(workers);
                let addr = server.addr;
                group.bench_function(BenchmarkId::new("workers", workers), |b| {
                    b.iter_custom(|iters| run(addr, target, keep_alive, expect, iters))
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, e2e);
criterion_main!(benches);
