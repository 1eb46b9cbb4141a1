//! Pure parsing of a request head over `httparse`: bytes in, a `Request` borrowing from
//! them (or "need more bytes", or an `HttpError`) out. Never does I/O. May use: httparse,
//! error.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use crate::error::HttpError;

/// Longest request target we accept (RFC 9112 §3 recommends at least 8000 octets).
pub const MAX_TARGET: usize = 8 * 1024;
/// Longest request head (request line plus fields) we accept.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields we accept in one head.
pub const MAX_HEADERS: usize = 100;

/// The request method, as far as a static server cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method<'a> {
    Get,
    Head,
    /// Any other token; kept for the access log and answered with 405.
    Other(&'a str),
}

impl<'a> Method<'a> {
    pub fn as_str(&self) -> &'a str {
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

/// The parts of a request head the server uses, borrowed from the read buffer: parsing
/// copies nothing, so a request costs no allocation (a repeated list field, which must be
/// combined, is the one exception). The borrow ends before the buffer is drained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Method<'a>,
    /// The request target exactly as sent (origin-form, absolute-form or `*`).
    pub target: &'a str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Whether the client wants the connection kept after the reply (RFC 9112 §9.3).
    pub keep_alive: bool,
    pub framing: Framing,
    /// Field values are text: bytes that are not UTF-8 become U+FFFD (a copy, only then).
    pub referer: Option<Cow<'a, str>>,
    pub user_agent: Option<Cow<'a, str>>,
    /// The fields that shape the reply: validators, ranges, negotiation.
    pub fields: Fields<'a>,
}

/// Request fields used after parsing. A list field sent more than once is combined into one
/// comma-separated value (RFC 9110 §5.3). A singleton field (a date, a Range, an If-Range)
/// sent more than once is invalid, and an invalid field is ignored (RFC 9110 §5.3, §13.1.3,
/// §13.1.4, §14.2): every copy is dropped, never combined into something that might still
/// parse. If-Range is the exception in form, not in effect: dropping it would turn a
/// conditional range into an unconditional one, so a repeated If-Range is kept as an empty
/// value, which like any invalid If-Range never matches, and the Range is then ignored
/// (§13.1.5). A value borrows from the head unless it had to be combined or made valid
/// UTF-8.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    pub if_match: Option<Cow<'a, str>>,
    pub if_none_match: Option<Cow<'a, str>>,
    pub if_modified_since: Option<Cow<'a, str>>,
    pub if_unmodified_since: Option<Cow<'a, str>>,
    pub range: Option<Cow<'a, str>>,
    pub if_range: Option<Cow<'a, str>>,
    pub accept_encoding: Option<Cow<'a, str>>,
    pub accept: Option<Cow<'a, str>>,
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

impl<'a> Fields<'a> {
    /// The slot for slot number `index` of [`KEPT`].
    fn slot(&mut self, index: usize) -> &mut Option<Cow<'a, str>> {
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
    fn add(&mut self, name: &str, value: &'a [u8], repeated: &mut u8) {
        let Some(index) = KEPT.iter().position(|(n, _)| n.eq_ignore_ascii_case(name)) else {
            return;
        };
        let kind = KEPT[index].1;
        let slot = self.slot(index);
        match slot {
            Some(_) if kind != Kind::List => {
                *slot = (kind == Kind::Guard).then_some(Cow::Borrowed(""));
                *repeated |= 1 << index;
            }
            _ if *repeated & (1 << index) != 0 => {}
            Some(existing) => {
                let combined = existing.to_mut();
                combined.push_str(", ");
                combined.push_str(&String::from_utf8_lossy(value));
            }
            None => *slot = Some(String::from_utf8_lossy(value)),
        }
    }
}

/// The result of looking at the bytes received so far.
// Returned once per parse and never stored: boxing the request would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole head: the request and how many bytes of the buffer it used.
    Complete(Request<'a>, usize),
    /// The head is not complete yet and is still within limits: read more.
    Partial,
}

/// Parses the head at the start of `buf`. Leading empty lines are skipped (RFC 9112 §2.2).
pub fn parse(buf: &[u8]) -> Result<Parsed<'_>, HttpError> {
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

fn build<'a>(req: &httparse::Request<'_, 'a>) -> Result<Request<'a>, HttpError> {
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
        other => Method::Other(other),
    };

    let mut hosts = 0;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut length: Option<u64> = None;
    // The codings named, in order, without keeping them: whether any is not chunked, and
    // whether the last one is.
    let mut codings = 0usize;
    let mut last_chunked = false;
    let mut unknown_coding = false;
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
                codings += 1;
                last_chunked = token.eq_ignore_ascii_case(b"chunked");
                unknown_coding |= !last_chunked;
            }
        } else if name.eq_ignore_ascii_case("referer") {
            referer = Some(String::from_utf8_lossy(header.value));
        } else if name.eq_ignore_ascii_case("user-agent") {
            user_agent = Some(String::from_utf8_lossy(header.value));
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
        if codings == 0 {
            return Err(HttpError::BadRequest("empty Transfer-Encoding"));
        }
        if minor_version == 0 || !last_chunked {
            return Err(HttpError::BadRequest("unusable Transfer-Encoding"));
        }
        if unknown_coding {
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
        target,
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
mod tests;
