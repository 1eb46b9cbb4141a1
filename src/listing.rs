//! Directory listing pages, HTML or JSON, rendered from entries already read (names, sizes,
//! times: never file contents), in the order the query asks for (`order`). Every name is
//! escaped for its context: text, attribute, link. May use: url.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::url::encode_segment;

mod order;
pub use order::{Key, Order};

/// One visible entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The file name as bytes (names need not be UTF-8).
    pub name: Vec<u8>,
    pub is_dir: bool,
    pub size: u64,
    pub modified: Option<SystemTime>,
}

/// Clamps every entry's time to what a listing may show: not before 1970 (as a file's
/// Last-Modified is), not after `now`'s second (RFC 9110 §8.8.2.1: a time in the future is
/// replaced by the present). Call it before hashing the entries for an ETag, so the tag
/// changes exactly when the page does.
pub fn clamp_times(entries: &mut [Entry], now: SystemTime) {
    let latest =
        UNIX_EPOCH + Duration::from_secs(now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    for modified in entries
        .iter_mut()
        .filter_map(|entry| entry.modified.as_mut())
    {
        *modified = (*modified).max(UNIX_EPOCH).min(latest);
    }
}

/// The page's style, inline so a listing is one response: the name column takes what the
/// size and date columns leave and wraps long names anywhere; sizes and dates never wrap.
/// Below 600 px each row stacks: the name on its own line, size and date under it.
const STYLE: &str = "<style>\
:root{color-scheme:light dark}\
body{font:16px/1.4 system-ui,sans-serif;max-width:72rem;margin:0 auto;padding:1rem}\
h1{font-size:1.4rem;overflow-wrap:anywhere}\
table{width:100%;table-layout:fixed;border-collapse:collapse}\
th,td{padding:.3rem .5rem;text-align:left;vertical-align:top}\
thead th{border-bottom:1px solid #8888}\
th a{text-decoration:none}\
tbody tr:nth-child(even){background:#8881}\
.n{overflow-wrap:anywhere}\
.s{width:6rem;text-align:right}\
.d{width:9.5rem}\
.s,.d{white-space:nowrap;font-variant-numeric:tabular-nums}\
@media(max-width:600px){body{padding:.5rem}\
table,thead,tbody{display:block}\
tr{display:flex;flex-wrap:wrap;column-gap:1rem;padding:.2rem 0}\
th,td{padding:.1rem .25rem}\
thead tr{border-bottom:1px solid #8888}\
thead th{border:0}\
thead .n{flex:1}\
.d{width:auto}\
tbody .n{flex:1 0 100%}\
tbody .s{width:5rem;text-align:left}\
tbody .s,tbody .d{font-size:.85rem;opacity:.8}\
tbody td:empty{display:none}}\
</style>";

/// The HTML page for the directory at URL path `segments` (decoded), its entries already
/// sorted in `order`. `truncated` says that entries beyond the listing cap were left out.
pub fn html(segments: &[Vec<u8>], entries: &[Entry], order: Order, truncated: bool) -> Vec<u8> {
    let mut title = String::from("/");
    for segment in segments {
        title.push_str(&String::from_utf8_lossy(segment));
        title.push('/');
    }
    let title = escape_html(&title);
    let mut page = String::with_capacity(1536 + entries.len() * 300);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n\
         <title>Index of {title}</title>\n{STYLE}\n</head><body>\n<h1>Index of {title}</h1>\n\
         <table>\n<thead><tr>"
    );
    for key in Key::ALL {
        let (class, label) = match key {
            Key::Name => ("n", "Name"),
            Key::Size => ("s", "Size"),
            Key::Date => ("d", "Modified (UTC)"),
        };
        let _ = write!(page, "<th class=\"{class}\"");
        let arrow = match order.marker(key) {
            Some((aria, arrow)) => {
                let _ = write!(page, " aria-sort=\"{aria}\"");
                arrow
            }
            None => "",
        };
        // The query is fixed ASCII; only its `&` needs escaping in an attribute.
        let query = order.toggled(key).query().replace('&', "&amp;");
        let _ = write!(page, "><a href=\"?{query}\">{label}</a> {arrow}</th>");
    }
    page.push_str("</tr></thead>\n<tbody>\n");
    if !segments.is_empty() {
        page.push_str(
            "<tr><td class=\"n\"><a href=\"../\">../</a></td><td class=\"s\"></td>\
             <td class=\"d\"></td></tr>\n",
        );
    }
    for entry in entries {
        let slash = if entry.is_dir { "/" } else { "" };
        let name = escape_html(&String::from_utf8_lossy(&entry.name));
        let _ = write!(
            page,
            "<tr><td class=\"n\"><a href=\"{}{slash}\" title=\"{name}{slash}\">{name}{slash}</a></td>",
            encode_segment(&entry.name),
        );
        if entry.is_dir {
            page.push_str("<td class=\"s\">-</td>");
        } else {
            let bytes = entry.size;
            let unit = if bytes == 1 { "byte" } else { "bytes" };
            let _ = write!(
                page,
                "<td class=\"s\" title=\"{bytes} {unit}\">{}</td>",
                human_size(bytes)
            );
        }
        match entry.modified {
            Some(time) => {
                let exact = utc(time, ' ');
                let _ = writeln!(
                    page,
                    "<td class=\"d\"><time datetime=\"{}\" title=\"{exact} UTC\">{}</time></td></tr>",
                    utc(time, 'T'),
                    &exact[..exact.len().min(16)],
                );
            }
            None => page.push_str("<td class=\"d\"></td></tr>\n"),
        }
    }
    page.push_str("</tbody>\n</table>\n");
    if truncated {
        page.push_str("<p>Only the first entries are listed.</p>\n");
    }
    page.push_str("</body></html>\n");
    page.into_bytes()
}

