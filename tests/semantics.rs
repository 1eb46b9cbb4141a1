//! HTTP semantics beyond the core, over raw sockets: conditional requests, ranges,
//! precompressed variants, directory listings, error pages, the health check and cache
//! headers.

mod common;

use std::io::{BufReader, Write};

use common::{pattern, site, Reply, Server, TempDir};

/// GET without `Connection: close`: the reply, after checking that the connection stays
/// usable (a well-formed request that fails a precondition or a range is not malformed).
fn get_kept(server: &Server, target: &str, headers: &[(&str, &str)]) -> Reply {
    let raw = common::head("GET", target, headers);
    let mut stream = server.connect();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let reply = Reply::read(&mut reader, false).unwrap();
    assert_eq!(
        reply.header("Connection"),
        Some("keep-alive"),
        "{target} {headers:?}"
    );
    stream
        .write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let next = Reply::read(&mut reader, false).unwrap();
    assert_eq!(
        next.status, 200,
        "connection unusable after {target} {headers:?}"
    );
    reply
}

#[test]
fn not_modified_for_each_validator_with_no_body() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    let full = server.ask("GET", "/style.css", &[]);
    let etag = full.header("ETag").unwrap().to_string();
    let modified = full.header("Last-Modified").unwrap().to_string();
    let weak = format!("W/{etag}");
    let listed = format!("\"nope\", {etag}");
    for headers in [
        vec![("If-None-Match", etag.as_str())],
        vec![("If-None-Match", weak.as_str())],
        vec![("If-None-Match", listed.as_str())],
        vec![("If-None-Match", "*")],
        vec![("If-Modified-Since", modified.as_str())],
    ] {
        for method in ["GET", "HEAD"] {
            let reply = server.ask(method, "/style.css", &headers);
            assert_eq!(reply.status, 304, "{method} {headers:?}");
            assert!(reply.body.is_empty());
            assert_eq!(reply.header("ETag"), Some(etag.as_str()), "{headers:?}");
            assert_eq!(reply.header("Last-Modified"), Some(modified.as_str()));
            assert_eq!(reply.header("Content-Length"), None, "{}", reply.head);
            assert_eq!(reply.header("Content-Type"), None, "{}", reply.head);
        }
    }
    // Not matching: the full reply.
    for headers in [
        vec![("If-None-Match", "\"nope\"")],
        vec![("If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")],
        vec![("If-Modified-Since", "yesterday")],
        // A date in the future is invalid (RFC 2616 §14.25); nginx ignores it too.
        vec![("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")],
        // If-None-Match wins over a matching If-Modified-Since (RFC 9110 §13.2.2).
        vec![
            ("If-None-Match", "\"nope\""),
            ("If-Modified-Since", modified.as_str()),
        ],
    ] {
        let reply = server.ask("GET", "/style.css", &headers);
        assert_eq!(reply.status, 200, "{headers:?}");
        assert_eq!(reply.body, b"body { color: red }");
    }
    // A 304 on a kept connection is followed directly by the next reply.
    let mut stream = server.connect();
    let raw = format!(
        "GET /style.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\nGET /notes.txt HTTP/1.1\r\nHost: t\r\n\r\n"
    );
    stream.write_all(raw.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    assert_eq!(Reply::read(&mut reader, false).unwrap().status, 304);
    assert_eq!(
        Reply::read(&mut reader, false).unwrap().body,
        b"plain text\n"
    );
}

#[test]
fn failed_preconditions_are_412() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    let etag = server
        .ask("GET", "/style.css", &[])
        .header("ETag")
        .unwrap()
        .to_string();
    let weak = format!("W/{etag}");
    for (headers, status) in [
        (vec![("If-Match", "\"nope\"")], 412),
        (vec![("If-Match", weak.as_str())], 412),
        (
            vec![("If-Unmodified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")],
            412,
        ),
        (vec![("If-Match", etag.as_str())], 200),
        (vec![("If-Match", "*")], 200),
        (
            vec![("If-Unmodified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")],
            200,
        ),
        (
            vec![("If-Match", "\"nope\""), ("If-None-Match", etag.as_str())],
            412,
        ),
    ] {
        let reply = get_kept(&server, "/style.css", &headers);
        assert_eq!(reply.status, status, "{headers:?}");
        if status == 412 {
            assert_eq!(reply.header("Content-Type"), Some("text/html"));
        }
    }
}

