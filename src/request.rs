//! Pure parsing of a request head over `httparse`: bytes in, an owned `Request` (or "need
//! more bytes", or an `HttpError`) out. Never does I/O. May use: httparse, error.

use std::mem::MaybeUninit;

use crate::error::HttpError;

/// Longest request target we accept (RFC 9112 §3 recommends at least 8000 octets).
pub const MAX_TARGET: usize = 8 * 1024;
/// Longest request head (request line plus fields) we accept.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields we accept in one head.
pub const MAX_HEADERS: usize = 100;

/// The request method, as far as a static server cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Any other token; kept for the access log and answered with 405.
    Other(String),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Other(name) => name,
        }
    }
}

/// How the request's body (if any) is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// The parts of a request head the server uses, copied out of the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The request target exactly as sent (origin-form, absolute-form or `*`).
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Whether the client wants the connection kept after the reply (RFC 9112 §9.3).
    pub keep_alive: bool,
    pub framing: Framing,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    /// The fields that shape the reply: validators, ranges, negotiation.
    pub fields: Fields,
}

/// Request fields used after parsing. A list field sent more than once is combined into one
/// comma-separated value (RFC 9110 §5.3). A singleton field (a date, a Range, an If-Range)
/// sent more than once is invalid, and an invalid field is ignored (RFC 9110 §5.3, §13.1.3,
/// §13.1.4, §14.2): every copy is dropped, never combined into something that might still
/// parse. If-Range is the exception in form, not in effect: dropping it would turn a
/// conditional range into an unconditional one, so a repeated If-Range is kept as an empty
/// value, which like any invalid If-Range never matches, and the Range is then ignored
/// (§13.1.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub if_unmodified_since: Option<String>,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub accept_encoding: Option<String>,
    pub accept: Option<String>,
}

/// What a repeat of a kept field means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The lines combine into one list.
    List,
    /// The field is void: as if it had not been sent.
    Singleton,
    /// The field is void but stays present, as a value that never matches (If-Range).
    Guard,
}

/// The fields kept in [`Fields`], in slot order.
const KEPT: [(&str, Kind); 8] = [
    ("if-match", Kind::List),
    ("if-none-match", Kind::List),
    ("if-modified-since", Kind::Singleton),
    ("if-unmodified-since", Kind::Singleton),
    ("range", Kind::Singleton),
    ("if-range", Kind::Guard),
    ("accept-encoding", Kind::List),
    ("accept", Kind::List),
];

impl Fields {
    /// The slot for slot number `index` of [`KEPT`].
    fn slot(&mut self, index: usize) -> &mut Option<String> {
        match index {
            0 => &mut self.if_match,
            1 => &mut self.if_none_match,
            2 => &mut self.if_modified_since,
            3 => &mut self.if_unmodified_since,
            4 => &mut self.range,
            5 => &mut self.if_range,
            6 => &mut self.accept_encoding,
            _ => &mut self.accept,
        }
    }

    /// Keeps one field line if it is one we use. `repeated` has bit `i` set once singleton
    /// `i` has been seen twice, so a third copy cannot bring it back.
    fn add(&mut self, name: &str, value: &[u8], repeated: &mut u8) {
        let Some(index) = KEPT.iter().position(|(n, _)| n.eq_ignore_ascii_case(name)) else {
            return;
        };
        let kind = KEPT[index].1;
        let slot = self.slot(index);
        match slot {
            Some(_) if kind != Kind::List => {
                *slot = (kind == Kind::Guard).then(String::new);
                *repeated |= 1 << index;
            }
            _ if *repeated & (1 << index) != 0 => {}
            Some(existing) => {
                existing.push_str(", ");
                existing.push_str(&String::from_utf8_lossy(value));
            }
            None => *slot = Some(String::from_utf8_lossy(value).into_owned()),
        }
    }
}

/// The result of looking at the bytes received so far.
// Returned once per parse and never stored: boxing the request would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole head: the request and how many bytes of the buffer it used.
    Complete(Request, usize),
    /// The head is not complete yet and is still within limits: read more.
    Partial,
}

