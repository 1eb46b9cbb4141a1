//! The handler in-process, as tables: request bytes in through `request::parse`, a
//! `Response` out of `handler::respond` (errors through the site's one renderer), its head
//! encoded as it would go on the wire, no sockets. Methods, conditionals, ranges, variants,
//! directory redirects, what is 404, listings and odd modification times. What needs a socket
//! (framing, keep-alive, deadlines, slow clients) stays in the socket suites.

mod common;

use std::fs::{File, FileTimes};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::TempDir;
use httpd::internals::handler::{self, Site};
use httpd::internals::request::{self, Parsed};
use httpd::internals::response::{Clock, Response};
use httpd::Config;

/// The contents of `hello.txt`: 13 bytes.
const HELLO: &[u8] = b"hello, world\n";

/// The site's handler settings, built from a command line exactly as the binary builds them:
/// `-r ROOT`, plus `--list` and `--health PATH` when asked for.
fn site(root: &Path, list: bool, health: Option<&str>) -> Site {
    let mut args = vec!["-r", root.to_str().expect("a UTF-8 temporary path")];
    if list {
        args.push("--list");
    }
    if let Some(path) = health {
        args.extend(["--health", path]);
    }
    Config::from_command_line(&args).expect("settings").site
}

/// The fixture root: files with variants, a directory with an index and one without, hidden
/// files, symlinks inside the root (relative and absolute), and files dated 1960 and 2099.
fn fixture() -> TempDir {
    let dir = TempDir::new("handler");
    dir.write("index.html", "<title>home</title>");
    let hello = dir.write("hello.txt", HELLO);
    set_mtime(&hello, UNIX_EPOCH + Duration::from_secs(1_600_000_000));
    dir.write("style.css", "body { color: red }");
    dir.write("style.css.gz", "GZ");
    dir.write("style.css.br", "BR");
    dir.write("docs/index.html", "<title>docs</title>");
    dir.write("plain/a.txt", "a");
    dir.write("plain/b & <c>.txt", "b");
    dir.write("plain/.secret", "no");
    dir.write(".hidden", "secret");
    dir.write(".git/config", "[core]");
    dir.write("docs/.env", "SECRET=1");
    dir.write(".well-known/security.txt", "Contact: mailto:x@example.test");
    let old = dir.write("old.txt", "old");
    set_mtime(&old, UNIX_EPOCH - Duration::from_secs(10 * 365 * 86_400));
    let future = dir.write("future.txt", "future");
    set_mtime(
        &future,
        UNIX_EPOCH + Duration::from_secs(4_070_908_800), // 2099
    );
    symlink("hello.txt", dir.path().join("relative.txt")).expect("symlink");
    // Absolute, though it names a file inside: refused, as RESOLVE_BENEATH refuses it.
    symlink(
        dir.path().join("hello.txt"),
        dir.path().join("absolute.txt"),
    )
    .expect("symlink");
    dir
}

fn set_mtime(path: &Path, time: SystemTime) {
    let file = File::options().write(true).open(path).expect("open");
    file.set_times(FileTimes::new().set_modified(time))
        .expect("set mtime");
}

/// One reply as the handler makes it: status, the encoded head, the body bytes.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
    response: Response,
}

impl Answer {
    /// The value of header `name` in the encoded head (exact case, as on the wire).
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(": ")?;
            (n == name).then_some(v)
        })
    }

    fn date(&self) -> &str {
        self.header("Date").expect("a Date")
    }
}

/// `request` (a whole head) through parse, respond and the error renderer, as a worker runs
/// it; the head encoded with now's Date.
fn answer(site: &Site, request: &str) -> Answer {
    let Ok(Parsed::Complete(parsed, _)) = request::parse(request.as_bytes()) else {
        panic!("not a complete request: {request:?}");
    };
    let response = handler::respond(&parsed, site).unwrap_or_else(|err| site.pages.render(err));
    let mut head = Vec::new();
    response.encode_head(Clock::default().now(), true, &mut head);
    let body = common::body_of(&response.body);
    Answer {
        status: response.status,
        head: String::from_utf8(head).expect("an ASCII head"),
        body,
        response,
    }
}

/// A GET (or `method`) of `target` with extra header lines.
fn raw(method: &str, target: &str, headers: &[(&str, &str)]) -> String {
    common::head(method, target, headers)
}

fn get(site: &Site, target: &str, headers: &[(&str, &str)]) -> Answer {
    answer(site, &raw("GET", target, headers))
}

