//! Test helpers: a temporary document root, the real `httpd` binary started on port 0, and a
//! raw HTTP/1.1 response reader that shows the exact bytes, and the one way tests ask for a
//! reply. Every socket has a read timeout, readiness comes from the `listening on` line, and
//! nothing sleeps to synchronise: what a test must wait for is a condition polled with a
//! deadline ([`wait_until`]), such as what `/proc` shows of the server's sockets.
#![allow(dead_code)]

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use httpd::internals::response::Body;

/// Read timeout for every client socket: long enough for a loaded CI box, short enough that a
/// hang fails the test instead of the suite.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "httpd-test-{}-{}-{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Creates `rel` as a sparse file of `len` bytes (holes read as zeros) with `writes`
    /// (offset, bytes) placed in it: a file of many GiB that costs almost no disk.
    pub fn sparse(&self, rel: &str, len: u64, writes: &[(u64, &[u8])]) {
        use std::os::unix::fs::FileExt;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(self.0.join(rel))
            .expect("create sparse file");
        file.set_len(len).expect("set_len");
        for (offset, bytes) in writes {
            file.write_all_at(bytes, *offset)
                .expect("write into sparse file");
        }
    }

    /// Writes `contents` to `rel` (creating parent directories).
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent");
        }
        fs::write(&path, contents).expect("write fixture");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The sample site most tests use.
pub fn site() -> TempDir {
    let dir = TempDir::new("site");
    dir.write("index.html", "<!DOCTYPE html><title>home</title>");
    dir.write("style.css", "body { color: red }");
    dir.write("app.js", "console.log(1)");
    dir.write("photo.jpg", [0xff, 0xd8, 0xff, 0xe0]);
    dir.write("photo.jpeg", [0xff, 0xd8, 0xff, 0xe0]);
    dir.write("image.png", b"\x89PNG\r\n\x1a\n");
    dir.write("anim.gif", b"GIF89a");
    dir.write("movie.swf", b"FWS");
    dir.write("notes.txt", "plain text\n");
    dir.write("blob.unknownext", "??");
    dir.write("docs/index.html", "<title>docs</title>");
    dir.write("docs/page.html", "<title>page</title>");
    dir.write("empty-dir/.keep", "");
    dir.write("with space.txt", "space");
    dir.write("text..txt", "dots");
    dir.write("café.txt", "utf-8 name");
    dir.write(".hidden", "secret");
    dir.write(".git/config", "[core]");
    dir.write("docs/.env", "SECRET=1");
    dir.write(
        ".well-known/security.txt",
        "Contact: mailto:security@example.test",
    );
    dir.write("big.bin", pattern(256 * 1024));
    dir
}

/// Deterministic non-repeating-looking bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

/// A running `httpd` binary, stopped (SIGTERM, then SIGKILL if it hangs) on drop.
pub struct Server {
    pub addr: SocketAddr,
    child: Option<Child>,
    pub log: PathBuf,
    _logdir: TempDir,
}

impl Server {
    /// Starts `httpd -r ROOT -p 0 -l LOG ARGS...` and waits for its `listening on` line.
    pub fn start(root: &Path, args: &[&str]) -> Server {
        Self::start_with_fd_limit(root, args, None)
    }

    /// As [`Server::start`], with RLIMIT_NOFILE lowered to `fd_limit` in the server only.
    pub fn start_with_fd_limit(root: &Path, args: &[&str], fd_limit: Option<u32>) -> Server {
        Self::start_with(root, args, fd_limit, &[])
    }

