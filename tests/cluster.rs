//! Scale-out as shipped: three httpd instances behind HAProxy running `deploy/haproxy.cfg`
//! itself (the addresses reach it through its environment variables). Load through HAProxy
//! is spread over all three with no failure; one instance killed (SIGKILL) in the middle of
//! the load costs no request (HAProxy retries and redispatches); restarted on its port, it
//! gets traffic again once its health checks pass. And `deploy/nginx-balancer.conf` passes
//! `nginx -t`.
//!
//! Needs `haproxy` (and `nginx` for the second test); without it a test prints
//! "skipped: ... not installed" and returns. `.ci/run` installs haproxy.
//! Every process is stopped by a guard's `Drop`, on every path.

mod common;

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{signal, wait_bounded, wait_until, Server, TempDir};

/// Instances behind HAProxy; instance k answers `/who.txt` with "k" and is HTTPD_ADDRk.
const INSTANCES: usize = 3;
/// Client threads sending load through HAProxy, each over its own keep-alive connection.
const CLIENTS: usize = 8;
/// Requests in the steady phase and in the kill phase.
const REQUESTS: usize = 3000;
/// A reply slower than this is a failure (HAProxy's retries take well under a second here).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a restarted instance may take to get traffic again (two checks a second
/// apart, "rise 2", plus slack for a loaded machine).
const REJOIN_LIMIT: Duration = Duration::from_secs(10);

/// `name` from PATH, or from the sbin directories a normal user's PATH may lack.
fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn deploy_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name)
}

/// HAProxy in the foreground with the shipped config, stopped (SIGTERM, then SIGKILL) on drop.
struct Haproxy {
    child: Option<Child>,
    front: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

impl Haproxy {
    /// Starts `haproxy -db -f deploy/haproxy.cfg` in front of `backends`. HAProxy refuses
    /// port 0, so its front socket is one we bound on port 0 and hand over as a descriptor
    /// (`HAPROXY_BIND=fd@N`): no free-port race, and connections queue in the kernel until
    /// HAProxy takes them, so no readiness wait is needed.
    fn start(haproxy: &Path, backends: &[SocketAddr]) -> Haproxy {
        let dir = TempDir::new("haproxy");
        let log = dir.path().join("haproxy.log");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind front");
        let front = listener.local_addr().expect("front address");
        let fd = listener.as_raw_fd();
        let out = File::create(&log).expect("create haproxy log");
        let mut command = Command::new(haproxy);
        command
            .arg("-db")
            .arg("-f")
            .arg(deploy_file("haproxy.cfg"))
            .env("HAPROXY_BIND", format!("fd@{fd}"))
            .env_remove("HAPROXY_STATS")
            .env_remove("HAPROXY_MAXCONN")
            .stdin(Stdio::null())
            .stderr(out.try_clone().expect("clone haproxy log"))
            .stdout(out);
        // The shipped maxconn needs about 8 200 descriptors; a smaller hard limit would stop
        // HAProxy at start, and this test needs a few dozen connections.
        if !common::raise_fd_limit(8300) {
            eprintln!("note: open-file hard limit below 8300, HAPROXY_MAXCONN=256");
            command.env("HAPROXY_MAXCONN", "256");
        }
        for slot in 1..=8 {
            let addr = backends.get(slot - 1).map(|a| a.to_string());
            command.env(format!("HTTPD_ADDR{slot}"), addr.unwrap_or_default());
        }
        // SAFETY: between fork and exec only fcntl(2), which is async-signal-safe, on a
        // descriptor the child inherited; it clears FD_CLOEXEC so HAProxy keeps the socket.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn haproxy");
        drop(listener);
        Haproxy {
            child: Some(child),
            front,
            log,
            _dir: dir,
        }
    }

    /// The end of HAProxy's log (its start-up errors, server state changes), for a message.
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// HAProxy's request log lines for `/who.txt`.
    fn request_lines(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("\"GET /who.txt "))
            .map(str::to_string)
            .collect()
    }

    /// (requests retried, requests redispatched to another instance), from the log's
    /// `actconn/feconn/beconn/srv_conn/retries` field, two fields before the quoted request
    /// line ("+N": N retries, the last one on another instance).
    fn retries(&self) -> (usize, usize) {
        let mut retried = 0;
        let mut redispatched = 0;
        for line in self.request_lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(request) = fields.iter().position(|f| f.starts_with('"')) else {
                continue;
            };
            let Some(retries) = request
                .checked_sub(2)
                .and_then(|i| fields[i].rsplit('/').next())
            else {
                continue;
            };
            if retries.starts_with('+') {
                redispatched += 1;
            }
            if retries.trim_start_matches('+') != "0" {
                retried += 1;
            }
        }
        (retried, redispatched)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id() as i32, libc::SIGTERM);
            wait_bounded(&mut child, Duration::from_secs(5));
        }
    }
}

