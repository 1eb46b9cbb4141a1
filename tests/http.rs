//! HTTP/1.1 semantics over real sockets against the built binary: statuses, headers, HEAD,
//! keep-alive rules, pipelining, split writes, request bodies and malformed requests.

mod common;

use std::io::{BufReader, Read, Write};

use common::{closed_by_server, read_reply, read_to_close, site, Reply, Server};

#[test]
fn every_response_carries_the_required_headers() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    for (method, target, status) in [
        ("GET", "/", 200),
        ("GET", "/style.css", 200),
        ("GET", "/docs", 301),
        ("GET", "/missing", 404),
        ("GET", "/empty-dir/", 404),
        ("GET", "/%zz", 400),
        ("POST", "/", 405),
        ("HEAD", "/", 200),
        ("HEAD", "/missing", 404),
    ] {
        let reply = server.request(method, target);
        assert_eq!(reply.status, status, "{method} {target}: {}", reply.head);
        assert_eq!(
            reply.header("Server"),
            Some("httpd/0.1.0"),
            "{}",
            reply.head
        );
        let date = reply.header("Date").expect("Date");
        assert!(
            httpdate::parse_http_date(date).is_ok() && date.ends_with(" GMT"),
            "{date}"
        );
        assert_eq!(reply.header("Connection"), Some("close"), "{}", reply.head);
        let len: u64 = reply
            .header("Content-Length")
            .expect("Content-Length")
            .parse()
            .unwrap();
        assert!(reply.header("Content-Type").is_some(), "{}", reply.head);
        if method == "GET" {
            assert_eq!(len, reply.body.len() as u64);
        }
    }
}

#[test]
fn file_responses_have_validators_and_exact_types() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    let reply = server.get("/index.html");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"<!DOCTYPE html><title>home</title>");
    assert_eq!(reply.header("Accept-Ranges"), Some("bytes"));
    let etag = reply.header("ETag").expect("ETag");
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"),
        "{etag}"
    );
    assert_eq!(
        server.get("/index.html").header("ETag"),
        Some(etag),
        "stable for an unchanged file"
    );
    let modified = reply.header("Last-Modified").expect("Last-Modified");
    assert!(httpdate::parse_http_date(modified).is_ok(), "{modified}");

    for (path, expected) in [
        ("/index.html", "text/html"),
        ("/style.css", "text/css"),
        ("/photo.jpg", "image/jpeg"),
        ("/photo.jpeg", "image/jpeg"),
        ("/image.png", "image/png"),
        ("/anim.gif", "image/gif"),
        ("/movie.swf", "application/x-shockwave-flash"),
        ("/notes.txt", "text/plain"),
        ("/blob.unknownext", "application/octet-stream"),
        ("/docs/", "text/html"),
    ] {
        assert_eq!(
            server.get(path).header("Content-Type"),
            Some(expected),
            "{path}"
        );
    }
    let js = server.get("/app.js");
    let js = js.header("Content-Type").unwrap();
    assert!(
        js == "text/javascript" || js == "application/javascript",
        "{js}"
    );

    // A changed file gets a new validator.
    root.write("index.html", "<!DOCTYPE html><title>changed</title>");
    assert_ne!(server.get("/index.html").header("ETag"), Some(etag));
}

#[test]
fn head_sends_the_get_headers_and_no_body() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    for path in ["/index.html", "/big.bin", "/missing", "/docs"] {
        let get = server.get(path);
        let head = server.request("HEAD", path);
        assert_eq!(head.status, get.status, "{path}");
        let strip = |reply: &Reply| -> Vec<(String, String)> {
            reply
                .headers
                .iter()
                .filter(|(n, _)| n != "Date")
                .cloned()
                .collect()
        };
        assert_eq!(strip(&head), strip(&get), "{path}");
    }
    // On a kept connection the next reply follows the HEAD reply's head immediately.
    let mut stream = server.connect();
    stream
        .write_all(
            b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream);
    let head = read_reply(&mut reader, true);
    assert_eq!(head.header("Content-Length"), Some("262144"));
    let next = read_reply(&mut reader, false);
    assert_eq!(next.body, b"body { color: red }");
}