/// Checks one row: the status, and each (header, value) — `None` for "absent".
fn check(what: &str, got: &Answer, status: u16, headers: &[(&str, Option<&str>)]) {
    assert_eq!(got.status, status, "{what}:\n{}", got.head);
    for (name, value) in headers {
        assert_eq!(got.header(name), *value, "{what}: {name}:\n{}", got.head);
    }
    if got.response.has_body() {
        assert_eq!(
            got.header("Content-Length"),
            Some(got.body.len().to_string().as_str()),
            "{what}: Content-Length is the body's length"
        );
    } else {
        assert_eq!(got.header("Content-Length"), None, "{what}");
        assert!(got.body.is_empty(), "{what}");
    }
}

#[test]
fn methods() {
    let root = fixture();
    let site = site(root.path(), false, Some("/healthz"));
    let allow = Some("GET, HEAD");
    for (method, target, status, allowed, content_type) in [
        ("GET", "/", 200, None, Some("text/html")),
        ("HEAD", "/", 200, None, Some("text/html")),
        ("GET", "/hello.txt", 200, None, Some("text/plain")),
        ("HEAD", "/missing", 404, None, Some("text/html")),
        ("POST", "/", 405, allow, Some("text/html")),
        ("PUT", "/hello.txt", 405, allow, Some("text/html")),
        ("DELETE", "/hello.txt", 405, allow, Some("text/html")),
        ("OPTIONS", "/", 405, allow, Some("text/html")),
        ("PATCH", "/missing", 405, allow, Some("text/html")),
        ("GET", "/healthz", 200, None, Some("text/plain")),
    ] {
        let got = answer(&site, &raw(method, target, &[]));
        let what = format!("{method} {target}");
        check(
            &what,
            &got,
            status,
            &[("Allow", allowed), ("Content-Type", content_type)],
        );
    }
    // HEAD has the head GET has (the connection leaves the body out).
    let get = get(&site, "/hello.txt", &[]);
    let head = answer(&site, &raw("HEAD", "/hello.txt", &[]));
    assert_eq!(get.body, HELLO);
    for name in ["Content-Length", "Content-Type", "ETag", "Last-Modified"] {
        assert_eq!(get.header(name), head.header(name), "{name}");
    }
    // The health check never touches the disk and is never cached.
    let health = answer(&site, &raw("GET", "/healthz", &[]));
    assert_eq!(health.body, b"ok");
    assert_eq!(health.header("Cache-Control"), Some("no-store"));
}

#[test]
fn conditionals() {
    let root = fixture();
    let site = site(root.path(), false, None);
    let first = get(&site, "/hello.txt", &[]);
    let etag = first.header("ETag").expect("an ETag").to_string();
    let modified = first
        .header("Last-Modified")
        .expect("Last-Modified")
        .to_string();
    assert_eq!(modified, "Sun, 13 Sep 2020 12:26:40 GMT");
    let before = "Sat, 12 Sep 2020 12:26:40 GMT";
    let after = "Mon, 14 Sep 2020 12:26:40 GMT";
    let weak = format!("W/{etag}");
    for (what, headers, status) in [
        (
            "If-None-Match: its tag",
            vec![("If-None-Match", etag.as_str())],
            304,
        ),
        (
            "If-None-Match: weak match",
            vec![("If-None-Match", weak.as_str())],
            304,
        ),
        ("If-None-Match: *", vec![("If-None-Match", "*")], 304),
        (
            "If-None-Match: another",
            vec![("If-None-Match", "\"x\"")],
            200,
        ),
        (
            "If-None-Match: in a list",
            vec![("If-None-Match", &format!("\"x\", {etag}"))],
            304,
        ),
        ("If-Match: its tag", vec![("If-Match", etag.as_str())], 200),
        ("If-Match: *", vec![("If-Match", "*")], 200),
        ("If-Match: another", vec![("If-Match", "\"x\"")], 412),
        // A weak tag never matches If-Match (strong comparison, RFC 9110 §13.1.1).
        ("If-Match: weak", vec![("If-Match", weak.as_str())], 412),
        (
            "If-Modified-Since: its time",
            vec![("If-Modified-Since", &modified)],
            304,
        ),
        (
            "If-Modified-Since: later",
            vec![("If-Modified-Since", after)],
            304,
        ),
        (
            "If-Modified-Since: earlier",
            vec![("If-Modified-Since", before)],
            200,
        ),
        (
            "If-Modified-Since: not a date",
            vec![("If-Modified-Since", "soon")],
            200,
        ),
        (
            "If-Unmodified-Since: its time",
            vec![("If-Unmodified-Since", &modified)],
            200,
        ),
        (
            "If-Unmodified-Since: earlier",
            vec![("If-Unmodified-Since", before)],
            412,
        ),
        // If-None-Match outranks If-Modified-Since (RFC 9110 §13.2.2).
        (
            "If-None-Match wins over If-Modified-Since",
            vec![("If-None-Match", "\"x\""), ("If-Modified-Since", &modified)],
            200,
        ),
        // If-Match outranks If-Unmodified-Since.
        (
            "If-Match wins over If-Unmodified-Since",
            vec![("If-Match", &etag), ("If-Unmodified-Since", before)],
            200,
        ),
    ] {
        let got = get(&site, "/hello.txt", &headers);
        check(what, &got, status, &[]);
        match status {
            304 => {
                // A 304 carries the validators and no other representation metadata.
                assert_eq!(got.header("ETag"), Some(etag.as_str()), "{what}");
                assert_eq!(got.header("Content-Type"), None, "{what}");
                assert_eq!(got.header("Accept-Ranges"), None, "{what}");
            }
            200 => assert_eq!(got.body, HELLO, "{what}"),
            _ => assert_eq!(got.header("ETag"), None, "{what}: {}", got.head),
        }
    }
}