#[test]
fn every_range_form() {
    let root = site();
    let data = pattern(10_000);
    root.write("data.bin", &data);
    let server = Server::start(root.path(), &[]);
    for (range, start, end) in [
        ("bytes=0-0", 0, 0),
        ("bytes=0-99", 0, 99),
        ("bytes=9000-", 9000, 9999),
        ("bytes=-100", 9900, 9999),
        ("bytes=-20000", 0, 9999),
        ("bytes=9990-20000", 9990, 9999),
        ("bytes=5000-5000", 5000, 5000),
    ] {
        let reply = server.ask("GET", "/data.bin", &[("Range", range)]);
        assert_eq!(reply.status, 206, "{range}");
        assert_eq!(
            reply.header("Content-Range"),
            Some(format!("bytes {start}-{end}/10000").as_str())
        );
        assert_eq!(
            reply.header("Content-Length"),
            Some((end - start + 1).to_string().as_str())
        );
        assert_eq!(reply.body, &data[start..=end], "{range}");
        assert_eq!(
            reply.header("Content-Type"),
            Some("application/octet-stream")
        );
        // HEAD: the same head, no body.
        let head = server.ask("HEAD", "/data.bin", &[("Range", range)]);
        assert_eq!(head.status, 206);
        assert_eq!(head.header("Content-Range"), reply.header("Content-Range"));
    }
    // Small bodies too (the head and body share one write).
    let small = server.ask("GET", "/style.css", &[("Range", "bytes=5-9")]);
    assert_eq!((small.status, small.body.as_slice()), (206, &b"{ col"[..]));
    // Not a bytes range: ignored.
    for range in ["items=0-1", "bytes=", "bytes = 0-1"] {
        let reply = server.ask("GET", "/data.bin", &[("Range", range)]);
        assert_eq!(reply.status, 200, "{range}");
        assert_eq!(reply.body.len(), 10_000);
    }
    // An invalid bytes range: rejected, as nginx does.
    for range in ["bytes=5-1", "bytes=x-y", "bytes=0-1;x"] {
        let reply = server.ask("GET", "/data.bin", &[("Range", range)]);
        assert_eq!(reply.status, 416, "{range}");
        assert_eq!(reply.header("Content-Range"), Some("bytes */10000"));
    }
}

#[test]
fn unsatisfiable_ranges_are_416() {
    let root = site();
    root.write("data.bin", pattern(1000));
    root.write("empty.txt", "");
    let server = Server::start(root.path(), &[]);
    for (path, range, len) in [
        ("/data.bin", "bytes=1000-", 1000),
        ("/data.bin", "bytes=5000-6000", 1000),
        ("/data.bin", "bytes=-0", 1000),
        ("/empty.txt", "bytes=0-", 0),
    ] {
        let reply = get_kept(&server, path, &[("Range", range)]);
        assert_eq!(reply.status, 416, "{range}");
        assert_eq!(
            reply.header("Content-Range"),
            Some(format!("bytes */{len}").as_str())
        );
    }
}

/// Splits a `multipart/byteranges` body into (Content-Type, Content-Range, data) parts.
fn parse_multipart(body: &[u8], boundary: &str) -> Vec<(String, String, Vec<u8>)> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    assert!(
        rest.starts_with(delimiter.as_bytes()),
        "body starts with the boundary"
    );
    loop {
        rest = &rest[delimiter.len()..];
        if rest.starts_with(b"--") {
            assert_eq!(rest, b"--\r\n", "closing delimiter ends the body");
            break;
        }
        rest = rest.strip_prefix(b"\r\n").expect("CRLF after boundary");
        let head_end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("part head");
        let head = String::from_utf8(rest[..head_end].to_vec()).unwrap();
        rest = &rest[head_end + 4..];
        let field = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("{name} in {head}"))
                .to_string()
        };
        let (content_type, content_range) = (field("Content-Type"), field("Content-Range"));
        let (span, _) = content_range["bytes ".len()..].split_once('/').unwrap();
        let (a, b) = span.split_once('-').unwrap();
        let len = b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1;
        parts.push((content_type, content_range, rest[..len].to_vec()));
        rest = rest[len..]
            .strip_prefix(b"\r\n")
            .expect("CRLF after part data");
        assert!(rest.starts_with(delimiter.as_bytes()), "next delimiter");
    }
    parts
}