#[test]
fn status_codes_for_paths() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    let table = [
        ("/", 200),
        ("/index.html", 200),
        ("/docs/", 200),
        ("/docs/page.html", 200),
        ("/docs", 301),
        ("/empty-dir/", 404),
        ("/missing.html", 404),
        ("/index.html/", 404),
        ("/index.html/x", 404),
        ("/with%20space.txt", 200),
        ("/%77%69%74%68%20%73%70%61%63%65%2E%74%78%74", 200),
        ("/text..txt", 200),
        ("/caf%C3%A9.txt", 200),
        ("/index.html?x=1&y=../../etc/passwd", 200),
        ("/../etc/passwd", 400),
        ("/%2e%2e/%2e%2e/etc/passwd", 400),
        ("/..%2fetc%2fpasswd", 400),
        ("/docs/..%2f..%2fetc%2fpasswd", 400),
        ("/..%5c..%5cetc%5cpasswd", 400),
        ("/index.html%00.txt", 400),
        ("/%252e%252e/etc/passwd", 404),
        ("/%zz", 400),
        ("/%4", 400),
        ("/.hidden", 404),
        ("/.git/config", 404),
        ("/docs/.env", 404),
        ("/.well-known/security.txt", 200),
    ];
    for (path, status) in table {
        let reply = server.get(path);
        assert_eq!(reply.status, status, "{path}: {}", reply.head);
    }
    assert_eq!(server.get("/with%20space.txt").body, b"space");
    assert_eq!(server.get("/text..txt").body, b"dots");
    assert_eq!(server.get("/caf%C3%A9.txt").body, b"utf-8 name");
}

#[test]
fn directory_redirect_keeps_the_query_and_never_points_off_site() {
    let root = site();
    root.write("evil.example/index.html", "x");
    let server = Server::start(root.path(), &[]);
    let reply = server.get("/docs?lang=en");
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("Location"), Some("/docs/?lang=en"));
    // `//evil.example` must not become a protocol-relative redirect.
    let reply = server.get("//evil.example");
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("Location"), Some("/evil.example/"));
    let reply = server.get("/docs?<script>alert(1)</script>");
    assert!(!reply.text().contains("<script>"), "{}", reply.text());
}

#[test]
fn other_methods_get_405_with_allow() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "BREW"] {
        let reply = server.request(method, "/index.html");
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("Allow"), Some("GET, HEAD"), "{method}");
    }
    let bytes = server.exchange(b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(
        bytes.starts_with(b"HTTP/1.1 405 "),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
}

#[test]
fn keep_alive_and_close_rules() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    // (request, Connection header in the reply, does the server close?)
    let table: &[(&str, &str, bool)] = &[
        ("GET / HTTP/1.1\r\nHost: t\r\n\r\n", "keep-alive", false),
        (
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            "close",
            true,
        ),
        (
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: Close\r\n\r\n",
            "close",
            true,
        ),
        ("GET / HTTP/1.0\r\n\r\n", "close", true),
        (
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "keep-alive",
            false,
        ),
        (
            "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
            "keep-alive",
            false,
        ),
        (
            "GET / HTTP/1.0\r\nConnection: KEEP-ALIVE\r\n\r\n",
            "keep-alive",
            false,
        ),
        (
            "GET /missing HTTP/1.1\r\nHost: t\r\n\r\n",
            "keep-alive",
            false,
        ),
        ("DELETE / HTTP/1.1\r\nHost: t\r\n\r\n", "keep-alive", false),
    ];
    for (raw, connection, closes) in table {
        let mut stream = server.connect();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let reply = read_reply(&mut reader, false);
        assert_eq!(reply.header("Connection"), Some(*connection), "{raw:?}");
        if *closes {
            assert!(closed_by_server(&mut stream), "{raw:?} should close");
        } else {
            // Still open: a second request on it is answered.
            stream
                .write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            assert_eq!(read_reply(&mut reader, false).status, 200, "{raw:?}");
        }
    }
}

