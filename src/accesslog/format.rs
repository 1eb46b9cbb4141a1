//! The access log's line formats (`--log-format`): Apache's "combined" and "common", escaped
//! as nginx escapes them, and one JSON object per line, serialized by `serde_json` straight
//! into the worker's buffer. None allocates for a line (the JSON one only when a field holds
//! bytes that are not UTF-8). Every field a client controls is capped, so no line exceeds
//! `PIPE_BUF`. Part of the accesslog module. May use: config, serde, serde_json, std.

use std::fmt::{self, Write as _};
use std::io::Write;

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::{Entry, MAX_FIELD, MAX_HEADER};
use crate::config::LogFormat;

/// The most of the method that the JSON line carries (the request line's first word; for a
/// request we could not parse, whatever came first).
const MAX_METHOD: usize = 32;
/// The most of the protocol that the JSON line carries.
const MAX_PROTOCOL: usize = 16;
/// The most of the path that the JSON line carries: the request line's three parts share
/// [`MAX_FIELD`], as the whole request line does in the other formats.
const MAX_PATH: usize = MAX_FIELD - MAX_METHOD - MAX_PROTOCOL;

/// Appends `entry`'s line, in `format`, to `out`.
pub(super) fn write_line(format: LogFormat, entry: &Entry<'_>, out: &mut Vec<u8>) {
    match format {
        LogFormat::Combined => write_clf(entry, true, out),
        LogFormat::Common => write_clf(entry, false, out),
        LogFormat::Json => write_json(entry, out),
    }
}

/// Appends `host - - [time] "request" status bytes` (the Common Log Format) and, for
/// `combined`, ` "referer" "user-agent"`, then a newline, to `out`, without allocating.
fn write_clf(entry: &Entry<'_>, combined: bool, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{} - - [{}] \"", entry.client, entry.time);
    escape_into(entry.request_line, MAX_FIELD, out);
    let _ = write!(out, "\" {} ", entry.status);
    if entry.bytes == 0 {
        out.push(b'-');
    } else {
        let _ = write!(out, "{}", entry.bytes);
    }
    if combined {
        for field in [entry.referer, entry.user_agent] {
            out.extend_from_slice(b" \"");
            match field {
                Some(value) => escape_into(value.as_bytes(), MAX_HEADER, out),
                None => out.push(b'-'),
            }
            out.push(b'"');
        }
    }
    out.push(b'\n');
}

/// Printable ASCII stays; quotes, backslashes, control and non-ASCII bytes become `\xHH`
/// (as nginx writes them), so a client can neither forge a line nor a field. At most `cap`
/// bytes come out (no escape is cut in two); if the field does not fit, `...` follows what
/// does.
pub(super) fn escape_into(bytes: &[u8], cap: usize, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut room = cap;
    for &b in bytes {
        let plain = (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
        let width = if plain { 1 } else { 4 };
        if width > room {
            out.extend_from_slice(b"...");
            return;
        }
        room -= width;
        if plain {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        }
    }
}

/// Appends `entry` as one JSON object and a newline to `out`.
fn write_json(entry: &Entry<'_>, out: &mut Vec<u8>) {
    // Serializing into a Vec fails only if a `Display` impl does, and ours never do; were
    // one to, the line would be cut short, so drop what it wrote rather than log half a line.
    let start = out.len();
    if serde_json::to_writer(&mut *out, &Json(entry)).is_err() {
        out.truncate(start);
        return;
    }
    out.push(b'\n');
}

/// An [`Entry`] as the JSON line's object.
struct Json<'e, 'a>(&'e Entry<'a>);

impl Serialize for Json<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entry = self.0;
        let (method, path, protocol) = split_request_line(entry.request_line);
        let mut object = serializer.serialize_struct("Entry", 10)?;
        object.serialize_field("time", &Str(Rfc3339(entry.time)))?;
        object.serialize_field("client", &Str(entry.client))?;
        object.serialize_field("method", &Str(Text::new(method, MAX_METHOD)))?;
        object.serialize_field("path", &Str(Text::new(path, MAX_PATH)))?;
        object.serialize_field("protocol", &Str(Text::new(protocol, MAX_PROTOCOL)))?;
        object.serialize_field("status", &entry.status)?;
        object.serialize_field("bytes", &entry.bytes)?;
        let micros = u64::try_from(entry.duration.as_micros()).unwrap_or(u64::MAX);
        object.serialize_field("duration_us", &micros)?;
        object.serialize_field("referer", &header(entry.referer))?;
        object.serialize_field("user_agent", &header(entry.user_agent))?;
        object.end()
    }
}

