//! A cache hit sends the head the uncached path sends, byte for byte: a differential, in
//! process. The file cache renders a file's `ETag`, `Last-Modified` and `Content-Type` once,
//! when the entry is filled, and every hit copies them; `--file-cache 0` renders them per
//! request. For files of several types, dated 1960, 2020 and 2099, with `.br`/`.gz` variants,
//! small and large, and for plain, conditional, range and negotiated requests, each with and
//! without `--charset`, the two must agree — for every `Date` the head could be sent with,
//! since a Last-Modified later than the Date is sent as the Date (RFC 9110 §8.8.2.1), and a
//! cached entry outlives the second it was filled in.

mod common;

use std::fs::{File, FileTimes};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::TempDir;
use httpd::internals::handler::{self, Site};
use httpd::internals::request::{self, Parsed};
use httpd::internals::response::{http_date, Date, Response};
use httpd::Config;

const DAY: Duration = Duration::from_secs(86_400);

fn set_mtime(path: &Path, time: SystemTime) {
    let file = File::options().write(true).open(path).expect("open");
    file.set_times(FileTimes::new().set_modified(time))
        .expect("set mtime");
}

/// Files of each kind the head depends on, by name: type, variants, age, size.
fn fixture() -> TempDir {
    let dir = TempDir::new("cache-heads");
    dir.write("index.html", "<title>home</title>");
    let hello = dir.write("hello.txt", "hello, world\n");
    set_mtime(&hello, UNIX_EPOCH + Duration::from_secs(1_600_000_000));
    dir.write("app.js", "console.log(1)");
    dir.write("data.json", "{\"a\": 1}");
    dir.write("photo.jpg", [0xff, 0xd8, 0xff, 0xe0]);
    dir.write("noext", "bytes");
    dir.write("style.css", "body { color: red }");
    dir.write("style.css.gz", "GZ");
    dir.write("style.css.br", "BR");
    // Larger than the bodies the cache keeps in memory: sent from the file either way.
    dir.write("big.txt", vec![b'b'; 40 * 1024]);
    dir.write("sub/page.html", "<title>sub</title>");
    let old = dir.write("old.txt", "1960");
    set_mtime(&old, UNIX_EPOCH - 3653 * DAY);
    let future = dir.write("future.txt", "2099");
    set_mtime(&future, UNIX_EPOCH + Duration::from_secs(4_070_908_800));
    // Just ahead of now: later than some of the Dates below and earlier than others.
    let soon = dir.write("soon.html", "soon");
    set_mtime(&soon, SystemTime::now() + Duration::from_secs(3600));
    dir
}

const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/hello.txt",
    "/app.js",
    "/data.json",
    "/photo.jpg",
    "/noext",
    "/style.css",
    "/big.txt",
    "/sub/page.html",
    "/old.txt",
    "/future.txt",
    "/soon.html",
];

fn site(root: &Path, flags: &[&str]) -> Site {
    let mut args = vec!["-r", root.to_str().expect("a UTF-8 temporary path")];
    args.extend_from_slice(flags);
    Config::from_command_line(&args).expect("settings").site
}

fn respond(site: &Site, raw: &str) -> Response {
    let Ok(Parsed::Complete(parsed, _)) = request::parse(raw.as_bytes()) else {
        panic!("not a complete request: {raw:?}");
    };
    handler::respond(&parsed, site).unwrap_or_else(|err| site.pages.render(err))
}

fn encode(response: &Response, date: Date<'_>) -> String {
    let mut head = Vec::new();
    response.encode_head(date, true, &mut head);
    String::from_utf8(head).expect("an ASCII head")
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(": ")?;
        (n == name).then_some(v)
    })
}

/// The Dates a head is encoded with: now, and a day, a year and a century either side, so a
/// file's time falls before some and after others.
fn dates(now: SystemTime) -> Vec<String> {
    [
        now,
        now - DAY,
        now + DAY,
        now - 365 * DAY,
        now + 365 * DAY,
        now + 100 * 365 * DAY,
    ]
    .iter()
    .map(|time| http_date(*time).to_string())
    .collect()
}

/// The requests for `path`, given the validators the uncached path sent for it.
fn requests(path: &str, etag: &str, modified: &str) -> Vec<(String, String)> {
    let headers: [&[(&str, &str)]; 11] = [
        &[],
        &[("If-None-Match", etag)],
        &[("If-None-Match", "\"other\"")],
        &[("If-Modified-Since", modified)],
        &[("If-Match", "\"other\"")],
        &[("Range", "bytes=1-2")],
        &[("Range", "bytes=1-2"), ("If-Range", etag)],
        &[("Range", "bytes=999999-")],
        &[("Accept-Encoding", "br")],
        &[("Accept-Encoding", "gzip")],
        &[("Accept-Encoding", "identity;q=0")],
    ];
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|headers| {
            let what = format!("GET {path} {headers:?}");
            (what, common::head("GET", path, headers))
        })
        .collect();
    all.push((format!("HEAD {path}"), common::head("HEAD", path, &[])));
    all
}