#[test]
fn several_ranges_make_a_multipart_reply() {
    let root = site();
    let data = pattern(100_000);
    root.write("data.bin", &data);
    let server = Server::start(root.path(), &[]);
    let reply = server.ask(
        "GET",
        "/data.bin",
        &[("Range", "bytes=90000-90099, 0-9,-5")],
    );
    assert_eq!(reply.status, 206);
    assert_eq!(reply.header("Content-Range"), None);
    let content_type = reply.header("Content-Type").unwrap();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{content_type}"));
    let parts = parse_multipart(&reply.body, boundary);
    assert_eq!(parts.len(), 3);
    let expected = [(0usize, 9usize), (90_000, 90_099), (99_995, 99_999)];
    for ((ctype, crange, bytes), (a, b)) in parts.iter().zip(expected) {
        assert_eq!(ctype, "application/octet-stream");
        assert_eq!(crange, &format!("bytes {a}-{b}/100000"));
        assert_eq!(bytes, &data[a..=b]);
    }
    // Overlapping ranges are coalesced.
    let reply = server.ask(
        "GET",
        "/data.bin",
        &[("Range", "bytes=0-10,5-20,1000-1009")],
    );
    let boundary = reply
        .header("Content-Type")
        .unwrap()
        .split("boundary=")
        .nth(1)
        .unwrap()
        .to_string();
    let parts = parse_multipart(&reply.body, &boundary);
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].2, &data[0..=20]);
    // Two requests get two different boundaries.
    let again = server.ask(
        "GET",
        "/data.bin",
        &[("Range", "bytes=0-10,5-20,1000-1009")],
    );
    assert_ne!(again.header("Content-Type"), reply.header("Content-Type"));
    // HEAD: the multipart length, no body.
    let head = server.ask(
        "HEAD",
        "/data.bin",
        &[("Range", "bytes=0-10,5-20,1000-1009")],
    );
    assert_eq!(head.status, 206);
    assert!(head
        .header("Content-Type")
        .unwrap()
        .starts_with("multipart/byteranges; boundary="));
    // Too many or abusive: the whole file.
    let many: Vec<String> = (0..101).map(|i| format!("{}-{}", i * 10, i * 10)).collect();
    let many = format!("bytes={}", many.join(","));
    for range in [many.as_str(), "bytes=0-,0-,0-"] {
        let reply = server.ask("GET", "/data.bin", &[("Range", range)]);
        assert_eq!(reply.status, 200, "{}", &range[..20.min(range.len())]);
        assert_eq!(reply.body, data);
    }
}

#[test]
fn if_range_matches_or_sends_everything() {
    let root = site();
    let data = pattern(5000);
    let path = root.write("data.bin", &data);
    // A date is a strong validator only for a file at least a second old (RFC 9110
    // §8.8.2.2; tests/protocol.rs covers a fresh one).
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
        .unwrap();
    let server = Server::start(root.path(), &[]);
    let full = server.ask("GET", "/data.bin", &[]);
    let etag = full.header("ETag").unwrap().to_string();
    let modified = full.header("Last-Modified").unwrap().to_string();
    let weak = format!("W/{etag}");
    for (if_range, status) in [
        (etag.as_str(), 206),
        (modified.as_str(), 206),
        ("\"stale\"", 200),
        (weak.as_str(), 200),
        ("Sat, 01 Jan 2000 00:00:00 GMT", 200),
    ] {
        let reply = server.ask(
            "GET",
            "/data.bin",
            &[("Range", "bytes=100-199"), ("If-Range", if_range)],
        );
        assert_eq!(reply.status, status, "If-Range: {if_range}");
        let expected = if status == 206 {
            &data[100..200]
        } else {
            &data[..]
        };
        assert_eq!(reply.body, expected);
    }
}

#[test]
fn ranges_near_the_end_of_a_file_past_4_gib() {
    let root = TempDir::new("huge-range");
    let len: u64 = (5 << 30) + 123;
    let tail = b"bytes at the very end";
    root.sparse(
        "huge.bin",
        len,
        &[(len - tail.len() as u64, tail), (4 << 30, b"marker")],
    );
    let server = Server::start(root.path(), &[]);
    let reply = server.ask(
        "GET",
        "/huge.bin",
        &[("Range", &format!("bytes=-{}", tail.len()))],
    );
    assert_eq!(reply.status, 206);
    assert_eq!(reply.body, tail);
    let start = len - tail.len() as u64;
    assert_eq!(
        reply.header("Content-Range"),
        Some(format!("bytes {start}-{}/{len}", len - 1).as_str())
    );
    let at = 4u64 << 30;
    let reply = server.ask(
        "GET",
        "/huge.bin",
        &[("Range", &format!("bytes={at}-{}", at + 5))],
    );
    assert_eq!((reply.status, reply.body.as_slice()), (206, &b"marker"[..]));
    let reply = server.ask(
        "GET",
        "/huge.bin",
        &[("Range", &format!("bytes={at}-{},{}-", at + 5, len - 3))],
    );
    assert_eq!(reply.status, 206);
    assert!(reply
        .header("Content-Type")
        .unwrap()
        .starts_with("multipart/byteranges"));
    let head = server.ask("HEAD", "/huge.bin", &[("Range", &format!("bytes={at}-"))]);
    assert_eq!(
        head.header("Content-Length"),
        Some((len - at).to_string().as_str())
    );
}

