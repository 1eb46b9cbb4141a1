//! The open-file cache is never stale: a differential test. Random creates, rewrites (same
//! size in place, so often the same mtime, and new sizes), renames of files and directories,
//! deletes, symlink swaps (inside the root and out of it) and chmods, interleaved with
//! requests over one keep-alive connection; each answer must be what the disk says at that
//! moment (status, body, length, ETag and Last-Modified from a fresh stat). Seeded: the seed
//! is printed on failure (`HTTPD_CACHE_SEED=N` replays it).

mod common;

use std::fs;
use std::io::BufReader;
use std::net::TcpStream;
use std::os::unix::fs::{symlink, FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{head, read_reply, Reply, Server, TempDir};

/// Operations per run: a few seconds with the debug build.
const OPS: usize = 2500;

const DIRS: [&str; 3] = ["d0", "d1", "d2"];
const FILES: [&str; 4] = ["f0", "f1", "f2", "f3"];

/// xorshift64*: small, seeded, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// A file name in the tree: at the root or in one of the directories, maybe a `.gz`.
fn any_file(rng: &mut Rng) -> String {
    let name = rng.pick(&FILES);
    let gz = if rng.below(4) == 0 { ".gz" } else { "" };
    match rng.below(3) {
        0 => format!("{name}{gz}"),
        _ => format!("{}/{name}{gz}", rng.pick(&DIRS)),
    }
}

fn body(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| b'a' + rng.below(26) as u8).collect()
}

/// One random change to the tree under `root` (errors, such as renaming what is not there,
/// are part of the game and ignored).
fn mutate(rng: &mut Rng, root: &Path, outside: &Path) -> String {
    let rel = any_file(rng);
    let path = root.join(&rel);
    match rng.below(10) {
        0 | 1 => {
            let len = [0, 5, 100, 40_000][rng.below(4)] + rng.below(3);
            let _ = fs::write(&path, body(rng, len));
            format!("write {rel}")
        }
        2 | 3 => {
            // Same size, in place: the mtime often stays in the same tick.
            if let Ok(file) = fs::OpenOptions::new().write(true).open(&path) {
                let len = file.metadata().map_or(0, |m| m.len()) as usize;
                let _ = file.write_all_at(&body(rng, len.min(64)), 0);
            }
            format!("overwrite {rel}")
        }
        4 => {
            let to = any_file(rng);
            let _ = fs::rename(&path, root.join(&to));
            format!("rename {rel} {to}")
        }
        5 => {
            let _ = fs::remove_file(&path);
            format!("delete {rel}")
        }
        6 => {
            let _ = fs::remove_file(&path);
            let depth = rel.matches('/').count();
            let target = match rng.below(3) {
                0 => outside.join("secret").to_string_lossy().into_owned(),
                _ => format!("{}{}", "../".repeat(depth), any_file(rng)),
            };
            let _ = symlink(&target, &path);
            format!("symlink {rel} -> {target}")
        }
        7 => {
            let mode = [0o644, 0o000, 0o444][rng.below(3)];
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(mode));
            format!("chmod {rel} {mode:o}")
        }
        8 => {
            let (a, b) = (rng.pick(&DIRS), rng.pick(&DIRS));
            let _ = fs::rename(root.join(a), root.join(b));
            format!("rename dir {a} {b}")
        }
        _ => {
            let dir = rng.pick(&DIRS);
            let dir_path = root.join(dir);
            match rng.below(3) {
                0 => {
                    let _ = fs::remove_file(&dir_path);
                    let _ = fs::create_dir(&dir_path);
                    format!("mkdir {dir}")
                }
                1 => {
                    let _ = fs::remove_file(&dir_path);
                    let _ = symlink(rng.pick(&DIRS), &dir_path);
                    format!("symlink dir {dir}")
                }
                _ => {
                    let _ = fs::remove_file(&dir_path);
                    let _ = symlink(outside, &dir_path);
                    format!("symlink dir {dir} out")
                }
            }
        }
    }
}

/// What the disk says `rel` should get: a status, and for 200 the body, the ETag and the
/// Last-Modified from a stat taken now.
#[derive(Debug, PartialEq)]
enum Expected {
    Missing,
    Forbidden,
    Ok {
        body: Vec<u8>,
        etag: String,
        modified: String,
    },
}