/// Every request for every path, cached (a hit) and uncached, agree byte for byte for every
/// Date. Returns how many heads were compared.
fn compare(root: &Path, flags: &[&str]) -> usize {
    let mut cached_flags = flags.to_vec();
    cached_flags.extend(["--file-cache", "64M"]);
    let cached = site(root, &cached_flags);
    let cache = cached.cache.as_ref().expect("the file cache is on here");
    let mut uncached_flags = flags.to_vec();
    uncached_flags.extend(["--file-cache", "0"]);
    let uncached = site(root, &uncached_flags);
    assert!(uncached.cache.is_none());
    let mut compared = 0;
    for path in PATHS {
        // The uncached path's validators, for the conditional requests.
        let first = respond(&uncached, &common::head("GET", path, &[]));
        let now = http_date(SystemTime::now()).to_string();
        let first = encode(&first, Date::parse(&now).expect("a Date"));
        let etag = header(&first, "ETag").expect("an ETag").to_string();
        let modified = header(&first, "Last-Modified")
            .expect("a Last-Modified")
            .to_string();
        // Fill the cache for this path; what follows are hits.
        respond(&cached, &common::head("GET", path, &[]));
        let filled = cache.usage().entries;
        assert!(filled > 0, "{path}: nothing cached");
        for (what, raw) in requests(path, &etag, &modified) {
            // The handler reads the clock for the preconditions: a pair that straddles a
            // second is asked again (a 2099 file's Last-Modified is clamped to now).
            let mut tries = 0;
            let (hit, miss) = loop {
                let second =
                    |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let before = second(SystemTime::now());
                let pair = (respond(&cached, &raw), respond(&uncached, &raw));
                tries += 1;
                if second(SystemTime::now()) == before || tries == 5 {
                    break pair;
                }
            };
            assert_eq!(cache.usage().entries, filled, "{what}: not a hit");
            assert_eq!(hit.status, miss.status, "{what}");
            for date in dates(SystemTime::now()) {
                let date = Date::parse(&date).expect("a Date");
                assert_eq!(
                    encode(&hit, date),
                    encode(&miss, date),
                    "{what}, Date {}: cached and uncached heads differ",
                    date.text()
                );
                compared += 1;
            }
            assert_eq!(
                common::body_of(&hit.body),
                common::body_of(&miss.body),
                "{what}"
            );
        }
    }
    compared
}

#[test]
fn cached_and_uncached_heads_are_identical() {
    let root = fixture();
    let mut compared = 0;
    for flags in [
        &[][..],
        &["--charset", "utf-8"],
        &["--cache-control", "max-age=60"],
    ] {
        compared += compare(root.path(), flags);
    }
    assert_eq!(compared, 3 * PATHS.len() * 12 * 6);
}

/// A cached entry's pre-rendered values follow the file: a touch in the cache's lifetime
/// (here to a time ahead of now, then back) is a fresh entry, and a Date after the file's
/// time shows the file's time, one before it the Date.
#[test]
fn a_changed_time_is_rendered_again_and_clamped_per_date() {
    let root = fixture();
    let cached = site(root.path(), &[]);
    let uncached = site(root.path(), &["--file-cache", "0"]);
    let raw = common::head("GET", "/hello.txt", &[]);
    let now = SystemTime::now();
    let path = root.path().join("hello.txt");
    for mtime in [
        now + 2 * DAY,
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        UNIX_EPOCH - DAY,
    ] {
        set_mtime(&path, mtime);
        respond(&cached, &raw);
        let hit = respond(&cached, &raw);
        let miss = respond(&uncached, &raw);
        for date in dates(now) {
            let date = Date::parse(&date).expect("a Date");
            let head = encode(&hit, date);
            assert_eq!(head, encode(&miss, date), "mtime {mtime:?}");
            let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let sent = httpdate::parse_http_date(date.text()).expect("a Date");
            let expected = if secs(mtime) > secs(sent) {
                date.text().to_string()
            } else {
                http_date(mtime).to_string()
            };
            assert_eq!(
                header(&head, "Last-Modified"),
                Some(expected.as_str()),
                "mtime {mtime:?}, Date {}",
                date.text()
            );
        }
    }
}
