//! Test helpers: a temporary document root, the real `httpd` binary started on port 0, and a
//! raw HTTP/1.1 response reader that shows the exact bytes. Every socket has a read timeout,
//! readiness comes from the `listening on` line, and nothing sleeps.
#![allow(dead_code)]

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read listening line");
        let url = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        let addr = url.parse().expect("address in listening line");
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
        self.request("GET", target)
    }

    pub fn request(&self, method: &str, target: &str) -> Reply {
        let raw = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        let bytes = self.exchange(raw.as_bytes());
        let mut reader = BufReader::new(&bytes[..]);
        let reply = Reply::read(&mut reader, method == "HEAD").unwrap_or_else(|err| {
            panic!(
                "{method} {target}: {err}: {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).expect("rest");
        assert!(
            rest.is_empty(),
            "{method} {target}: bytes after the reply: {rest:?}"
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

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id() as i32, libc::SIGTERM);
            wait_bounded(&mut child, Duration::from_secs(10));
        }
    }
}

/// Raises this test process's open-file limit to at least `needed` (children inherit it).
/// Returns false if the hard limit does not allow it, so the caller can skip with a message.
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
