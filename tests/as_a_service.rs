//! Running as a service: socket activation (the listening sockets systemd hands over, driven
//! here by `systemd-socket-activate`, or by a shell that opens descriptor 3 itself) and
//! `--check`. Everything over loopback, each process bounded in time.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use common::{head, listening_addr, read_to_close, signal, site, wait_bounded, Reply, TempDir};

const HTTPD: &str = env!("CARGO_BIN_EXE_httpd");
/// How long a process under test may take to say something or to exit.
const LIMIT: Duration = Duration::from_secs(20);

/// Each line `child`'s stderr prints, as it comes, so a test can wait for one with a deadline.
fn stderr_lines(child: &mut Child) -> Receiver<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (send, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Waits (bounded) for a line of `lines` that contains `wanted`; a line containing `failure`
/// or the end of the stream first is `Err` with everything seen.
fn wait_for_line(lines: &Receiver<String>, wanted: &str, failure: &str) -> Result<(), String> {
    let deadline = Instant::now() + LIMIT;
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(wanted) {
                    return Ok(());
                }
                if line.contains(failure) {
                    return Err(seen);
                }
            }
            Err(RecvTimeoutError::Timeout) => return Err(format!("timed out; saw:\n{seen}")),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(format!("stream ended; saw:\n{seen}"))
            }
        }
    }
}

/// httpd started by `systemd-socket-activate` on loopback ports of its own, killed on drop.
struct Activated {
    child: Child,
    ports: Vec<u16>,
    stderr: Receiver<String>,
    log: PathBuf,
    _logdir: TempDir,
}

impl Activated {
    /// `systemd-socket-activate -l 127.0.0.1:P ... httpd -r ROOT -l LOG ARGS`, once it listens
    /// on `sockets` free ports; `None` if the tool is not installed. The tool takes no port 0,
    /// so a port found free may be taken before it binds: then it tries other ports.
    fn start(root: &Path, sockets: usize, args: &[&str]) -> Option<Activated> {
        for _attempt in 0..5 {
            let logdir = TempDir::new("activated-log");
            let log = logdir.path().join("access.log");
            // Held together, so the ports differ; released just before the tool binds them.
            let probes: Vec<TcpListener> = (0..sockets)
                .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a probe"))
                .collect();
            let ports: Vec<u16> = probes
                .iter()
                .map(|probe| probe.local_addr().expect("probe address").port())
                .collect();
            drop(probes);
            let mut command = Command::new("systemd-socket-activate");
            for port in &ports {
                command.arg("-l").arg(format!("127.0.0.1:{port}"));
            }
            command
                .arg(HTTPD)
                .arg("-r")
                .arg(root)
                .arg("-l")
                .arg(&log)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = match command.spawn() {
                Ok(child) => child,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
                Err(err) => panic!("spawn systemd-socket-activate: {err}"),
            };
            let stderr = stderr_lines(&mut child);
            let last = format!("Listening on 127.0.0.1:{} as", ports[sockets - 1]);
            match wait_for_line(&stderr, &last, "Failed") {
                Ok(()) => {
                    return Some(Activated {
                        child,
                        ports,
                        stderr,
                        log,
                        _logdir: logdir,
                    })
                }
                Err(seen) => {
                    let status = wait_bounded(&mut child, LIMIT);
                    eprintln!("systemd-socket-activate did not listen ({status}): {seen}");
                }
            }
        }
        panic!("systemd-socket-activate found no free ports in 5 attempts");
    }

    fn addr(&self, index: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[index]))
    }

    /// SIGTERM (the tool execs httpd, so the child is httpd) and the exit status.
    fn terminate(&mut self) -> ExitStatus {
        signal(self.child.id() as i32, libc::SIGTERM);
        wait_bounded(&mut self.child, Duration::from_secs(40))
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id() as i32, libc::SIGTERM);
            wait_bounded(&mut self.child, Duration::from_secs(10));
        }
    }
}

fn get(addr: SocketAddr, target: &str) -> Reply {
    let mut stream = common::connect(addr);
    stream
        .write_all(head("GET", target, &[("Connection", "close")]).as_bytes())
        .expect("write request");
    let bytes = read_to_close(&mut stream);
    Reply::read(&mut &bytes[..], false).expect("a reply")
}