#[test]
fn precompressed_variants_follow_accept_encoding() {
    let root = site();
    root.write("app.css", "plain css");
    root.write("app.css.br", "brotli bytes");
    root.write("app.css.gz", "gzip bytes!!");
    root.write("only-gz.js", "plain js");
    root.write("only-gz.js.gz", "gzipped js");
    let server = Server::start(root.path(), &[]);
    for (accept, body, encoding) in [
        (
            Some("gzip, deflate, br, zstd"),
            &b"brotli bytes"[..],
            Some("br"),
        ),
        (Some("br"), b"brotli bytes", Some("br")),
        (Some("gzip"), b"gzip bytes!!", Some("gzip")),
        (Some("br;q=0.5, gzip"), b"gzip bytes!!", Some("gzip")),
        (Some("br;q=0, gzip;q=0"), b"plain css", None),
        (Some("identity"), b"plain css", None),
        (Some("br, identity;q=0"), b"brotli bytes", Some("br")),
        (Some("*"), b"brotli bytes", Some("br")),
        (None, b"plain css", None),
    ] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("Accept-Encoding", *a)).collect();
        let reply = server.ask("GET", "/app.css", &headers);
        assert_eq!(reply.status, 200, "{accept:?}");
        assert_eq!(reply.body, body, "{accept:?}");
        assert_eq!(reply.header("Content-Encoding"), encoding, "{accept:?}");
        assert_eq!(reply.header("Content-Type"), Some("text/css"), "{accept:?}");
        assert_eq!(reply.header("Vary"), Some("Accept-Encoding"), "{accept:?}");
        assert_eq!(
            reply.header("Content-Length"),
            Some(body.len().to_string().as_str())
        );
    }
    // Each variant has its own validator, and conditionals and ranges apply to it.
    let br = server.ask("GET", "/app.css", &[("Accept-Encoding", "br")]);
    let gz = server.ask("GET", "/app.css", &[("Accept-Encoding", "gzip")]);
    let plain = server.ask("GET", "/app.css", &[]);
    let tags = [br.header("ETag"), gz.header("ETag"), plain.header("ETag")];
    assert!(
        tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2],
        "{tags:?}"
    );
    let not_modified = server.ask(
        "GET",
        "/app.css",
        &[
            ("Accept-Encoding", "br"),
            ("If-None-Match", tags[0].unwrap()),
        ],
    );
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("Vary"), Some("Accept-Encoding"));
    assert_eq!(not_modified.header("ETag"), tags[0]);
    assert_eq!(not_modified.header("Content-Encoding"), None);
    let part = server.ask(
        "GET",
        "/app.css",
        &[("Accept-Encoding", "br"), ("Range", "bytes=0-5")],
    );
    assert_eq!((part.status, part.body.as_slice()), (206, &b"brotli"[..]));
    assert_eq!(part.header("Content-Encoding"), Some("br"));
    // Only gzip exists for this one.
    let js = server.ask("GET", "/only-gz.js", &[("Accept-Encoding", "gzip, br")]);
    assert_eq!(
        (js.header("Content-Encoding"), js.body.as_slice()),
        (Some("gzip"), &b"gzipped js"[..])
    );
    // Nothing acceptable: 406, still with Vary.
    let refused = server.ask(
        "GET",
        "/app.css",
        &[("Accept-Encoding", "identity;q=0, br;q=0, gzip;q=0")],
    );
    assert_eq!(refused.status, 406);
    assert_eq!(refused.header("Vary"), Some("Accept-Encoding"));
    // No variant: no Vary, no encoding, even when the client would accept one.
    let none = server.ask("GET", "/style.css", &[("Accept-Encoding", "gzip, br")]);
    assert_eq!(
        (none.header("Vary"), none.header("Content-Encoding")),
        (None, None)
    );
    // HEAD agrees with GET.
    let head = server.ask("HEAD", "/app.css", &[("Accept-Encoding", "br")]);
    assert_eq!(head.header("Content-Length"), Some("12"));
    assert_eq!(head.header("Content-Encoding"), Some("br"));
}