#[test]
fn ranges() {
    let root = fixture();
    let site = site(root.path(), false, None);
    let etag = get(&site, "/hello.txt", &[])
        .header("ETag")
        .expect("an ETag")
        .to_string();
    for (what, headers, status, content_range, body) in [
        (
            "first five",
            vec![("Range", "bytes=0-4")],
            206,
            Some("bytes 0-4/13"),
            &b"hello"[..],
        ),
        (
            "suffix",
            vec![("Range", "bytes=-6")],
            206,
            Some("bytes 7-12/13"),
            b"world\n",
        ),
        (
            "open end",
            vec![("Range", "bytes=7-")],
            206,
            Some("bytes 7-12/13"),
            b"world\n",
        ),
        (
            "end past the file",
            vec![("Range", "bytes=7-999")],
            206,
            Some("bytes 7-12/13"),
            b"world\n",
        ),
        (
            "start past the file",
            vec![("Range", "bytes=13-")],
            416,
            Some("bytes */13"),
            b"",
        ),
        (
            "another unit is ignored",
            vec![("Range", "lines=0-1")],
            200,
            None,
            HELLO,
        ),
        (
            // RFC 9110 §14.2 lets a server reject an invalid set; nginx does too.
            "an invalid bytes range is rejected",
            vec![("Range", "bytes=4-1")],
            416,
            Some("bytes */13"),
            b"",
        ),
        (
            "If-Range with its tag",
            vec![("Range", "bytes=0-4"), ("If-Range", &etag)],
            206,
            Some("bytes 0-4/13"),
            b"hello",
        ),
        (
            "If-Range with another tag: the whole file",
            vec![("Range", "bytes=0-4"), ("If-Range", "\"x\"")],
            200,
            None,
            HELLO,
        ),
    ] {
        let got = get(&site, "/hello.txt", &headers);
        check(
            what,
            &got,
            status,
            &[
                ("Content-Range", content_range),
                ("Accept-Ranges", Some("bytes")),
            ],
        );
        if status != 416 {
            assert_eq!(got.body, body, "{what}");
        }
    }

    // Two ranges: multipart/byteranges, each part with its own Content-Range.
    let got = get(&site, "/hello.txt", &[("Range", "bytes=0-4,7-11")]);
    check("two ranges", &got, 206, &[("Content-Range", None)]);
    let content_type = got.header("Content-Type").expect("a type");
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{content_type}"));
    let body = String::from_utf8(got.body.clone()).expect("text parts");
    let expected = format!(
        "--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-4/13\r\n\r\nhello\
         \r\n--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 7-11/13\r\n\r\n\
         world\r\n--{boundary}--\r\n"
    );
    assert_eq!(body, expected);
}

#[test]
fn precompressed_variants() {
    let root = fixture();
    let site = site(root.path(), false, None);
    let vary = Some("Accept-Encoding");
    let mut tags = Vec::new();
    for (accept, encoding, body) in [
        (None, None, &b"body { color: red }"[..]),
        (Some("br"), Some("br"), b"BR"),
        (Some("gzip"), Some("gzip"), b"GZ"),
        (Some("gzip, br"), Some("br"), b"BR"),
        (Some("br;q=0.5, gzip"), Some("gzip"), b"GZ"),
        (Some("br;q=0, gzip;q=0"), None, b"body { color: red }"),
        (Some("compress"), None, b"body { color: red }"),
    ] {
        let headers: Vec<(&str, &str)> =
            accept.map(|a| ("Accept-Encoding", a)).into_iter().collect();
        let got = get(&site, "/style.css", &headers);
        let what = format!("Accept-Encoding: {accept:?}");
        check(
            &what,
            &got,
            200,
            &[
                ("Content-Encoding", encoding),
                ("Vary", vary),
                ("Content-Type", Some("text/css")),
            ],
        );
        assert_eq!(got.body, body, "{what}");
        tags.push((encoding, got.header("ETag").expect("an ETag").to_string()));
    }
    // Each variant has its own tag.
    let [(_, plain), (_, br), (_, gzip), ..] = &tags[..] else {
        unreachable!()
    };
    assert!(plain != br && br != gzip && plain != gzip, "{tags:?}");
    // Nothing acceptable: 406, still with Vary.
    let got = get(&site, "/style.css", &[("Accept-Encoding", "identity;q=0")]);
    check("identity;q=0", &got, 406, &[("Vary", vary)]);
    // A file without variants says nothing about the field.
    let got = get(&site, "/hello.txt", &[("Accept-Encoding", "br")]);
    check(
        "no variants",
        &got,
        200,
        &[("Vary", None), ("Content-Encoding", None)],
    );
}