#[test]
fn socket_activation_serves_the_sockets_it_is_handed() {
    let root = site();
    // -a and -p do not apply: 192.0.2.1 (TEST-NET-1) is no address of this machine, so
    // httpd would fail if it tried to bind it.
    let args = ["-a", "192.0.2.1", "-p", "80", "--dispatch", "defer"];
    let Some(mut server) = Activated::start(root.path(), 2, &args) else {
        println!("skipped: systemd-socket-activate is not installed (apt-get install systemd)");
        return;
    };
    // The tool starts httpd when the first connection arrives; it waits in the queue.
    let mut first = common::connect(server.addr(0));
    first
        .write_all(head("GET", "/", &[("Connection", "close")]).as_bytes())
        .expect("write request");
    assert_eq!(listening_addr(&mut server.child), server.addr(0));
    let bytes = read_to_close(&mut first);
    let reply = Reply::read(&mut &bytes[..], false).expect("a reply");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "<!DOCTYPE html><title>home</title>");
    // The second socket is served too.
    let reply = get(server.addr(1), "/style.css");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "body { color: red }");
    let said = format!(
        "listening on 127.0.0.1:{}, 127.0.0.1:{} (socket activation, 2 sockets)",
        server.ports[0], server.ports[1]
    );
    wait_for_line(&server.stderr, &said, "httpd:").expect("the socket activation log line");
    assert!(server.terminate().success());
    let log = fs::read_to_string(&server.log).expect("access log");
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(log.contains("GET /style.css"), "{log}");
}

/// Runs `bash -c` that opens descriptor 3 on `fd3` (a path; `/dev/tcp/HOST/PORT` and
/// `/dev/udp/HOST/PORT` are bash's sockets), sets `LISTEN_FDS=1` and `LISTEN_PID` (`$$`,
/// which `exec` keeps for httpd, unless `pid` says otherwise), and execs httpd with `args`.
fn start_with_fd3(fd3: &str, pid: Option<&str>, root: &Path, args: &[&str]) -> Child {
    let script =
        r#"exec 3<>"$1" || exit 99; pid=${2:-$$}; shift 2; LISTEN_FDS=1 LISTEN_PID=$pid exec "$@""#;
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("fd3")
        .arg(fd3)
        .arg(pid.unwrap_or(""))
        .arg(HTTPD)
        .arg("-r")
        .arg(root)
        .args(["-l", "off", "-p", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bash")
}

#[test]
fn an_inherited_socket_that_is_not_a_listening_tcp_socket_stops_the_start() {
    let root = site();
    // A peer for the connected sockets (the kernel completes the handshake by itself).
    let peer = TcpListener::bind("127.0.0.1:0").expect("bind a peer");
    let port = peer.local_addr().expect("peer address").port();
    let file = root.write("not-a-socket", "");
    let cases = [
        (file.display().to_string(), "fd 3 is not a socket"),
        (
            format!("/dev/tcp/127.0.0.1/{port}"),
            "fd 3 is a TCP socket that is not listening",
        ),
        (
            format!("/dev/udp/127.0.0.1/{port}"),
            "fd 3 is not a valid tcp socket",
        ),
    ];
    for (fd3, expected) in cases {
        let mut child = start_with_fd3(&fd3, None, root.path(), &[]);
        let status = wait_bounded(&mut child, LIMIT);
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            pipe.read_to_string(&mut stderr).expect("read stderr");
        }
        assert_eq!(status.code(), Some(1), "{fd3}: {stderr}");
        assert!(
            stderr.contains(&format!("httpd: socket activation: {expected}"))
                && stderr.contains("httpd serves only listening TCP sockets"),
            "{fd3}: {stderr}"
        );
    }
}

#[test]
fn sockets_meant_for_another_process_are_left_alone() {
    let root = site();
    let file = root.write("not-a-socket", "");
    // LISTEN_PID names another process (init): the descriptors are not ours to take, so
    // httpd binds -a/-p as usual.
    let mut child = start_with_fd3(&file.display().to_string(), Some("1"), root.path(), &[]);
    let addr = listening_addr(&mut child);
    assert_ne!(addr.port(), 0);
    assert_eq!(get(addr, "/").status, 200);
    signal(child.id() as i32, libc::SIGTERM);
    assert!(wait_bounded(&mut child, Duration::from_secs(40)).success());
}

/// Runs `command` to its exit (bounded): status, stdout, stderr; `Err` if it cannot start.
fn output(mut command: Command) -> std::io::Result<(ExitStatus, String, String)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let status = wait_bounded(&mut child, LIMIT);
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_string(&mut stdout)?;
    }
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr)?;
    }
    Ok((status, stdout, stderr))
}

/// Runs httpd with `args` to its exit (bounded): status, stdout, stderr.
fn run(args: &[&str]) -> (ExitStatus, String, String) {
    let mut command = Command::new(HTTPD);
    command.args(args);
    output(command).expect("run httpd")
}

