//! Directory listing pages, HTML or JSON, rendered from entries already read (names, sizes,
//! times: never file contents). Every name is escaped for its context. May use: url.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::url::encode_segment;

/// One visible entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The file name as bytes (names need not be UTF-8).
    pub name: Vec<u8>,
    pub is_dir: bool,
    pub size: u64,
    pub modified: Option<SystemTime>,
}

/// Directories first, then by name (byte order, so the order is the same everywhere).
pub fn sort(entries: &mut [Entry]) {
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
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

/// The HTML page for the directory at URL path `segments` (decoded). `truncated` says that
/// entries beyond the listing cap were left out.
pub fn html(segments: &[Vec<u8>], entries: &[Entry], truncated: bool) -> Vec<u8> {
    let mut title = String::from("/");
    for segment in segments {
        title.push_str(&String::from_utf8_lossy(segment));
        title.push('/');
    }
    let title = escape_html(&title);
    let mut page = String::with_capacity(512 + entries.len() * 160);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title>\n\
         <style>body{{font-family:system-ui,sans-serif;margin:2rem}}\
         th,td{{padding:.15rem 1rem;text-align:left}}td.n{{text-align:right}}</style>\n\
         </head><body>\n<h1>Index of {title}</h1>\n<table>\n\
         <tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr>\n"
    );
    if !segments.is_empty() {
        page.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for entry in entries {
        let slash = if entry.is_dir { "/" } else { "" };
        let size = if entry.is_dir {
            "-".to_string()
        } else {
            entry.size.to_string()
        };
        let modified = entry.modified.map(|t| utc(t, ' ')).unwrap_or_default();
        let _ = writeln!(
            page,
            "<tr><td><a href=\"{}{slash}\">{}{slash}</a></td><td class=\"n\">{size}</td><td>{}</td></tr>",
            encode_segment(&entry.name),
            escape_html(&String::from_utf8_lossy(&entry.name)),
            &modified[..modified.len().min(16)],
        );
    }
    page.push_str("</table>\n");
    if truncated {
        page.push_str("<p>Only the first entries are listed.</p>\n");
    }
    page.push_str("</body></html>\n");
    page.into_bytes()
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

fn escape_html(text: &str) -> String {
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
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(name: &[u8], is_dir: bool, size: u64) -> Entry {
        Entry {
            name: name.to_vec(),
            is_dir,
            size,
            modified: Some(UNIX_EPOCH + Duration::from_secs(784_111_777)),
        }
    }

    #[test]
    fn dates() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(utc(t, 'T'), "1994-11-06T08:49:37Z");
        assert_eq!(utc(UNIX_EPOCH, 'T'), "1970-01-01T00:00:00Z");
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(951_782_400), 'T'),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(4_102_444_799), ' '),
            "2099-12-31 23:59:59"
        );
    }

    #[test]
    fn sorted_dirs_first_then_names() {
        let mut entries = vec![
            entry(b"b.txt", false, 1),
            entry(b"z", true, 0),
            entry(b"a.txt", false, 2),
            entry(b"a", true, 0),
        ];
        sort(&mut entries);
        let names: Vec<&[u8]> = entries.iter().map(|e| e.name.as_slice()).collect();
        assert_eq!(names, [&b"a"[..], b"z", b"a.txt", b"b.txt"]);
    }

    #[test]
    fn html_escapes_names_and_encodes_links() {
        let entries = [
            entry(b"<b>&\"x'.txt", false, 5),
            entry(b"caf\xc3\xa9 dir", true, 0),
        ];
        let page = String::from_utf8(html(&[b"d<ir".to_vec()], &entries, false)).unwrap();
        assert!(page.contains("<title>Index of /d&lt;ir/</title>"), "{page}");
        assert!(page.contains("<a href=\"../\">../</a>"), "{page}");
        assert!(
            page.contains("<a href=\"%3Cb%3E%26%22x%27.txt\">&lt;b&gt;&amp;&quot;x&#39;.txt</a>"),
            "{page}"
        );
        assert!(
            page.contains("<a href=\"caf%C3%A9%20dir/\">café dir/</a>"),
            "{page}"
        );
        assert!(
            page.contains("<td class=\"n\">5</td><td>1994-11-06 08:49</td>"),
            "{page}"
        );
        assert!(!page.contains("<b>"), "{page}");
        let root = String::from_utf8(html(&[], &[], true)).unwrap();
        assert!(!root.contains("../") && root.contains("Only the first entries"));
    }

    /// The hrefs of a page, in order (the page escapes them, so a `"` ends one).
    fn hrefs(page: &str) -> Vec<&str> {
        page.split("href=\"")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap()])
            .collect()
    }

    /// A relative reference is read as a scheme if its first segment has a `:` before any
    /// `/`, `?` or `#` (RFC 3986 §4.2): no listing link may ever look like that.
    #[test]
    fn hrefs_are_never_schemes_or_off_site() {
        // (A file name cannot hold `/`, so `//host` cannot arise; `/` is escaped anyway.)
        let names: [&[u8]; 7] = [
            b"javascript:alert(document.domain)",
            b"https:evil.example",
            b"JAVASCRIPT:x",
            b"data:text,x",
            b"a:b:c",
            b"x'y(z)\"<w>&v",
            b"plain.txt",
        ];
        let entries: Vec<Entry> = names.iter().map(|n| entry(n, false, 1)).collect();
        let page = String::from_utf8(html(&[b"d".to_vec()], &entries, false)).unwrap();
        let json: Vec<String> = String::from_utf8(json(&entries))
            .unwrap()
            .split("\"href\":\"")
            .skip(1)
            .map(|rest| rest[..rest.find('"').unwrap()].to_string())
            .collect();
        let html_hrefs = hrefs(&page);
        assert_eq!(html_hrefs.len(), names.len() + 1, "{page}"); // and `../`
        assert_eq!(json.len(), names.len());
        for href in html_hrefs
            .iter()
            .copied()
            .chain(json.iter().map(String::as_str))
        {
            let first = href.split(['/', '?', '#']).next().unwrap_or("");
            assert!(!first.contains(':'), "scheme-like href {href:?}");
            assert!(!href.starts_with("//") && !href.contains('\\'), "{href:?}");
            assert!(
                !href.contains(['"', '\'', '<', '>', '&', '(', ')', ' ']),
                "{href:?}"
            );
        }
        assert!(page.contains("href=\"javascript%3Aalert%28document.domain%29\""));
        assert!(page.contains("href=\"https%3Aevil.example\""));
        assert_eq!(json[0], "javascript%3Aalert%28document.domain%29");
        assert_eq!(json[5], "x%27y%28z%29%22%3Cw%3E%26v");
        // Each href decodes back to its name, so the link still leads to the file.
        for (href, name) in json.iter().zip(names) {
            let path = crate::url::decode_path(&format!("/{href}")).unwrap();
            assert_eq!(path.segments, [name.to_vec()], "{href}");
        }
    }

    #[test]
    fn times_are_clamped_to_1970_and_now() {
        let day = Duration::from_secs(86_400);
        let now = UNIX_EPOCH + Duration::from_millis(784_111_777_700);
        let mut entries = [
            entry(b"old", false, 1),
            entry(b"future", false, 1),
            entry(b"now", false, 1),
            entry(b"none", false, 1),
        ];
        entries[0].modified = Some(UNIX_EPOCH - 3653 * day);
        entries[1].modified = Some(UNIX_EPOCH + 47_482 * day); // 2100
        entries[3].modified = None;
        clamp_times(&mut entries, now);
        let second = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(entries[0].modified, Some(UNIX_EPOCH));
        assert_eq!(entries[1].modified, Some(second));
        assert_eq!(entries[2].modified, Some(second));
        assert_eq!(entries[3].modified, None);
        let text = String::from_utf8(json(&entries)).unwrap();
        assert!(
            text.contains("\"mtime\":\"1970-01-01T00:00:00Z\""),
            "{text}"
        );
        assert!(
            text.contains("\"mtime\":\"1994-11-06T08:49:37Z\""),
            "{text}"
        );
        assert!(text.contains("\"mtime\":null"), "{text}");
        let page = String::from_utf8(html(&[], &entries, false)).unwrap();
        assert!(page.contains("<td>1970-01-01 00:00</td>"), "{page}");
        assert!(!page.contains("2100"), "{page}");
        // Unclamped, a time before 1970 still renders as the epoch rather than failing.
        assert_eq!(utc(UNIX_EPOCH - day, 'T'), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn json_is_escaped() {
        let entries = [entry(b"q\"\\\n.txt", false, 3), entry(b"sub", true, 0)];
        let text = String::from_utf8(json(&entries)).unwrap();
        assert_eq!(
            text,
            "[{\"name\":\"q\\\"\\\\\\u000a.txt\",\"type\":\"file\",\"size\":3,\"mtime\":\"1994-11-06T08:49:37Z\",\"href\":\"q%22%5C%0A.txt\"},\
             {\"name\":\"sub\",\"type\":\"dir\",\"size\":0,\"mtime\":\"1994-11-06T08:49:37Z\",\"href\":\"sub/\"}]\n"
        );
        assert_eq!(json(&[]), b"[]\n");
    }
}