/// An instance of the cluster: its own root, whose `/who.txt` names it.
fn instance(root: &TempDir, port: u16) -> Server {
    let port = port.to_string();
    Server::start(
        root.path(),
        &["-w", "2", "--health", "/healthz", "-p", &port],
    )
}

fn root_for(k: usize) -> TempDir {
    let root = TempDir::new(&format!("web{k}"));
    root.write("who.txt", k.to_string());
    root
}

/// Lines for `/who.txt` in an instance's access log (the health checks are left out).
fn logged_requests(server: &Server) -> usize {
    server
        .log_lines()
        .iter()
        .filter(|line| line.contains("\"GET /who.txt "))
        .count()
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    sent: AtomicUsize,
    ok: AtomicUsize,
    failed: AtomicUsize,
    /// Replies per instance (index k-1).
    served: [AtomicUsize; INSTANCES],
    /// The first few failures, for the message.
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn served(&self) -> [usize; INSTANCES] {
        std::array::from_fn(|i| self.served[i].load(Ordering::SeqCst))
    }

    fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }

    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < 10 {
            errors.push(why);
        }
    }
}

/// Client threads sending `GET /who.txt` through HAProxy over keep-alive connections (a new
/// one after any failure) until `limit` requests have been sent, or until stopped. Dropping
/// it stops and joins the threads.
struct Load {
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(front: SocketAddr, limit: usize) -> Load {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..CLIENTS)
            .map(|_| {
                let tally = Arc::clone(&tally);
                let stop = Arc::clone(&stop);
                thread::spawn(move || client(front, limit, &tally, &stop))
            })
            .collect();
        Load {
            tally,
            stop,
            threads,
        }
    }

    /// Waits for every thread to finish (they stop by themselves at the limit).
    fn finish(mut self) -> Arc<Tally> {
        for thread in self.threads.drain(..) {
            thread.join().expect("client thread");
        }
        Arc::clone(&self.tally)
    }

    fn stop(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::SeqCst);
        self.finish()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn client(front: SocketAddr, limit: usize, tally: &Tally, stop: &AtomicBool) {
    let connect = || -> std::io::Result<(TcpStream, BufReader<TcpStream>)> {
        let stream = TcpStream::connect(front)?;
        stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok((stream, reader))
    };
    let mut conn = None;
    while !stop.load(Ordering::SeqCst) {
        if tally.sent.fetch_add(1, Ordering::SeqCst) >= limit {
            tally.sent.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let (mut stream, mut reader) = match conn.take().map_or_else(connect, Ok) {
            Ok(pair) => pair,
            Err(err) => {
                tally.fail(format!("connect: {err}"));
                continue;
            }
        };
        let outcome = stream
            .write_all(b"GET /who.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            .and_then(|()| read_reply(&mut reader));
        match outcome {
            Ok((status, body)) if status.contains(" 200 ") => {
                let who = body.trim().parse::<usize>().ok();
                match who.filter(|k| (1..=INSTANCES).contains(k)) {
                    Some(k) => {
                        tally.served[k - 1].fetch_add(1, Ordering::SeqCst);
                        tally.ok.fetch_add(1, Ordering::SeqCst);
                        conn = Some((stream, reader));
                    }
                    None => tally.fail(format!("unexpected body {body:?}")),
                }
            }
            Ok((status, _)) => tally.fail(status),
            Err(err) => tally.fail(format!("{err}")),
        }
    }
}

/// Reads one reply: its status line and body. HAProxy sends header names in lower case
/// (HTTP/1.1 names are case-insensitive), so `common::Reply`, which matches the exact case
/// httpd sends, does not fit here.
fn read_reply(reader: &mut impl BufRead) -> io::Result<(String, String)> {
    let mut status = String::new();
    if reader.read_line(&mut status)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
    }
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed in head",
            ));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let length = length.ok_or_else(|| io::Error::other(format!("no length: {status:?}")))?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((
        status.trim_end().to_string(),
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

fn assert_no_failures(phase: &str, tally: &Tally, proxy: &Haproxy) {
    let errors = tally.errors.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(
        tally.failed(),
        0,
        "{phase}: failed requests, first ones: {errors:?}\nHAProxy's log ends:\n{}",
        proxy.log_tail()
    );
}

#[test]
fn haproxy_spreads_load_survives_a_killed_instance_and_takes_it_back() {
    let Some(haproxy) = tool("haproxy") else {
        eprintln!("skipped: haproxy not installed (apt-get install haproxy)");
        return;
    };
    let started = Instant::now();
    let roots: Vec<TempDir> = (1..=INSTANCES).map(root_for).collect();
    let mut servers: Vec<Server> = roots.iter().map(|root| instance(root, 0)).collect();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let proxy = Haproxy::start(&haproxy, &addrs);

    // 1. Steady load: every request answered, each instance a fair share, and each
    // instance's access log has exactly the requests the clients saw it answer.
    let steady = Load::start(proxy.front, REQUESTS).finish();
    assert_no_failures("steady", &steady, &proxy);
    let served = steady.served();
    eprintln!(
        "steady: {} requests through HAProxy, {} failed, per instance {served:?}",
        steady.ok.load(Ordering::SeqCst) + steady.failed(),
        steady.failed()
    );
    assert_eq!(served.iter().sum::<usize>(), REQUESTS);
    for (i, &count) in served.iter().enumerate() {
        assert!(
            count >= REQUESTS / INSTANCES / 2,
            "instance {} served {count} of {REQUESTS}: {served:?}",
            i + 1
        );
        // Workers write their log lines out within about a second.
        let server = &servers[i];
        let logged = wait_until(Duration::from_secs(5), || logged_requests(server) == count);
        assert!(
            logged,
            "instance {}: {} lines in its access log, the clients saw {count} replies",
            i + 1,
            logged_requests(server)
        );
    }

    // 2. The same load, with instance 2 killed (SIGKILL: no draining, in-flight requests
    // cut) once a third of it is sent. HAProxy must hide it: no failed request.
    let victim = 1;
    let load = Load::start(proxy.front, REQUESTS);
    let tally = Arc::clone(&load.tally);
    let sent = || tally.sent.load(Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(10), || sent() >= REQUESTS / 3),
        "load did not get going"
    );
    let before_kill = tally.served();
    signal(servers[victim].pid(), libc::SIGKILL);
    let killed_at = Instant::now();
    let killed = load.finish();
    let after_kill = killed.served();
    let (retried, redispatched) = proxy.retries();
    eprintln!(
        "kill: instance {} SIGKILLed after {} of {REQUESTS} requests; {} failed; \
         per instance {after_kill:?} (at the kill {before_kill:?}); \
         HAProxy retried {retried} requests, {redispatched} of them on another instance; \
         the rest took {:.2?}",
        victim + 1,
        before_kill.iter().sum::<usize>(),
        killed.failed(),
        killed_at.elapsed()
    );
    assert_no_failures("kill", &killed, &proxy);
    assert_eq!(after_kill.iter().sum::<usize>(), REQUESTS);

    // 3. Restart it on its port, under load: it gets requests again once HAProxy's checks
    // pass (rise 2, a check a second).
    let port = addrs[victim].port();
    let load = Load::start(proxy.front, usize::MAX);
    let tally = Arc::clone(&load.tally);
    servers[victim] = instance(&roots[victim], port);
    let restarted_at = Instant::now();
    let before = tally.served()[victim];
    let rejoined = wait_until(REJOIN_LIMIT, || tally.served()[victim] > before);
    let rejoin = restarted_at.elapsed();
    let after = load.stop();
    eprintln!(
        "rejoin: instance {} listening again on port {port}; its first request through \
         HAProxy {rejoin:.2?} later; meanwhile {} requests, {} failed, per instance {:?}",
        victim + 1,
        after.sent.load(Ordering::SeqCst),
        after.failed(),
        after.served()
    );
    assert!(
        rejoined,
        "instance {} got no request within {REJOIN_LIMIT:?}",
        victim + 1
    );
    assert_no_failures("rejoin", &after, &proxy);
    eprintln!("cluster test took {:.2?}", started.elapsed());
}

#[test]
fn nginx_balancer_conf_passes_nginx_t() {
    let Some(nginx) = tool("nginx") else {
        eprintln!("skipped: nginx not installed (apt-get install nginx-light)");
        return;
    };
    // The file goes inside http {}: a minimal nginx.conf around it, with every path nginx
    // would write under a temporary prefix.
    let dir = TempDir::new("nginx");
    let prefix = dir.path().display().to_string();
    let conf = dir.write(
        "nginx.conf",
        format!(
            "pid {prefix}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n\
             access_log off;\n\
             client_body_temp_path {prefix}/body;\nproxy_temp_path {prefix}/proxy;\n\
             fastcgi_temp_path {prefix}/fastcgi;\nuwsgi_temp_path {prefix}/uwsgi;\n\
             scgi_temp_path {prefix}/scgi;\n\
             include {};\n}}\n",
            deploy_file("nginx-balancer.conf").display()
        ),
    );
    let output = Command::new(nginx)
        .arg("-t")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg("stderr")
        .output()
        .expect("run nginx -t");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && said.contains("test is successful"),
        "nginx -t: {}: {said}",
        output.status
    );
}