#[test]
fn apachebench_exact_requests() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    let addr = server.addr;
    // ab -k: HTTP/1.0 with `Connection: Keep-Alive`; ab counts a keep-alive reply only if it
    // carries `keep-alive` and `Content-Length:` spelled exactly so.
    let ab_k = format!(
        "GET /index.html HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: {addr}\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n"
    );
    let mut stream = server.connect();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    // Well past one worker turn (32 requests): the connection is parked and resumed.
    for _ in 0..100 {
        stream.write_all(ab_k.as_bytes()).unwrap();
        let reply = read_reply(&mut reader, false);
        assert_eq!(reply.status, 200);
        assert!(
            reply.head.contains("\r\nConnection: keep-alive\r\n"),
            "{}",
            reply.head
        );
        assert!(
            reply.head.contains("\r\nContent-Length: 34\r\n"),
            "{}",
            reply.head
        );
    }
    // ab without -k: HTTP/1.0, no Connection header; the server closes after the reply.
    let ab = format!(
        "GET /index.html HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n"
    );
    let bytes = server.exchange(ab.as_bytes());
    let reply = Reply::read(&mut &bytes[..], false).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert_eq!(bytes.len(), reply.head.len() + 34, "nothing after the body");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    let paths = [
        "/index.html",
        "/style.css",
        "/missing",
        "/docs",
        "/app.js",
        "/big.bin",
    ];
    let mut raw = String::new();
    for _ in 0..20 {
        for path in paths {
            raw.push_str(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
        }
    }
    raw.push_str("GET /notes.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut stream = server.connect();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..20 {
        for (path, status) in paths.iter().zip([200, 200, 404, 301, 200, 200]) {
            let reply = read_reply(&mut reader, false);
            assert_eq!(reply.status, status, "{path}");
            if *path == "/big.bin" {
                assert_eq!(reply.body, common::pattern(256 * 1024));
            }
        }
    }
    let last = read_reply(&mut reader, false);
    assert_eq!(last.body, b"plain text\n");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn a_request_split_across_many_writes_is_assembled() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    let raw =
        b"GET /style.css?v=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: split\r\nConnection: close\r\n\r\n";
    let mut stream = server.connect();
    for chunk in raw.chunks(3) {
        stream.write_all(chunk).unwrap();
        stream.flush().unwrap();
    }
    let bytes = read_to_close(&mut stream);
    let reply = Reply::read(&mut &bytes[..], false).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"body { color: red }");
}

#[test]
fn absolute_form_targets_work() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    let bytes = server.exchange(
        b"GET http://example.test/style.css?x HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n",
    );
    let reply = Reply::read(&mut &bytes[..], false).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"body { color: red }");
    let bytes = server
        .exchange(b"GET http://example.test/../etc/passwd HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert!(
        bytes.starts_with(b"HTTP/1.1 400 "),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
}

/// Malformed requests get their status and the connection closes, whatever follows them.
#[test]
fn malformed_requests_get_an_error_and_a_close() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let long_head = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(17000)
    );
    let many = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X-A: b\r\n".repeat(101)
    );
    let table: Vec<(Vec<u8>, u16)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nBad Header\r\nHost: t\r\n\r\n".to_vec(),
            400,
        ),
        (b"GET /\x01 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n".to_vec(), 505),
        (b"GET / HTTP/1.2\r\nHost: t\r\n\r\n".to_vec(), 505),
        (long_target.into_bytes(), 414),
        (long_head.into_bytes(), 431),
        (many.into_bytes(), 431),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(),
            501,
        ),
    ];
    for (mut raw, status) in table {
        // A valid request right behind it must not be answered: after a malformed request
        // nothing on the connection can be trusted.
        raw.extend_from_slice(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
        let bytes = server.exchange(&raw);
        let reply = Reply::read(&mut &bytes[..], false)
            .unwrap_or_else(|err| panic!("{err}: {:?}", String::from_utf8_lossy(&bytes)));
        let shown = String::from_utf8_lossy(&raw[..raw.len().min(60)]).into_owned();
        assert_eq!(reply.status, status, "{shown}");
        assert_eq!(reply.header("Connection"), Some("close"), "{shown}");
        assert_eq!(reply.header("Content-Type"), Some("text/html"), "{shown}");
        assert_eq!(
            bytes.len(),
            reply.head.len() + reply.body.len(),
            "{shown}: a second reply followed"
        );
        assert!(!reply.text().contains("GARBAGE") && !reply.text().contains("X-Big"));
    }
}