/// A size for people: bytes below 1 KiB (`1023 B`), else binary units with one decimal,
/// rounded to nearest (`1.2 KiB`, `3.4 MiB`, up to `16.0 EiB` for `u64::MAX`). A value that
/// would round to 1024.0 of a unit is shown as 1.0 of the next.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut unit = 0;
    loop {
        let divisor = 1u128 << (10 * (unit + 1));
        // Tenths of the unit, rounded half up, in u128 so `u64::MAX * 10` cannot overflow.
        let tenths = (u128::from(bytes) * 10 + divisor / 2) / divisor;
        if tenths < 10_240 || unit + 1 == UNITS.len() {
            return format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit]);
        }
        unit += 1;
    }
}

/// The JSON array: `[{"name", "type", "size", "mtime", "href"}, ...]`. `href` is the exact,
/// percent-encoded link (names that are not UTF-8 show lossily in `name`).
pub fn json(entries: &[Entry]) -> Vec<u8> {
    let mut out = String::with_capacity(2 + entries.len() * 120);
    out.push('[');
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        escape_json(&String::from_utf8_lossy(&entry.name), &mut out);
        let kind = if entry.is_dir { "dir" } else { "file" };
        let _ = write!(
            out,
            ",\"type\":\"{kind}\",\"size\":{},\"mtime\":",
            entry.size
        );
        match entry.modified {
            Some(time) => {
                let _ = write!(out, "\"{}\"", utc(time, 'T'));
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"href\":");
        let slash = if entry.is_dir { "/" } else { "" };
        escape_json(&format!("{}{slash}", encode_segment(&entry.name)), &mut out);
        out.push('}');
    }
    out.push_str("]\n");
    out.into_bytes()
}

/// `&`, `<`, `>`, `"` and `'` as entities, for text and attribute values of a page (the
/// status page uses it too).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn escape_json(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `YYYY-MM-DD?HH:MM:SSZ` in UTC, `sep` between date and time (`T` for ISO 8601).
fn utc(time: SystemTime, sep: char) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    if sep == 'T' {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02}{sep}{h:02}:{m:02}:{s:02}")
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