/// Parses the head at the start of `buf`. Leading empty lines are skipped (RFC 9112 §2.2).
pub fn parse(buf: &[u8]) -> Result<Parsed, HttpError> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(head_len)) => {
            if head_len > MAX_HEAD {
                return Err(HttpError::HeaderTooLarge);
            }
            let request = build(&req)?;
            Ok(Parsed::Complete(request, head_len))
        }
        Ok(httparse::Status::Partial) => {
            check_partial(buf)?;
            Ok(Parsed::Partial)
        }
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::HeaderTooLarge),
        Err(httparse::Error::Version) => Err(classify_version(request_line(buf))),
        Err(_) => {
            // A target over the limit is the better answer even when the line is also bad.
            check_partial(buf)?;
            Err(HttpError::BadRequest("malformed request head"))
        }
    }
}

/// The first line of the head (without CR LF, after any leading empty lines), for logs.
pub fn request_line(buf: &[u8]) -> &[u8] {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = &buf[start..];
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = &rest[..end];
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Limits that apply before the head is complete, so an endless line or head is refused as
/// soon as it crosses the limit instead of when it ends.
fn check_partial(buf: &[u8]) -> Result<(), HttpError> {
    let line = request_line(buf);
    let line_ended = buf
        .iter()
        .skip_while(|&&b| b == b'\r' || b == b'\n')
        .any(|&b| b == b'\n');
    let target_len = line.split(|&b| b == b' ').nth(1).map_or(0, <[u8]>::len);
    // Until its end arrives the line is method, target and (part of) the version.
    if target_len > MAX_TARGET || (!line_ended && line.len() > MAX_TARGET + 32) {
        return Err(HttpError::UriTooLong);
    }
    if buf.len() >= MAX_HEAD {
        return Err(HttpError::HeaderTooLarge);
    }
    Ok(())
}

/// `METHOD SP TARGET SP HTTP/x.y` with another version → 505; anything else → 400. The line
/// must have exactly three parts (RFC 9112 §3): in `GET /a b HTTP/1.1` the version is `b`,
/// so the request is malformed, not of another version.
fn classify_version(line: &[u8]) -> HttpError {
    let mut parts = line.split(|&b| b == b' ');
    let version = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(_), Some(version), None) => version,
        _ => return HttpError::BadRequest("malformed request line"),
    };
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            HttpError::VersionNotSupported
        }
        [b'H', b'T', b'T', b'P', b'/', major] if major.is_ascii_digit() => {
            HttpError::VersionNotSupported
        }
        _ => HttpError::BadRequest("malformed request line"),
    }
}

