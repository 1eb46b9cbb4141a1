//! What a reply is (status, the few headers we send, a body kind) and how its head becomes
//! bytes in a reused buffer. Never touches a socket. May use: status, httpdate.

use std::fmt::Write as _;
use std::fs::File;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::status;

/// The value of the `Server` header.
pub const SERVER: &str = concat!("httpd/", env!("CARGO_PKG_VERSION"));

/// A reply, before it is written. Headers that every response carries (`Server`, `Date`,
/// `Connection`, `Content-Length`) are derived when the head is encoded.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<Text>,
    pub last_modified: Option<Modified>,
    pub etag: Option<Text>,
    pub location: Option<String>,
    pub allow: Option<&'static str>,
    /// `Accept-Ranges: bytes` (file responses).
    pub accept_ranges: bool,
    /// Any other header, in order (e.g. `Content-Range`, `Vary`, `Cache-Control`).
    pub extra: Vec<(&'static str, String)>,
    pub body: Body,
}

/// The payload of a reply. A file body is a byte window of an open file, so a range reply
/// is the same kind as a full one.
#[derive(Debug)]
pub enum Body {
    Empty,
    Static(&'static [u8]),
    Bytes(Vec<u8>),
    /// A body kept in memory by the file cache, shared by every reply that sends it.
    Shared(Arc<[u8]>),
    File {
        file: Arc<File>,
        offset: u64,
        len: u64,
    },
    /// `multipart/byteranges` (RFC 9110 §14.6): each part's head, then its window of the
    /// file; `closing` ends the last part and the multipart body.
    Multipart {
        file: Arc<File>,
        parts: Vec<Part>,
        closing: Vec<u8>,
    },
}

/// One part of a multipart body: its head (boundary and fields) and its byte window.
#[derive(Debug)]
pub struct Part {
    pub head: Vec<u8>,
    pub offset: u64,
    pub len: u64,
}

impl Body {
    /// The exact length in bytes, for `Content-Length`.
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Static(bytes) => bytes.len() as u64,
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::Shared(bytes) => bytes.len() as u64,
            Body::File { len, .. } => *len,
            Body::Multipart { parts, closing, .. } => {
                parts
                    .iter()
                    .map(|part| part.head.len() as u64 + part.len)
                    .sum::<u64>()
                    + closing.len() as u64
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Response {
    /// A reply with only a status and a body; set the other fields as needed.
    pub fn new(status: u16, body: Body) -> Response {
        Response {
            status,
            content_type: None,
            last_modified: None,
            etag: None,
            location: None,
            allow: None,
            accept_ranges: false,
            extra: Vec::new(),
            body,
        }
    }

    /// Whether this status may carry a body at all (RFC 9110 §6.4.1: 1xx, 204, 304 never do).
    pub fn has_body(&self) -> bool {
        !matches!(self.status, 100..=199 | 204 | 304)
    }

    /// Serialises the head into `out` (which is cleared first), exactly as it goes on the
    /// wire. Header names keep their case: ApacheBench matches `Content-Length:` and
    /// `keep-alive` literally.
    pub fn encode_head(&self, date: Date<'_>, keep_alive: bool, out: &mut Vec<u8>) {
        out.clear();
        // Copied in piece by piece rather than through `write!`: the formatting machinery
        // cost more than the rest of the head's encoding together.
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, u64::from(self.status));
        out.push(b' ');
        out.extend_from_slice(status::reason(self.status).as_bytes());
        out.extend_from_slice(b"\r\n");
        header(out, "Server", SERVER);
        header(out, "Date", date.text);
        if self.has_body() {
            if let Some(content_type) = &self.content_type {
                header(out, "Content-Type", content_type);
            }
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, self.body.len());
            out.extend_from_slice(b"\r\n");
        }
        if let Some(modified) = &self.last_modified {
            // RFC 9110 §8.8.2.1: a modification time later than the message's Date is
            // replaced by the Date (compared by the second both name, as both are rendered).
            // Either way the bytes are copied: the time was rendered when `Modified` was made.
            match modified.second {
                Some(second) if second > date.second => header(out, "Last-Modified", date.text),
                _ => header(out, "Last-Modified", &modified.text),
            }
        }
        if let Some(etag) = &self.etag {
            header(out, "ETag", etag);
        }
        if self.accept_ranges {
            out.extend_from_slice(b"Accept-Ranges: bytes\r\n");
        }
        if let Some(location) = &self.location {
            header(out, "Location", location);
        }
        if let Some(allow) = self.allow {
            header(out, "Allow", allow);
        }
        for (name, value) in &self.extra {
            header(out, name, value);
        }
        // Browsers must not guess a type we did not send.
        out.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
        out.extend_from_slice(if keep_alive {
            b"Connection: keep-alive\r\n\r\n"
        } else {
            b"Connection: close\r\n\r\n"
        });
    }
}

/// A header value: fixed, made for this reply, or shared, rendered once by whoever made it
/// (the file cache's entries hold their `ETag` and `Content-Type` this way, so a hit copies
/// bytes and allocates nothing for them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    Static(&'static str),
    Owned(String),
    Shared(Arc<str>),
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Text::Static(text) => text,
            Text::Owned(text) => text,
            Text::Shared(text) => text,
        }
    }
}

impl From<&'static str> for Text {
    fn from(text: &'static str) -> Text {
        Text::Static(text)
    }
}

impl From<String> for Text {
    fn from(text: String) -> Text {
        Text::Owned(text)
    }
}

/// A `Last-Modified` value rendered once: a time as [`http_date`] shows it, and the second
/// since 1970 it is for (`None` before 1970), so each head still clamps it to its own `Date`
/// (RFC 9110 §8.8.2.1) by comparing two integers, without rendering a date. Cloning shares
/// the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modified {
    second: Option<u64>,
    text: Arc<str>,
}