/// A request header's value for the JSON line: `null` if it was not sent.
fn header(value: Option<&str>) -> Option<Str<Text<'_>>> {
    value.map(|value| Str(Text::new(value.as_bytes(), MAX_HEADER)))
}

/// Serializes anything `Display` as a JSON string, escaped by `serde_json` as it is written
/// (`collect_str`: no `String` in between).
struct Str<T>(T);

impl<T: fmt::Display> Serialize for Str<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// The request line's method, target and protocol: split at its first and last space (a
/// target has no spaces: the parser refuses them). A line we could not parse is split the
/// same way, best effort: a last word that is not `HTTP/…` stays part of the path, and a
/// line without a space is all method.
pub(super) fn split_request_line(line: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let Some(first) = line.iter().position(|&b| b == b' ') else {
        return (line, b"", b"");
    };
    let (method, rest) = (&line[..first], &line[first + 1..]);
    match rest.iter().rposition(|&b| b == b' ') {
        Some(last) if rest[last + 1..].starts_with(b"HTTP/") => {
            (method, &rest[..last], &rest[last + 1..])
        }
        _ => (method, rest, b""),
    }
}

/// Bytes from a client, for a JSON string: bytes that are not UTF-8 become U+FFFD (one per
/// invalid sequence, as `String::from_utf8_lossy`), and at most `cap` bytes of escaped JSON
/// come out (no character or escape is cut in two), with `...` after what fits if the field
/// does not.
pub(super) struct Text<'a> {
    bytes: &'a [u8],
    cap: usize,
}

impl<'a> Text<'a> {
    pub(super) fn new(bytes: &'a [u8], cap: usize) -> Text<'a> {
        Text { bytes, cap }
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut room = self.cap;
        for chunk in self.bytes.utf8_chunks() {
            let valid = chunk.valid();
            for (at, c) in valid.char_indices() {
                let width = json_width(c);
                if width > room {
                    f.write_str(&valid[..at])?;
                    return f.write_str("...");
                }
                room -= width;
            }
            f.write_str(valid)?;
            if !chunk.invalid().is_empty() {
                let width = char::REPLACEMENT_CHARACTER.len_utf8();
                if width > room {
                    return f.write_str("...");
                }
                room -= width;
                f.write_char(char::REPLACEMENT_CHARACTER)?;
            }
        }
        Ok(())
    }
}

/// The bytes `c` takes in a JSON string as `serde_json` writes it: `"` and `\` and the
/// controls with a short escape take two, the other controls six (`\u00XX`), anything else
/// its UTF-8 (non-ASCII is not escaped).
fn json_width(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if c < ' ' => 6,
        c => c.len_utf8(),
    }
}

/// The Common Log Format time (`06/Nov/1994:08:49:37 +0000`, always UTC here) as RFC 3339
/// (`1994-11-06T08:49:37Z`); anything else as it is.
struct Rfc3339<'a>(&'a str);

impl fmt::Display for Rfc3339<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let clf = self.0;
        let parts = (
            clf.get(0..2),
            clf.get(3..6)
                .and_then(|m| MONTHS.iter().position(|&name| name == m)),
            clf.get(7..11),
            clf.get(12..20),
            clf.get(20..),
        );
        match parts {
            (Some(day), Some(month), Some(year), Some(time), Some(" +0000")) => {
                write!(f, "{year}-{:02}-{day}T{time}Z", month + 1)
            }
            _ => f.write_str(clf),
        }
    }
}

#[cfg(test)]
mod tests;