#[test]
fn directories_redirect_and_hidden_things_are_404() {
    let root = fixture();
    for list in [false, true] {
        let site = site(root.path(), list, None);
        for (target, status, location) in [
            ("/docs", 301, Some("/docs/")),
            ("/docs?a=b", 301, Some("/docs/?a=b")),
            ("/plain", 301, Some("/plain/")),
            ("/docs/", 200, None),
            ("/docs/index.html", 200, None),
            ("/relative.txt", 200, None),
            ("/.well-known/security.txt", 200, None),
            ("/missing", 404, None),
            ("/missing/", 404, None),
            ("/.hidden", 404, None),
            ("/.git/config", 404, None),
            ("/.git/", 404, None),
            ("/docs/.env", 404, None),
            ("/plain/.secret", 404, None),
            ("/%2ehidden", 404, None),
            ("/absolute.txt", 404, None),
            ("/hello.txt/", 404, None),
            ("/../hello.txt", 400, None),
            ("/%2e%2e/hello.txt", 400, None),
            ("/a%00b", 400, None),
            ("/%zz", 400, None),
        ] {
            let got = get(&site, target, &[]);
            let what = format!("GET {target} (list {list})");
            check(&what, &got, status, &[("Location", location)]);
        }
        // A directory without an index: listed only with `--list`, else 404.
        let got = get(&site, "/plain/", &[]);
        check("/plain/", &got, if list { 200 } else { 404 }, &[]);
    }
}

#[test]
fn listings() {
    let root = fixture();
    let site = site(root.path(), true, None);
    let got = get(&site, "/plain/", &[]);
    check(
        "listing",
        &got,
        200,
        &[
            ("Content-Type", Some("text/html; charset=utf-8")),
            ("Vary", Some("Accept")),
            ("Cache-Control", Some("no-cache")),
        ],
    );
    let page = String::from_utf8(got.body.clone()).expect("UTF-8");
    assert!(page.contains("a.txt"), "{page}");
    assert!(
        page.contains("b &amp; &lt;c&gt;.txt"),
        "names are escaped: {page}"
    );
    assert!(!page.contains("b & <c>"), "{page}");
    assert!(!page.contains(".secret"), "dotfiles are not listed: {page}");
    // Revalidation by its tag.
    let etag = got.header("ETag").expect("an ETag").to_string();
    let again = get(&site, "/plain/", &[("If-None-Match", &etag)]);
    check("listing revalidated", &again, 304, &[("ETag", Some(&etag))]);
    // JSON, by query or by Accept, with a tag of its own.
    for (target, headers) in [
        ("/plain/?format=json", vec![]),
        ("/plain/", vec![("Accept", "application/json")]),
    ] {
        let got = get(&site, target, &headers);
        check(
            target,
            &got,
            200,
            &[("Content-Type", Some("application/json"))],
        );
        let entries: serde_json::Value = serde_json::from_slice(&got.body).expect("JSON");
        let text = entries.to_string();
        assert!(
            text.contains("a.txt") && !text.contains(".secret"),
            "{text}"
        );
        assert_ne!(got.header("ETag"), Some(etag.as_str()));
    }
    // A directory with an index is served its index, listing or not.
    let got = get(&site, "/docs/", &[]);
    assert_eq!(got.body, b"<title>docs</title>");
}

#[test]
fn modification_times_before_1970_and_in_the_future() {
    let root = fixture();
    let site = site(root.path(), true, None);
    let old = get(&site, "/old.txt", &[]);
    check(
        "1960",
        &old,
        200,
        &[("Last-Modified", Some("Thu, 01 Jan 1970 00:00:00 GMT"))],
    );
    let etag = old.header("ETag").expect("an ETag").to_string();
    check(
        "1960 revalidated",
        &get(&site, "/old.txt", &[("If-None-Match", &etag)]),
        304,
        &[],
    );
    let future = get(&site, "/future.txt", &[]);
    // A time later than the Date is sent as the Date (RFC 9110 §8.8.2.1).
    assert_eq!(future.header("Last-Modified"), Some(future.date()));
    let since = future.date().to_string();
    check(
        "2099 revalidated by date",
        &get(&site, "/future.txt", &[("If-Modified-Since", &since)]),
        304,
        &[],
    );
}