fn build(req: &httparse::Request<'_, '_>) -> Result<Request, HttpError> {
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HttpError::BadRequest("incomplete request line"));
    };
    if target.len() > MAX_TARGET {
        return Err(HttpError::UriTooLong);
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_string()),
    };

    let mut hosts = 0;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut length: Option<u64> = None;
    let mut codings: Vec<String> = Vec::new();
    let mut referer = None;
    let mut user_agent = None;
    let mut fields = Fields::default();
    let mut repeated = 0;
    let mut transfer_encoding = false;
    for header in req.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            if !valid_host(header.value) {
                return Err(HttpError::BadRequest("invalid Host"));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(header.value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            // RFC 9110 §8.6: a list of identical values is one value; anything else is fatal.
            for token in tokens(header.value) {
                let value = parse_length(token)?;
                if length.is_some_and(|seen| seen != value) {
                    return Err(HttpError::BadRequest("conflicting Content-Length"));
                }
                length = Some(value);
            }
            if length.is_none() {
                return Err(HttpError::BadRequest("empty Content-Length"));
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            for token in tokens(header.value) {
                codings.push(String::from_utf8_lossy(token).to_ascii_lowercase());
            }
        } else if name.eq_ignore_ascii_case("referer") {
            referer = Some(String::from_utf8_lossy(header.value).into_owned());
        } else if name.eq_ignore_ascii_case("user-agent") {
            user_agent = Some(String::from_utf8_lossy(header.value).into_owned());
        } else {
            fields.add(name, header.value, &mut repeated);
        }
    }

    // RFC 9112 §3.2: exactly one Host in HTTP/1.1; never more than one.
    if hosts > 1 || (hosts == 0 && minor_version == 1) {
        return Err(HttpError::BadRequest("missing or repeated Host"));
    }

    // RFC 9112 §6.1 and §6.3: both framings at once is a smuggling attempt, even when the
    // Transfer-Encoding is empty (`Transfer-Encoding: ,` names no coding, but a proxy in
    // front may still have framed the body its own way); a Transfer-Encoding must name at
    // least one coding (§6.1: `1#transfer-coding`); chunked must be the final coding; codings
    // we don't know get 501.
    let framing = if transfer_encoding {
        if length.is_some() {
            return Err(HttpError::BadRequest(
                "Transfer-Encoding with Content-Length",
            ));
        }
        if codings.is_empty() {
            return Err(HttpError::BadRequest("empty Transfer-Encoding"));
        }
        if minor_version == 0 || codings.last().map(String::as_str) != Some("chunked") {
            return Err(HttpError::BadRequest("unusable Transfer-Encoding"));
        }
        if codings.iter().any(|coding| coding != "chunked") {
            return Err(HttpError::NotImplemented);
        }
        Framing::Chunked
    } else {
        match length {
            Some(0) | None => Framing::None,
            Some(len) => Framing::Length(len),
        }
    };

    let keep_alive = if minor_version == 1 {
        !close
    } else {
        keep_alive_token && !close
    };

    Ok(Request {
        method,
        target: target.to_string(),
        minor_version,
        keep_alive,
        framing,
        referer,
        user_agent,
        fields,
    })
}

/// The comma-separated elements of a field value, trimmed, empty ones dropped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|token| token.trim_ascii())
        .filter(|token| !token.is_empty())
}

fn parse_length(token: &[u8]) -> Result<u64, HttpError> {
    if token.is_empty() || !token.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadRequest("invalid Content-Length"));
    }
    std::str::from_utf8(token)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(HttpError::BadRequest("invalid Content-Length"))
}

/// `uri-host [ ":" port ]` in the loose sense: no whitespace, slashes or other delimiters
/// that could make a Host mean a path (RFC 9110 §7.2).
fn valid_host(value: &[u8]) -> bool {
    value.iter().all(|&b| {
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']' | b'~')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (Request, usize) {
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
            let get = |req: &Request| match name {
                "If-Match" => req.fields.if_match.clone(),
                "If-None-Match" => req.fields.if_none_match.clone(),
                "Accept-Encoding" => req.fields.accept_encoding.clone(),
                "Accept" => req.fields.accept.clone(),
                "Range" => req.fields.range.clone(),
                "If-Range" => req.fields.if_range.clone(),
                "If-Modified-Since" => req.fields.if_modified_since.clone(),
                _ => req.fields.if_unmodified_since.clone(),
            };
            let head = |copies: usize| {
                let line = format!("{name}: {value}\r\n");
                format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", line.repeat(copies))
            };
            let (once, _) = complete(head(1).as_bytes());
            assert_eq!(get(&once).as_deref(), Some(value), "{name} once");
            let (two, _) = complete(head(2).as_bytes());
            assert_eq!(get(&two).as_deref(), twice, "{name} twice");
            if twice.is_none_or(str::is_empty) {
                let (three, _) = complete(head(3).as_bytes());
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
        let (req, _) =
            complete(b"GET http://example.test/a?b HTTP/1.1\r\nHost: example.test\r\n\r\n");
        assert_eq!(req.target, "http://example.test/a?b");
        let (req, _) = complete(b"DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(req.method, Method::Other("DELETE".into()));
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
}