fn expected(root: &Path, rel: &str, coding: Option<&str>) -> Expected {
    let path = root.join(rel);
    let Ok(real) = fs::canonicalize(&path) else {
        return Expected::Missing;
    };
    if !real.starts_with(root) {
        return Expected::Missing;
    }
    let Ok(meta) = fs::metadata(&real) else {
        return Expected::Missing;
    };
    if meta.is_dir() {
        return Expected::Missing; // not asked for with a slash: the test never asks for dirs
    }
    let body = match fs::read(&real) {
        Ok(body) => body,
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            return Expected::Forbidden
        }
        Err(_) => return Expected::Missing,
    };
    let mtime = meta.modified().unwrap();
    let nanos = mtime.duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let etag = match coding {
        Some(name) => format!("\"{nanos:x}-{:x}-{name}\"", meta.len()),
        None => format!("\"{nanos:x}-{:x}\"", meta.len()),
    };
    let modified = httpdate::fmt_http_date(mtime.min(SystemTime::now()));
    Expected::Ok {
        body,
        etag,
        modified,
    }
}

/// What the disk says a request for `rel` should get, with `Accept-Encoding: gzip` when
/// `gzip`: the `.gz` beside it if that is a regular file reachable inside the root and the
/// file itself is there.
fn expected_reply(root: &Path, rel: &str, gzip: bool) -> Expected {
    let plain = expected(root, rel, None);
    if gzip && !rel.ends_with(".gz") && matches!(plain, Expected::Ok { .. }) {
        let gz = format!("{rel}.gz");
        let path = root.join(&gz);
        let is_file = fs::canonicalize(&path)
            .ok()
            .filter(|real| real.starts_with(root))
            .and_then(|real| fs::metadata(real).ok())
            .is_some_and(|meta| meta.is_file());
        if is_file {
            if let ok @ Expected::Ok { .. } = expected(root, &gz, Some("gzip")) {
                return ok;
            }
        }
    }
    plain
}

fn observed(reply: &Reply) -> Expected {
    match reply.status {
        404 => Expected::Missing,
        403 => Expected::Forbidden,
        200 => {
            let length: usize = reply
                .header("Content-Length")
                .and_then(|v| v.parse().ok())
                .expect("Content-Length");
            assert_eq!(length, reply.body.len());
            Expected::Ok {
                body: reply.body.clone(),
                etag: reply.header("ETag").unwrap_or("").to_owned(),
                modified: reply.header("Last-Modified").unwrap_or("").to_owned(),
            }
        }
        status => panic!("unexpected status {status}: {}", reply.head),
    }
}

struct Client {
    server: Server,
    stream: BufReader<TcpStream>,
}

impl Client {
    fn get(&mut self, rel: &str, gzip: bool) -> Reply {
        let target = format!("/{rel}");
        let headers: &[(&str, &str)] = if gzip {
            &[("Accept-Encoding", "gzip")]
        } else {
            &[]
        };
        let raw = head("GET", &target, headers);
        use std::io::Write;
        if self.stream.get_mut().write_all(raw.as_bytes()).is_err() {
            self.stream = BufReader::new(self.server.connect());
            self.stream.get_mut().write_all(raw.as_bytes()).unwrap();
        }
        read_reply(&mut self.stream, false)
    }
}