    /// As [`Server::start`], with extra environment variables for the server.
    pub fn start_with_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_with(root, args, None, env)
    }

    /// The general form: an optional fd limit and extra environment. `-p` and `-a` in `args`
    /// replace the defaults (port 0 on 127.0.0.1).
    pub fn start_with(
        root: &Path,
        args: &[&str],
        fd_limit: Option<u32>,
        env: &[(&str, &str)],
    ) -> Server {
        let logdir = TempDir::new("log");
        let log = logdir.path().join("access.log");
        let mut command = match fd_limit {
            // `exec` keeps the PID, so the server is still the process we signal.
            Some(limit) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_httpd"));
                sh
            }
            None => Command::new(env!("CARGO_BIN_EXE_httpd")),
        };
        command.arg("-r").arg(root).arg("-l").arg(&log);
        if !args.contains(&"-p") {
            command.args(["-p", "0"]);
        }
        command.envs(env.iter().copied());
        if !args.contains(&"-a") {
            command.args(["-a", "127.0.0.1"]);
        }
        command.args(args);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn httpd");
        let addr = listening_addr(&mut child);
        Server {
            addr,
            child: Some(child),
            log,
            _logdir: logdir,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// Sends `raw` on a new connection and reads until the server closes it.
    pub fn exchange(&self, raw: &[u8]) -> Vec<u8> {
        let mut stream = self.connect();
        stream.write_all(raw).expect("write request");
        read_to_close(&mut stream)
    }

    /// One request with `Connection: close`; the parsed reply.
    pub fn get(&self, target: &str) -> Reply {
        self.ask("GET", target, &[])
    }

    pub fn request(&self, method: &str, target: &str) -> Reply {
        self.ask(method, target, &[])
    }

    /// One request with extra header lines and `Connection: close`, on a new connection; the
    /// parsed reply, after checking that nothing follows it before the server closes.
    pub fn ask(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
        let raw = head(
            method,
            target,
            &[headers, &[("Connection", "close")]].concat(),
        );
        let bytes = self.exchange(raw.as_bytes());
        let mut reader = &bytes[..];
        let reply = Reply::read(&mut reader, method == "HEAD").unwrap_or_else(|err| {
            panic!(
                "{method} {target} {headers:?}: {err}: {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert!(
            reader.is_empty(),
            "{method} {target} {headers:?}: bytes after the reply: {reader:?}"
        );
        reply
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server already stopped");
        signal(child.id() as i32, libc::SIGTERM);
        wait_bounded(&mut child, Duration::from_secs(40))
    }

    /// Waits (bounded) for the server to exit on its own, e.g. after a signal already sent.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server already stopped");
        wait_bounded(&mut child, Duration::from_secs(40))
    }

    /// The access log, after the server has flushed it.
    pub fn log_lines(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// The server's end of one client connection, as `/proc/PID/net/tcp` shows it.
#[derive(Debug, Clone, Copy)]
pub struct ServerSide {
    /// Bytes the client sent that the server has not read yet (`rx_queue`).
    pub unread: u64,
    /// The socket's inode: 0 while the connection waits in the accept queue, since only
    /// `accept` gives it a file.
    pub inode: u64,
}

impl Server {
    /// The server's end of `stream` (an established connection whose local port is the
    /// server's and remote port is ours), if the kernel lists it.
    pub fn server_side(&self, stream: &TcpStream) -> Option<ServerSide> {
        let ours = stream.local_addr().expect("local address").port();
        let server = self.addr.port();
        let port = |field: &str| {
            field
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok())
        };
        ["tcp", "tcp6"].iter().find_map(|table| {
            let text = fs::read_to_string(format!("/proc/{}/net/{table}", self.pid())).ok()?;
            text.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout inode
                if fields.len() < 10
                    || fields[3] != "01"
                    || port(fields[1]) != Some(server)
                    || port(fields[2]) != Some(ours)
                {
                    return None;
                }
                let unread = fields[4].split(':').nth(1)?;
                Some(ServerSide {
                    unread: u64::from_str_radix(unread, 16).ok()?,
                    inode: fields[9].parse().ok()?,
                })
            })
        })
    }

    /// Whether the server has accepted `stream` and read every byte sent on it so far. Only
    /// a worker reads a client socket, so this proves a worker has taken what was sent.
    pub fn has_read_all(&self, stream: &TcpStream) -> bool {
        self.server_side(stream)
            .is_some_and(|side| side.inode != 0 && side.unread == 0)
    }

    /// Whether the server's end of `stream` is parked waiting to read: registered for
    /// readability (EPOLLIN, not yet fired) in one of the server's epoll instances.
    /// `/proc/PID/fdinfo/FD` of an epoll descriptor lists each registration as a `tfd:` line
    /// with its event mask and the target's inode.
    pub fn parked_for_reading(&self, stream: &TcpStream) -> bool {
        let Some(side) = self.server_side(stream).filter(|side| side.inode != 0) else {
            return false;
        };
        let inode = format!("ino:{:x}", side.inode);
        let Ok(fds) = fs::read_dir(format!("/proc/{}/fdinfo", self.pid())) else {
            return false;
        };
        fds.flatten().any(|fd| {
            let info = fs::read_to_string(fd.path()).unwrap_or_default();
            info.lines()
                .filter(|line| line.starts_with("tfd:"))
                .any(|line| {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    let events = words
                        .iter()
                        .position(|w| *w == "events:")
                        .and_then(|i| words.get(i + 1))
                        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                        .unwrap_or(0);
                    // A one-shot registration that has fired keeps only its flag bits.
                    events & libc::EPOLLIN as u32 != 0 && words.contains(&inode.as_str())
                })
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id() as i32, libc::SIGTERM);
            wait_bounded(&mut child, Duration::from_secs(10));
        }
    }
}