#[test]
fn directory_listing_is_opt_in_escaped_and_parseable() {
    let root = TempDir::new("listing");
    root.write("files/<b>&\"x'.txt", "tricky");
    root.write("files/café.txt", "utf-8");
    root.write("files/zeta/inner.txt", "i");
    root.write("files/alpha/inner.txt", "i");
    root.write("files/.secret", "hidden");
    root.write("files/b.txt", "12345");
    let closed = Server::start(root.path(), &[]);
    assert_eq!(closed.ask("GET", "/files/", &[]).status, 404);
    drop(closed);

    let server = Server::start(root.path(), &["--list"]);
    let page = server.ask("GET", "/files/", &[]);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("Cache-Control"), Some("no-cache"));
    assert_eq!(page.header("Vary"), Some("Accept"));
    // The listing revalidates: same directory, same tag, 304; a change, a new page.
    let tag = page.header("ETag").expect("listing ETag").to_string();
    assert_eq!(
        server
            .ask("GET", "/files/", &[("If-None-Match", &tag)])
            .status,
        304
    );
    let json_tag = server
        .ask("GET", "/files/?format=json", &[])
        .header("ETag")
        .unwrap()
        .to_string();
    assert_ne!(json_tag, tag, "HTML and JSON are different representations");
    root.write("files/new.txt", "n");
    let changed = server.ask("GET", "/files/", &[("If-None-Match", &tag)]);
    assert_eq!(changed.status, 200);
    assert!(changed.text().contains("new.txt"));
    std::fs::remove_file(root.path().join("files/new.txt")).unwrap();
    let html = page.text();
    assert!(html.contains("&lt;b&gt;&amp;&quot;x&#39;.txt"), "{html}");
    assert!(html.contains("href=\"%3Cb%3E%26%22x%27.txt\""), "{html}");
    assert!(
        html.contains("href=\"caf%C3%A9.txt\" title=\"café.txt\">café.txt</a>"),
        "{html}"
    );
    assert!(html.contains("<a href=\"../\">../</a>"), "{html}");
    assert!(!html.contains("secret") && !html.contains("<b>"), "{html}");
    let order: Vec<usize> = ["alpha/", "zeta/", "b.txt", "caf"]
        .iter()
        .map(|name| {
            html.find(&format!(">{name}"))
                .unwrap_or_else(|| panic!("{name} in {html}"))
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "directories first, then names: {order:?}"
    );
    // Every link in the page works.
    for href in ["%3Cb%3E%26%22x%27.txt", "caf%C3%A9.txt", "b.txt"] {
        assert_eq!(
            server.ask("GET", &format!("/files/{href}"), &[]).status,
            200,
            "{href}"
        );
    }

    for (target, headers) in [
        ("/files/?format=json", vec![]),
        ("/files/", vec![("Accept", "application/json")]),
    ] {
        let reply = server.ask("GET", target, &headers);
        assert_eq!(
            reply.header("Content-Type"),
            Some("application/json"),
            "{target}"
        );
        let json: serde_json::Value = serde_json::from_slice(&reply.body).expect("valid JSON");
        let entries = json.as_array().expect("an array");
        assert_eq!(entries.len(), 5, "{json}");
        let b = entries
            .iter()
            .find(|e| e["name"] == "b.txt")
            .expect("b.txt");
        assert_eq!(
            (b["type"].as_str(), b["size"].as_u64()),
            (Some("file"), Some(5))
        );
        assert!(b["mtime"].as_str().unwrap().ends_with('Z'));
        assert_eq!(entries[0]["type"], "dir");
        assert!(entries.iter().any(|e| e["name"] == "<b>&\"x'.txt"));
        assert!(entries.iter().any(|e| e["name"] == "café.txt"));
    }
    // The root has no parent link; a directory with an index is not listed.
    let top = server.ask("GET", "/", &[]).text();
    assert!(!top.contains("../") && top.contains("files/"), "{top}");
    root.write("files/zeta/index.html", "zeta index");
    assert_eq!(server.ask("GET", "/files/zeta/", &[]).body, b"zeta index");
}