#[test]
fn every_answer_is_what_the_disk_says_at_that_moment() {
    let seed = std::env::var("HTTPD_CACHE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let root_dir = TempDir::new("cache-root");
    let outside = TempDir::new("cache-outside");
    fs::write(outside.path().join("secret"), "OUTSIDE").unwrap();
    for name in FILES {
        fs::write(outside.path().join(name), "OUTSIDE").unwrap();
    }
    let root: PathBuf = fs::canonicalize(root_dir.path()).unwrap();
    for dir in DIRS {
        fs::create_dir_all(root.join(dir)).unwrap();
        for name in FILES {
            fs::write(root.join(dir).join(name), format!("{dir}/{name}")).unwrap();
        }
    }
    let server = Server::start(&root, &[]);
    let stream = BufReader::new(server.connect());
    let mut client = Client { server, stream };
    let mut rng = Rng(seed);
    let mut history: Vec<String> = Vec::new();
    let started = std::time::Instant::now();
    for op in 0..OPS {
        // Ask first (so a path is cached), then change, then ask again.
        for _ in 0..2 {
            let rel = any_file(&mut rng);
            let gzip = rng.below(2) == 0;
            let reply = client.get(&rel, gzip);
            let want = expected_reply(&root, &rel, gzip);
            let got = observed(&reply);
            // Last-Modified: a file dated now may be shown as the Date; compare the rest.
            let same = match (&want, &got) {
                (
                    Expected::Ok { body, etag, .. },
                    Expected::Ok {
                        body: b2, etag: e2, ..
                    },
                ) => body == b2 && etag == e2,
                _ => want == got,
            };
            if !same {
                let recent: Vec<&String> = history.iter().rev().take(10).collect();
                panic!(
                    "seed {seed} (HTTPD_CACHE_SEED={seed}), op {op}: GET /{rel} gzip={gzip}\n\
                     disk says {want:?}\nserver said {got:?}\nlast changes, newest first: \
                     {recent:#?}"
                );
            }
            if let (Expected::Ok { modified, .. }, Expected::Ok { modified: m2, .. }) =
                (&want, &got)
            {
                let a = httpdate::parse_http_date(modified).unwrap();
                let b = httpdate::parse_http_date(m2).unwrap();
                let gap = a.duration_since(b).or_else(|e| Ok::<_, ()>(e.duration()));
                assert!(
                    gap.unwrap() <= Duration::from_secs(1),
                    "seed {seed}: Last-Modified {m2} vs disk {modified}"
                );
            }
        }
        history.push(mutate(&mut rng, &root, outside.path()));
    }
    eprintln!("seed {seed}: {OPS} changes in {:?}", started.elapsed());
    // Leave the tree removable.
    for dir in DIRS {
        let _ = fs::set_permissions(root.join(dir), fs::Permissions::from_mode(0o755));
    }
}

/// Many workers, one writer: once a rewrite has returned, no request sent after it gets the
/// older body, whichever worker answers and whoever drained the events (lookups waiting on
/// the cache's lock share a drain begun after they arrived).
#[test]
fn concurrent_readers_never_see_a_body_older_than_the_last_finished_write() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let root_dir = TempDir::new("cache-concurrent");
    let root = fs::canonicalize(root_dir.path()).unwrap();
    fs::write(root.join("v.txt"), format!("{:08}", 0)).unwrap();
    let server = Server::start(&root, &["-w", "8"]);
    let version = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (version, stop) = (Arc::clone(&version), Arc::clone(&stop));
            let mut stream = BufReader::new(server.connect());
            std::thread::spawn(move || {
                use std::io::Write;
                let mut checks = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let floor = version.load(Ordering::SeqCst);
                    let raw = head("GET", "/v.txt", &[]);
                    stream.get_mut().write_all(raw.as_bytes()).unwrap();
                    let reply = read_reply(&mut stream, false);
                    assert_eq!(reply.status, 200, "{}", reply.head);
                    let seen: u64 = reply.text().parse().expect("a version");
                    assert!(
                        seen >= floor,
                        "served version {seen} after version {floor} was written"
                    );
                    checks += 1;
                }
                checks
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_millis(1500);
    let mut v = 0;
    while std::time::Instant::now() < deadline {
        v += 1;
        if v % 2 == 0 {
            // Replaced by rename (a new inode).
            fs::write(root.join("v.tmp"), format!("{v:08}")).unwrap();
            fs::rename(root.join("v.tmp"), root.join("v.txt")).unwrap();
        } else {
            // Rewritten in place, same size (often the same mtime tick).
            let file = fs::OpenOptions::new()
                .write(true)
                .open(root.join("v.txt"))
                .unwrap();
            file.write_all_at(format!("{v:08}").as_bytes(), 0).unwrap();
        }
        version.store(v, Ordering::SeqCst);
        std::thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, Ordering::SeqCst);
    let checks: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(checks > 100, "only {checks} requests");
    eprintln!("{v} writes, {checks} checked replies");
}
