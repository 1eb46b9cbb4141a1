//! Rename races for the confinement tests: a thread swaps a name inside the root with a
//! symlink leading out (renameat2 RENAME_EXCHANGE, atomic, in a tight loop) while keep-alive
//! clients ask for the name as fast as they can; every reply is tallied and no body may come
//! from outside. Bounded by a deadline, never by sleeps.
#![allow(dead_code)]

use std::ffi::CString;
use std::io::{BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{Reply, Server, TempDir};

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// 200 with the inside file's body.
    pub inside: u64,
    /// 404: the name was a symlink leading out when the server looked.
    pub not_found: u64,
    /// Any other status, or a 200 with another body.
    pub other: Vec<(u16, String)>,
    /// Bodies that came from outside the root: must stay empty.
    pub leaks: Vec<String>,
    /// How many swaps the swapper made.
    pub swaps: u64,
}

impl Tally {
    pub fn total(&self) -> u64 {
        self.inside + self.not_found + self.other.len() as u64 + self.leaks.len() as u64
    }

    /// Nothing leaked, only 200 INSIDE and 404 were seen, and enough requests ran (with
    /// enough swaps) for the race to have meant something.
    pub fn check(&self, what: &str) {
        eprintln!(
            "{what}: {} requests ({} inside, {} not found), {} swaps",
            self.total(),
            self.inside,
            self.not_found,
            self.swaps
        );
        assert!(
            self.leaks.is_empty(),
            "{what}: leaked {:?}",
            &self.leaks[..1]
        );
        assert!(self.other.is_empty(), "{what}: unexpected {:?}", self.other);
        assert!(self.total() > 100, "{what}: only {} requests", self.total());
        assert!(self.swaps > 100, "{what}: only {} swaps", self.swaps);
        assert!(self.inside > 0, "{what}: never served the inside file");
    }
}

/// A root with `racedir/secret.txt` (INSIDE) beside `racedir_link`, a symlink to a directory
/// outside holding `secret.txt` (OUTSIDE-SECRET); and `racefile.txt` (INSIDE) beside
/// `racefile_link`, a symlink to the outside file. Returns (root, outside).
pub fn fixture() -> (TempDir, TempDir) {
    let root = TempDir::new("race-root");
    let outside = TempDir::new("race-outside");
    outside.write("secret.txt", "OUTSIDE-SECRET");
    root.write("racedir/secret.txt", "INSIDE");
    root.write("racefile.txt", "INSIDE");
    symlink(outside.path(), root.path().join("racedir_link")).expect("symlink");
    symlink(
        outside.path().join("secret.txt"),
        root.path().join("racefile_link"),
    )
    .expect("symlink");
    (root, outside)
}

/// Swaps `a` and `b` atomically.
fn exchange(a: &CString, b: &CString) -> std::io::Result<()> {
    // SAFETY: renameat2 with two valid NUL-terminated paths that it only reads.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs the race for `length`: one thread swaps `a` and `b` in a loop while `clients`
/// keep-alive connections ask for `target`. Leaves `a` and `b` as they were found.
pub fn run(
    server: &Server,
    a: &Path,
    b: &Path,
    target: &str,
    clients: usize,
    length: Duration,
) -> Tally {
    let a = CString::new(a.as_os_str().as_bytes()).expect("path");
    let b = CString::new(b.as_os_str().as_bytes()).expect("path");
    // Fail, don't skip, where the filesystem cannot do it.
    exchange(&a, &b).expect("renameat2(RENAME_EXCHANGE) on the test filesystem");
    exchange(&a, &b).expect("renameat2(RENAME_EXCHANGE) back");

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                exchange(&a, &b).expect("swap");
                swaps += 1;
            }
            // An even number of swaps puts everything back.
            if swaps % 2 == 1 {
                exchange(&a, &b).expect("swap back");
                swaps += 1;
            }
            swaps
        })
    };
    let deadline = Instant::now() + length;
    let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let addr = server.addr;
            let request = request.clone();
            thread::spawn(move || {
                let mut tally = Tally::default();
                let mut stream = crate::common::connect(addr);
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                while Instant::now() < deadline {
                    stream.write_all(request.as_bytes()).expect("write request");
                    let reply = Reply::read(&mut reader, false).expect("a reply");
                    let body = reply.text();
                    match (reply.status, body.as_str()) {
                        (_, body) if body.contains("OUTSIDE") => tally.leaks.push(body.into()),
                        (200, "INSIDE") => tally.inside += 1,
                        (404, _) => tally.not_found += 1,
                        (status, body) => {
                            tally.other.push((status, body.chars().take(80).collect()))
                        }
                    }
                    if reply.header("Connection") == Some("close") {
                        stream = crate::common::connect(addr);
                        reader = BufReader::new(stream.try_clone().expect("clone"));
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker.join().expect("client thread");
        total.inside += tally.inside;
        total.not_found += tally.not_found;
        total.other.extend(tally.other);
        total.leaks.extend(tally.leaks);
    }
    stop.store(true, Ordering::Relaxed);
    total.swaps = swapper.join().expect("swapper thread");
    total
}