#[test]
fn custom_error_pages() {
    // From --error-pages DIR.
    let root = site();
    let pages = TempDir::new("pages");
    pages.write("404.html", "<h1>custom not found</h1>");
    pages.write("403.html", "<h1>custom forbidden</h1>");
    // A FIFO is never served: a 403.
    let fifo = std::ffi::CString::new(root.path().join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let server = Server::start(
        root.path(),
        &["--error-pages", pages.path().to_str().unwrap()],
    );
    let reply = server.ask("GET", "/missing", &[]);
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (404, "<h1>custom not found</h1>")
    );
    assert_eq!(reply.header("Content-Type"), Some("text/html"));
    assert_eq!(
        server.ask("GET", "/pipe", &[]).text(),
        "<h1>custom forbidden</h1>"
    );
    assert_eq!(
        server.ask("GET", "/empty-dir/", &[]).text(),
        "<h1>custom not found</h1>"
    );
    // Loaded once: changing the file later changes nothing.
    pages.write("404.html", "changed");
    assert_eq!(
        server.ask("GET", "/missing", &[]).text(),
        "<h1>custom not found</h1>"
    );
    drop(server);

    // nginx-style: 404.html at the document root.
    root.write("404.html", "root 404 page");
    let server = Server::start(root.path(), &[]);
    let reply = server.ask("HEAD", "/nope", &[]);
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("Content-Length"), Some("13"));
    assert_eq!(server.ask("GET", "/nope", &[]).text(), "root 404 page");
}

#[test]
fn health_check_never_touches_the_disk() {
    let root = site();
    let server = Server::start(root.path(), &["--health", "/healthz"]);
    let reply = server.ask("GET", "/healthz", &[]);
    assert_eq!((reply.status, reply.body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(reply.header("Content-Type"), Some("text/plain"));
    let head = server.ask("HEAD", "/healthz?probe=1", &[]);
    assert_eq!(
        (head.status, head.header("Content-Length")),
        (200, Some("2"))
    );
    assert_eq!(server.ask("POST", "/healthz", &[]).status, 405);
    // With the document root gone, files are 404 but the health check still answers.
    std::fs::remove_dir_all(root.path()).unwrap();
    assert_eq!(server.ask("GET", "/index.html", &[]).status, 404);
    assert_eq!(server.ask("GET", "/healthz", &[]).status, 200);
    drop(server);
    // Off by default.
    let root = site();
    let server = Server::start(root.path(), &[]);
    assert_eq!(server.ask("GET", "/healthz", &[]).status, 404);
}

#[test]
fn cache_control_and_nosniff() {
    let root = site();
    let server = Server::start(root.path(), &["--cache-control", "public, max-age=3600"]);
    let full = server.ask("GET", "/style.css", &[]);
    let etag = full.header("ETag").unwrap().to_string();
    let cached = [
        full,
        server.ask("GET", "/style.css", &[("Range", "bytes=0-3")]),
        server.ask("GET", "/style.css", &[("If-None-Match", etag.as_str())]),
    ];
    for (reply, status) in cached.iter().zip([200, 206, 304]) {
        assert_eq!(reply.status, status);
        assert_eq!(
            reply.header("Cache-Control"),
            Some("public, max-age=3600"),
            "{status}"
        );
    }
    for target in ["/missing", "/docs", "/%zz"] {
        let reply = server.ask("GET", target, &[]);
        assert_eq!(reply.header("Cache-Control"), None, "{target}");
        assert_eq!(
            reply.header("X-Content-Type-Options"),
            Some("nosniff"),
            "{target}"
        );
    }
    for reply in &cached {
        assert_eq!(reply.header("X-Content-Type-Options"), Some("nosniff"));
    }
    // Off by default.
    drop(server);
    let server = Server::start(root.path(), &[]);
    assert_eq!(
        server.ask("GET", "/style.css", &[]).header("Cache-Control"),
        None
    );
}

#[test]
fn validators_survive_a_restart() {
    let root = site();
    let first = Server::start(root.path(), &[]);
    let before = first.ask("GET", "/style.css", &[]);
    drop(first);
    let second = Server::start(root.path(), &[]);
    let after = second.ask("GET", "/style.css", &[]);
    assert_eq!(before.header("ETag"), after.header("ETag"));
    assert_eq!(
        before.header("Last-Modified"),
        after.header("Last-Modified")
    );
    let etag = after.header("ETag").unwrap();
    assert_eq!(
        second
            .ask("GET", "/style.css", &[("If-None-Match", etag)])
            .status,
        304
    );
}
