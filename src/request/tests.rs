//! The head parser's tables: real clients' requests, repeated and singleton fields,
//! keep-alive, partial heads, malformed heads, the limits, body framing, absolute-form.

use super::*;

fn complete(buf: &[u8]) -> (Request<'_>, usize) {
    match parse(buf) {
        Ok(Parsed::Complete(request, len)) => (request, len),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn error(buf: &[u8]) -> u16 {
    match parse(buf) {
        Err(err) => err.status(),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

/// ApacheBench 2.3's exact requests, without and with `-k`.
pub const AB: &[u8] =
    b"GET /index.html HTTP/1.0\r\nHost: 127.0.0.1:8080\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n";
pub const AB_KEEPALIVE: &[u8] = b"GET /index.html HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: 127.0.0.1:8080\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n";

#[test]
fn apachebench_requests() {
    let (req, len) = complete(AB);
    assert_eq!(len, AB.len());
    assert_eq!(req.method, Method::Get);
    assert_eq!(req.target, "/index.html");
    assert_eq!(req.minor_version, 0);
    assert!(!req.keep_alive, "HTTP/1.0 closes by default");
    assert_eq!(req.user_agent.as_deref(), Some("ApacheBench/2.3"));
    let (req, _) = complete(AB_KEEPALIVE);
    assert!(req.keep_alive, "ab -k asks for keep-alive");
}

#[test]
fn browser_request() {
    let buf = b"GET /assets/app.css?v=3 HTTP/1.1\r\nHost: example.test\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
        Accept: text/css,*/*;q=0.1\r\nAccept-Language: en-GB,en;q=0.5\r\n\
        Accept-Encoding: gzip, deflate, br, zstd\r\nConnection: keep-alive\r\n\
        Referer: http://example.test/\r\nSec-Fetch-Dest: style\r\n\
        If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\nGET /next";
    let (req, len) = complete(buf);
    assert_eq!(
        &buf[len..],
        b"GET /next",
        "pipelined bytes stay in the buffer"
    );
    assert_eq!(req.target, "/assets/app.css?v=3");
    assert!(req.keep_alive);
    assert_eq!(req.referer.as_deref(), Some("http://example.test/"));
    assert_eq!(req.framing, Framing::None);
    assert_eq!(
        req.fields.if_modified_since.as_deref(),
        Some("Sun, 06 Nov 1994 08:49:37 GMT")
    );
    assert_eq!(
        req.fields.accept_encoding.as_deref(),
        Some("gzip, deflate, br, zstd")
    );
    assert_eq!(req.fields.accept.as_deref(), Some("text/css,*/*;q=0.1"));
    assert_eq!(req.fields.range, None);
}

#[test]
fn repeated_fields_are_combined() {
    let (req, _) = complete(
        b"GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"a\"\r\nif-none-match: \"b\"\r\nRange: bytes=0-1\r\n\r\n",
    );
    assert_eq!(req.fields.if_none_match.as_deref(), Some("\"a\", \"b\""));
    assert_eq!(req.fields.range.as_deref(), Some("bytes=0-1"));
}

/// A list field repeated is combined; a singleton field repeated (any number of times) is
/// invalid and ignored (RFC 9110 §5.3).
#[test]
fn repeated_singletons_are_ignored() {
    let table: &[(&str, &str, Option<&str>)] = &[
        ("If-Match", "\"a\"", Some("\"a\", \"a\"")),
        ("If-None-Match", "\"a\"", Some("\"a\", \"a\"")),
        ("Accept-Encoding", "gzip", Some("gzip, gzip")),
        ("Accept", "text/html", Some("text/html, text/html")),
        ("Range", "bytes=0-1", None),
        ("If-Range", "\"a\"", Some("")),
        ("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT", None),
        ("If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:37 GMT", None),
    ];
    for &(name, value, twice) in table {
        let get = |req: &Request| -> Option<String> {
            let field = match name {
                "If-Match" => &req.fields.if_match,
                "If-None-Match" => &req.fields.if_none_match,
                "Accept-Encoding" => &req.fields.accept_encoding,
                "Accept" => &req.fields.accept,
                "Range" => &req.fields.range,
                "If-Range" => &req.fields.if_range,
                "If-Modified-Since" => &req.fields.if_modified_since,
                _ => &req.fields.if_unmodified_since,
            };
            field.as_deref().map(str::to_string)
        };
        let head = |copies: usize| {
            let line = format!("{name}: {value}\r\n");
            format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", line.repeat(copies))
        };
        let (one, two, three) = (head(1), head(2), head(3));
        let (once, _) = complete(one.as_bytes());
        assert_eq!(get(&once).as_deref(), Some(value), "{name} once");
        let (two, _) = complete(two.as_bytes());
        assert_eq!(get(&two).as_deref(), twice, "{name} twice");
        if twice.is_none_or(str::is_empty) {
            let (three, _) = complete(three.as_bytes());
            assert_eq!(get(&three).as_deref(), twice, "{name} three times");
        }
    }
    // Each singleton is judged on its own: a repeated Range leaves If-Range alone.
    let (req, _) = complete(
        b"GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\nIf-Range: \"x\"\r\nRange: bytes=2-3\r\n\r\n",
    );
    assert_eq!(req.fields.range, None);
    assert_eq!(req.fields.if_range.as_deref(), Some("\"x\""));
}

#[test]
fn keep_alive_rules() {
    let table: &[(&[u8], bool)] = &[
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: te, close\r\n\r\n",
            false,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (b"GET / HTTP/1.0\r\nconnection: KEEP-ALIVE\r\n\r\n", true),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
            false,
        ),
    ];
    for (buf, keep) in table {
        assert_eq!(complete(buf).0.keep_alive, *keep, "{buf:?}");
    }
}

#[test]
fn partial_heads_ask_for_more() {
    for buf in [
        &b""[..],
        b"GE",
        b"GET / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n",
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r",
    ] {
        assert_eq!(parse(buf), Ok(Parsed::Partial), "{buf:?}");
    }
    // A leading empty line is ignored (RFC 9112 §2.2).
    complete(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
}

#[test]
fn malformed_heads() {
    let long_target = format!(
        "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
        "a".repeat(MAX_TARGET)
    );
    let long_partial = format!("GET /{}", "a".repeat(MAX_TARGET + 100));
    let long_head = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n",
        "a".repeat(MAX_HEAD)
    );
    let many = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "X: y\r\n".repeat(MAX_HEADERS)
    );
    let table: &[(&[u8], u16)] = &[
        (b"GET\r\n\r\n", 400),
        (b"GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\x00b\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        (b"GET / FOO/1.1\r\nHost: a\r\n\r\n", 400),
        // Only the third of exactly three parts is the version (RFC 9112 §3).
        (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /x junk HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /a b HTTP/2.0\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1x\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / garbage\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/3\r\nHost: a\r\n\r\n", 505),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        // An empty Transfer-Encoding is still a Transfer-Encoding: with a Content-Length
        // it is the same smuggling risk, and alone it names no coding.
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\nContent-Length: 5\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,\r\nContent-Length: 5\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: , ,\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,\r\n\r\n", 400),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (long_target.as_bytes(), 414),
        (long_partial.as_bytes(), 414),
        (long_head.as_bytes(), 431),
        (many.as_bytes(), 431),
    ];
    for (buf, status) in table {
        assert_eq!(
            error(buf),
            *status,
            "{:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(60)])
        );
    }
}

#[test]
fn exactly_at_the_limits_is_fine() {
    let target = format!("/{}", "a".repeat(MAX_TARGET - 1));
    let buf = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(complete(buf.as_bytes()).0.target, target);
    let buf = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "X: y\r\n".repeat(MAX_HEADERS - 1)
    );
    complete(buf.as_bytes());
}

#[test]
fn body_framing() {
    let table: &[(&[u8], Framing)] = &[
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
            Framing::Length(5),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            Framing::Length(5),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            Framing::None,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
            Framing::Chunked,
        ),
        // Empty list elements are allowed around a real coding (RFC 9110 §5.6.1.2).
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n",
            Framing::Chunked,
        ),
    ];
    for (buf, framing) in table {
        assert_eq!(complete(buf).0.framing, *framing, "{buf:?}");
    }
}

#[test]
fn absolute_form_and_other_methods() {
    let (req, _) = complete(b"GET http://example.test/a?b HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(req.target, "http://example.test/a?b");
    let (req, _) = complete(b"DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(req.method, Method::Other("DELETE"));
    assert_eq!(req.method.as_str(), "DELETE");
}

#[test]
fn request_line_for_logs() {
    assert_eq!(
        request_line(b"\r\nGET / HTTP/1.1\r\nHost: a"),
        b"GET / HTTP/1.1"
    );
    assert_eq!(request_line(b"GET /partial"), b"GET /partial");
}