/// Raises this test process's open-file limit to at least `needed` (children inherit it).
/// Returns false if the hard limit does not allow it; the caller then fails with the reason
/// (`.ci/run` raises the hard limit first).
pub fn raise_fd_limit(needed: u64) -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return false;
        }
        if limit.rlim_cur >= needed {
            return true;
        }
        if limit.rlim_max < needed {
            return false;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
    }
}

/// CPU time (user + system) a process has used, from /proc, in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Waits for `child` up to `limit`, then kills it; returns the exit status either way.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return child.wait().expect("wait after kill");
        }
        // Polling a child's exit has no blocking-with-timeout form in std.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `condition` until it holds or `limit` passes, for state that has no event to wait on.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

/// The address in the first line a server started with its stdout piped prints
/// (`listening on http://ADDR`): readiness, without polling the port.
pub fn listening_addr(child: &mut Child) -> SocketAddr {
    let stdout = child.stdout.take().expect("stdout piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read listening line");
    line.trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .parse()
        .expect("address in listening line")
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// One `read`, retried on EINTR. A blocking socket read with SO_RCVTIMEO can fail with
/// EINTR even without signal handlers, when the process is stopped and resumed (see
/// signal(7)); that is not the server's doing, so it is retried.
pub fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> usize {
    loop {
        match reader.read(buf) {
            Ok(n) => return n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => panic!("read failed: {err}"),
        }
    }
}

/// Reads until EOF (or a reset after the reply, which counts as the end).
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => return out,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => panic!("read failed after {} bytes: {err}", out.len()),
        }
    }
}

/// Whether the server closes `stream` (EOF or reset) before the read timeout.
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                eprintln!("closed_by_server: {err} ({:?})", err.kind());
                return false;
            }
        }
    }
}

/// A request head: the request line, `Host`, the extra header lines, the blank line.
pub fn head(method: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: t\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw + "\r\n"
}

/// Writes `raw` (one request) on `stream` and reads its reply, leaving the connection open.
/// Bytes after the reply are not expected: a pipelined test reads with [`read_reply`].
pub fn ask(stream: &mut TcpStream, raw: &[u8]) -> Reply {
    stream.write_all(raw).expect("write request");
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    read_reply(&mut reader, raw.starts_with(b"HEAD "))
}

/// Reads one reply (to HEAD if `head_only`), failing the test if it is not a whole reply.
pub fn read_reply(reader: &mut impl BufRead, head_only: bool) -> Reply {
    Reply::read(reader, head_only).expect("a complete reply")
}

/// One parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The head exactly as received.
    pub head: String,
}

impl Reply {
    /// Reads one response from `reader`; `head_only` for replies to HEAD.
    pub fn read(reader: &mut impl BufRead, head_only: bool) -> io::Result<Reply> {
        let mut head = String::new();
        let mut status_line = String::new();
        if reader.read_line(&mut status_line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no response"));
        }
        head.push_str(&status_line);
        let status_line = status_line.trim_end().to_string();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            head.push_str(&line);
            if !line.ends_with("\r\n") {
                return Err(io::Error::other(format!(
                    "header line without CRLF: {line:?}"
                )));
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| io::Error::other(format!("bad header {line:?}")))?;
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let mut reply = Reply {
            status,
            status_line,
            headers,
            body: Vec::new(),
            head,
        };
        if !head_only && !matches!(status, 100..=199 | 204 | 304) {
            let len: usize = reply
                .header("Content-Length")
                .ok_or_else(|| io::Error::other("no Content-Length"))?
                .parse()
                .map_err(|_| io::Error::other("bad Content-Length"))?;
            reply.body = vec![0; len];
            reader.read_exact(&mut reply.body)?;
        }
        Ok(reply)
    }

    /// The value of header `name` (exact case, so tests see what ApacheBench sees).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the body would put on the wire.
pub fn body_of(body: &Body) -> Vec<u8> {
    let window = |file: &fs::File, offset: u64, len: u64| {
        let mut bytes = vec![0; usize::try_from(len).expect("a small fixture")];
        file.read_exact_at(&mut bytes, offset).expect("read body");
        bytes
    };
    match body {
        Body::Empty => Vec::new(),
        Body::Static(bytes) => bytes.to_vec(),
        Body::Shared(bytes) => bytes.to_vec(),
        Body::Bytes(bytes) => bytes.clone(),
        Body::File { file, offset, len } => window(file, *offset, *len),
        Body::Multipart {
            file,
            parts,
            closing,
        } => {
            let mut out = Vec::new();
            for part in parts {
                out.extend_from_slice(&part.head);
                out.extend(window(file, part.offset, part.len));
            }
            out.extend_from_slice(closing);
            out
        }
    }
}