#[test]
fn error_pages_never_echo_the_request() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    for target in ["/<script>alert(1)</script>", "/%3Cscript%3E", "/%zz<b>"] {
        let reply = server.get(target);
        assert!(reply.status >= 400, "{target}");
        let text = reply.text();
        assert!(
            !text.contains("script") && !text.contains("<b>"),
            "{target}: {text}"
        );
    }
}

#[test]
fn request_bodies_never_become_the_next_request() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    // The whole body is here: it is skipped and the connection stays usable.
    let smuggled = "GET /.hidden HTTP/1.1\r\nHost: t\r\n\r\n";
    let raw = format!(
        "POST /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{smuggled}\
         GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        smuggled.len()
    );
    let mut stream = server.connect();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    assert_eq!(read_reply(&mut reader, false).status, 405);
    let next = read_reply(&mut reader, false);
    assert_eq!(
        next.status, 200,
        "the body was read as a request: {}",
        next.head
    );
    assert_eq!(next.body, b"body { color: red }");

    // The body is still on its way: answer, then close rather than parse it.
    let mut stream = server.connect();
    stream
        .write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nGET /style.css HTTP/1.1\r\n")
        .unwrap();
    let bytes = read_to_close(&mut stream);
    let reply = Reply::read(&mut &bytes[..], false).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert_eq!(bytes.len(), reply.head.len() + reply.body.len());

    // Chunked: answered and closed.
    let bytes = server.exchange(
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let reply = Reply::read(&mut &bytes[..], false).unwrap();
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert_eq!(bytes.len(), reply.head.len() + reply.body.len());
}

#[test]
fn access_log_has_one_combined_line_per_response() {
    let root = site();
    let mut server = Server::start(root.path(), &[]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /style.css?x=\"1\" HTTP/1.1\r\nHost: t\r\nReferer: http://r.test/\r\nUser-Agent: tester/1.0\r\n\r\nGET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    read_to_close(&mut stream);
    server.exchange(b"BAD\r\n\r\n");
    assert!(server.terminate().success());
    let mut lines = server.log_lines();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    // Each worker writes its own lines, so the second connection's line may come first; the
    // two pipelined responses of one connection are always in order.
    let bad = lines
        .iter()
        .position(|line| line.contains("] \"BAD\" 400 "))
        .unwrap_or_else(|| panic!("no line for BAD: {lines:#?}"));
    let bad_line = lines.remove(bad);
    lines.push(bad_line);
    let pattern = |line: &str| {
        let (host, rest) = line.split_once(" - - [").unwrap();
        let (time, rest) = rest.split_once("] \"").unwrap();
        assert_eq!(host, "127.0.0.1");
        assert_eq!(time.len(), "06/Nov/1994:08:49:37 +0000".len(), "{time}");
        rest.to_string()
    };
    assert_eq!(
        pattern(&lines[0]),
        "GET /style.css?x=\\x221\\x22 HTTP/1.1\" 200 19 \"http://r.test/\" \"tester/1.0\""
    );
    assert!(
        pattern(&lines[1]).starts_with("GET /missing HTTP/1.1\" 404 "),
        "{}",
        lines[1]
    );
    assert!(pattern(&lines[2]).starts_with("BAD\" 400 "), "{}", lines[2]);
}