impl Modified {
    pub fn new(time: SystemTime) -> Modified {
        let mut text = Small::default();
        let _ = write!(text, "{}", http_date(time));
        Modified {
            second: time.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs()),
            text: Arc::from(text.as_str()),
        }
    }

    /// The rendered date, before any clamping to a reply's `Date`.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A short string rendered on the stack (an HTTP-date, an entity-tag), so that turning it
/// into an `Arc<str>` is its one allocation. Text past the capacity is an error.
#[derive(Debug)]
pub struct Small {
    bytes: [u8; 96],
    len: usize,
}

impl Default for Small {
    fn default() -> Small {
        Small {
            bytes: [0; 96],
            len: 0,
        }
    }
}

impl Small {
    pub fn as_str(&self) -> &str {
        // Only whole `str`s are ever copied in.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Write for Small {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `--charset VALUE` (nginx's `charset`): the `charset` parameter added to the
/// `Content-Type` of textual media types. None by default: every type goes out as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Charset(Option<Arc<str>>);

impl Charset {
    /// A charset name as RFC 9110 §8.3.2 allows a parameter value without quotes: a token.
    pub fn parse(value: &str) -> Result<Charset, String> {
        let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if value.is_empty() || !value.bytes().all(tchar) {
            return Err(format!(
                "--charset {value:?}: expected a charset name such as utf-8 (letters, digits \
                 and !#$%&'*+-.^_`|~ only)"
            ));
        }
        Ok(Charset(Some(value.into())))
    }

    /// The charset, if one is set.
    pub fn value(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// The `Content-Type` value for `media` (a bare type such as `text/html`): with
    /// `; charset=VALUE` when a charset is set and the type is textual (`text/*`,
    /// JavaScript, JSON), else `media` as it is. Allocates only when it adds the parameter.
    pub fn content_type(&self, media: &'static str) -> Text {
        match self.value() {
            Some(charset) if is_textual(media) => {
                Text::Shared(Arc::from(format!("{media}; charset={charset}").as_str()))
            }
            _ => Text::Static(media),
        }
    }
}

/// Whether a charset parameter means something for `media`: text, and the JavaScript and
/// JSON types, which are text under an `application/` name. A type that has parameters
/// already is left alone.
fn is_textual(media: &str) -> bool {
    let media = media.to_ascii_lowercase();
    if media.contains(';') {
        return false;
    }
    media.starts_with("text/")
        || media.ends_with("+json")
        || matches!(
            media.as_str(),
            "application/javascript"
                | "application/x-javascript"
                | "application/ecmascript"
                | "application/json"
        )
}

/// Appends the field line `name: value`.
fn header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    // u64::MAX has 20 digits.
    let mut digits = [0; 20];
    let mut start = digits.len();
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
        start -= 1;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// The last second an HTTP-date can show: 9999-12-31T23:59:59Z (a four-digit year).
const LAST_HTTP_DATE: u64 = 253_402_300_799;

/// `time` as an HTTP-date, clamped to what one can show: 1970-01-01T00:00:00Z for anything
/// earlier (a file dated 1960; nginx does the same), the year 9999 for anything later.
/// `httpdate` panics outside that span, and a panic while encoding a head would cost the
/// connection and every request pipelined behind it.
pub fn http_date(time: SystemTime) -> httpdate::HttpDate {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().min(LAST_HTTP_DATE));
    httpdate::HttpDate::from(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The `Date` a reply carries: its text, and the second since 1970 it names, so a later
/// Last-Modified is clamped to it without parsing the text back.
#[derive(Debug, Clone, Copy)]
pub struct Date<'a> {
    text: &'a str,
    second: u64,
}

impl<'a> Date<'a> {
    /// A Date from an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`); `None` for anything
    /// else, or a date before 1970.
    pub fn parse(text: &'a str) -> Option<Date<'a>> {
        let at = httpdate::parse_http_date(text).ok()?;
        let second = at.duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(Date { text, second })
    }

    /// The header value.
    pub fn text(&self) -> &'a str {
        self.text
    }
}

/// The current time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and as the access
/// log's Common Log Format time, each re-rendered at most once a second. One per worker, so
/// no lock.
#[derive(Debug, Default)]
pub struct Clock {
    second: u64,
    text: String,
    clf: String,
}

impl Clock {
    /// The `Date` for now.
    pub fn now(&mut self) -> Date<'_> {
        self.tick();
        Date {
            text: &self.text,
            second: self.second,
        }
    }

    /// The access log's time for now, and the second (since 1970) it is for: the log buffer
    /// writes out lines from an earlier second.
    pub fn log_time(&mut self) -> (&str, u64) {
        self.tick();
        (&self.clf, self.second)
    }

    fn tick(&mut self) {
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if second != self.second || self.text.is_empty() {
            self.second = second;
            // A system clock set before 1970 must not panic the worker.
            // Rendered into the strings' own buffers: a new second costs no allocation.
            self.text.clear();
            let _ = write!(self.text, "{}", http_date(now));
            self.clf.clear();
            write_clf_time(&self.text, &mut self.clf);
        }
    }
}

/// Rewrites an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) as the Common Log Format time
/// (`06/Nov/1994:08:49:37 +0000`), appended to `out`.
fn write_clf_time(imf: &str, out: &mut String) {
    match (
        imf.get(5..7),
        imf.get(8..11),
        imf.get(12..16),
        imf.get(17..25),
    ) {
        (Some(day), Some(month), Some(year), Some(time)) => {
            let _ = write!(out, "{day}/{month}/{year}:{time} +0000");
        }
        _ => out.push('-'),
    }
}

#[cfg(test)]
mod tests;
