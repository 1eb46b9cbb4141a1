//! Whole request heads through the handler in-process: parse, respond (errors through the
//! one renderer) and encode the response head, against a small fixture root with odd
//! modification times (before 1970, far in the future), precompressed variants, a directory
//! with and one without an index, and listings. Never panics; the head is well formed and its
//! Content-Length is the body's length.
#![no_main]

use std::fs::{File, FileTimes};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use httpd::internals::handler::{self, Site};
use httpd::internals::request::{self, Parsed};
use httpd::internals::response::Clock;
use httpd::Config;
use libfuzzer_sys::fuzz_target;

/// The fuzzing root (made once per process under the temp dir; the fuzzer exits by itself
/// after `-max_total_time`, so the small tree is left for the OS's temp cleanup).
fn root_path() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir()
            .join(format!("httpd-fuzz-respond-{}", std::process::id()))
            .join("root");
        let write = |rel: &str, contents: &[u8], mtime: Option<SystemTime>| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, contents).unwrap();
            if let Some(time) = mtime {
                let file = File::options().write(true).open(&path).unwrap();
                file.set_times(FileTimes::new().set_modified(time)).unwrap();
            }
        };
        let day = Duration::from_secs(86_400);
        write("index.html", b"<title>home</title>", None);
        write("hello.txt", b"hello, world\n", None);
        write("style.css", b"body { color: red }", None);
        write("style.css.gz", b"GZ", None);
        write("style.css.br", b"BR", None);
        write("old.txt", b"old", Some(UNIX_EPOCH - 3650 * day));
        write("epoch.txt", b"epoch", Some(UNIX_EPOCH));
        write("future.txt", b"future", Some(UNIX_EPOCH + 47_000 * day));
        write("docs/index.html", b"<title>docs</title>", None);
        write("list/a.txt", b"a", Some(UNIX_EPOCH - 1000 * day));
        write("list/b & <c>.txt", b"b", Some(UNIX_EPOCH + 100_000 * day));
        write("list/.hidden", b"no", None);
        write("list/sub/x.txt", b"x", None);
        write(".well-known/security.txt", b"Contact: x", None);
        root.canonicalize().unwrap()
    })
}

/// The same root with and without `--list`, and a health path.
fn sites() -> &'static [Site; 2] {
    static SITES: OnceLock<[Site; 2]> = OnceLock::new();
    SITES.get_or_init(|| {
        let root: &Path = root_path();
        let root = root.to_str().unwrap();
        let site = |list: bool| {
            let mut args = vec![
                "-r",
                root,
                "--health",
                "/healthz",
                "--cache-control",
                "max-age=60",
            ];
            if list {
                args.push("--list");
            }
            Config::from_command_line(&args).unwrap().site
        };
        [site(false), site(true)]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(Parsed::Complete(request, _)) = request::parse(data) else {
        return;
    };
    let mut clock = Clock::default();
    let mut head = Vec::with_capacity(512);
    for site in sites() {
        let response =
            handler::respond(&request, site).unwrap_or_else(|err| site.pages.render(err));
        assert!((100..600).contains(&response.status));
        for keep_alive in [true, false] {
            response.encode_head(clock.now(), keep_alive, &mut head);
            assert!(head.starts_with(b"HTTP/1.1 ") && head.ends_with(b"\r\n\r\n"));
            // Exactly one blank line: the head's end.
            assert_eq!(head.windows(4).filter(|w| w == b"\r\n\r\n").count(), 1);
            let text = std::str::from_utf8(&head).unwrap();
            if response.has_body() {
                let length = format!("Content-Length: {}\r\n", response.body.len());
                assert!(text.contains(&length), "{text}");
            } else {
                assert!(!text.contains("Content-Length"), "{text}");
            }
        }
    }
});