#[test]
fn check_accepts_a_good_configuration_without_listening() {
    let root = site();
    let logs = TempDir::new("check-log");
    let log = logs.path().join("access.log");
    // The port is taken by a listener without SO_REUSEPORT: a real start could not listen on
    // it, so a check that passes did not try.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port().to_string();
    let root_arg = root.path().display().to_string();
    let log_arg = log.display().to_string();
    let flags = ["-r", &root_arg, "-l", &log_arg, "-p", &port, "--list"];
    let (status, stdout, stderr) = run(&[&["--check"][..], &flags].concat());
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(stdout, "configuration ok\n");
    // The log was opened for appending, as a start opens it.
    assert!(log.is_file());
    let (status, _, stderr) = run(&flags);
    assert!(!status.success());
    assert!(stderr.contains("cannot listen on 127.0.0.1:"), "{stderr}");
}

#[test]
fn check_reports_what_a_start_would() {
    let root = site();
    let root_arg = root.path().display().to_string();
    let file = root.path().join("notes.txt").display().to_string();
    let cases: &[(&[&str], &str)] = &[
        (
            &["-r", "/no/such/root"],
            "httpd: document root '/no/such/root': ",
        ),
        (&["-r", &file], "is not a directory"),
        (
            &["-r", &root_arg, "--error-pages", "/no/such/pages"],
            "--error-pages '/no/such/pages'",
        ),
        (
            &["-r", &root_arg, "-l", "/no/such/dir/access.log"],
            "httpd: cannot open access log '/no/such/dir/access.log': ",
        ),
        (
            &["-r", &root_arg, "-w", "0"],
            "--workers must be at least 1",
        ),
        (&["-r", &root_arg, "-a", "localhost"], "invalid address"),
    ];
    for (flags, expected) in cases {
        let (status, stdout, checked) = run(&[&["--check", "-p", "0"][..], flags].concat());
        assert_eq!(status.code(), Some(1), "{flags:?}: {checked}");
        assert_eq!(stdout, "", "{flags:?}");
        assert!(checked.contains(expected), "{flags:?}: {checked}");
        // Word for word what a start says.
        let (status, _, started) = run(&[&["-p", "0"][..], flags].concat());
        assert_eq!(status.code(), Some(1), "{flags:?}: {started}");
        assert_eq!(checked, started, "{flags:?}");
    }
    let (status, stdout, stderr) = run(&["--check", "-r", &root_arg, "--no-such-flag"]);
    assert!(!status.success());
    assert_eq!(stdout, "");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

/// `deploy/NAME`, read.
fn deploy_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The flags of the service unit's `ExecStart=`, the binary left out.
fn exec_start_flags(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("an ExecStart= line");
    line.split_whitespace().skip(1).map(str::to_owned).collect()
}

#[test]
fn the_service_unit_starts_httpd_with_flags_it_accepts() {
    let unit = deploy_file("httpd.service");
    let mut flags = exec_start_flags(&unit);
    // The unit's root and log paths, made local: the flags themselves are what is checked.
    let root = site();
    let logs = TempDir::new("unit-log");
    for (flag, local) in [("-r", root.path()), ("-l", &logs.path().join("access.log"))] {
        let at = flags
            .iter()
            .position(|f| f == flag)
            .unwrap_or_else(|| panic!("ExecStart has no {flag}: {flags:?}"));
        flags[at + 1] = local.display().to_string();
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (status, stdout, stderr) = run(&[&["--check"][..], &flags].concat());
    assert!(status.success(), "{flags:?}: {stderr}");
    assert_eq!(stdout, "configuration ok\n");
    // The unit waits for the grace period (default 30 s) and more before it kills.
    assert!(unit.contains("\nRequires=httpd.socket\n"));
    assert!(unit.contains("\nKillSignal=SIGTERM\n"));
    assert!(unit.contains("\nTimeoutStopSec=45\n"));
    assert!(deploy_file("httpd.socket").contains("\nListenStream=80\n"));
}

#[test]
fn systemd_accepts_the_units() {
    let dir = TempDir::new("units");
    // verify wants the ExecStart binary to exist: this build's stands in for the installed one.
    let service = deploy_file("httpd.service").replace("/usr/local/bin/httpd", HTTPD);
    fs::write(dir.path().join("httpd.service"), service).expect("write unit");
    fs::write(dir.path().join("httpd.socket"), deploy_file("httpd.socket")).expect("write unit");
    let mut command = Command::new("systemd-analyze");
    command
        .args(["verify", "httpd.socket", "httpd.service"])
        .current_dir(dir.path());
    let (status, stdout, stderr) = match output(command) {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            println!("skipped: systemd-analyze is not installed (apt-get install systemd)");
            return;
        }
        Err(err) => panic!("run systemd-analyze: {err}"),
    };
    // Unknown keys and bad values are warnings ("Unknown key", "Failed to parse"), not
    // failures, so the output must be empty too.
    let said = stdout + &stderr;
    assert!(
        status.success() && said.trim().is_empty(),
        "{status}: {said}"
    );
}
