//! URL ⇄ path segments: split a request target into path and query, percent-decode it
//! strictly, refuse traversal and dotfiles segment by segment, and re-encode decoded segments
//! for a `Location` or a listing link. Pure: never touches the filesystem.
//! May use: error, percent-encoding.

use percent_encoding::{percent_encode, AsciiSet, CONTROLS};

use crate::error::HttpError;

/// The path and query of a request target.
#[derive(Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// Still percent-encoded, starting with `/`.
    pub path: &'a str,
    pub query: Option<&'a str>,
}

/// A decoded path that passed every check: no `.`/`..` segment, NUL or backslash, no dotfile
/// outside `/.well-known/`.
#[derive(Debug, PartialEq, Eq)]
pub struct SafePath {
    /// Decoded segments, relative to the root, empty ones dropped.
    pub segments: Vec<Vec<u8>>,
    /// The URL ended in `/` (a directory is expected).
    pub trailing_slash: bool,
}

/// Splits a request target into path and query. Accepts origin-form (`/a?b`) and
/// absolute-form (`http://host/a?b`, RFC 9112 §3.2.2); anything else is a 400.
pub fn split_target(target: &str) -> Result<Target<'_>, HttpError> {
    let path_and_query = if target.starts_with('/') {
        target
    } else {
        let rest = strip_scheme(target).ok_or(HttpError::BadRequest("unsupported target"))?;
        // The authority runs to the first '/', '?' or '#'; an empty path means "/".
        let end = rest.find(['/', '?', '#']);
        // RFC 9110 §4.2.4: userinfo in an http(s) URI must not be sent; a recipient treats its
        // presence as an error (it is used to obscure the authority, `http://bank@evil/`).
        if rest[..end.unwrap_or(rest.len())].contains('@') {
            return Err(HttpError::BadRequest("userinfo in target"));
        }
        match end {
            Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
            _ => "/",
        }
    };
    let path_and_query = path_and_query
        .split_once('#')
        .map_or(path_and_query, |(before, _)| before);
    Ok(match path_and_query.split_once('?') {
        Some((path, query)) => Target {
            path,
            query: Some(query),
        },
        None => Target {
            path: path_and_query,
            query: None,
        },
    })
}

fn strip_scheme(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once("://")?;
    (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")).then_some(rest)
}

/// Percent-decodes `path` and checks every segment. Rejects, never repairs: `..`, `.`, NUL and
/// backslash are 400; a dotfile or dot-directory is 404 (except under `/.well-known/`).
pub fn decode_path(path: &str) -> Result<SafePath, HttpError> {
    if !path.starts_with('/') {
        return Err(HttpError::BadRequest("path must start with /"));
    }
    // Decoding never lengthens, so a short path decodes on the stack: a request costs only
    // the segments it keeps.
    let mut stack = [0; 256];
    let mut heap = Vec::new();
    let out = if path.len() <= stack.len() {
        &mut stack[..path.len()]
    } else {
        heap.resize(path.len(), 0);
        &mut heap[..]
    };
    let len = percent_decode(path.as_bytes(), out)?;
    let decoded = &out[..len];
    if decoded.contains(&0) {
        return Err(HttpError::BadRequest("NUL in path"));
    }
    if decoded.contains(&b'\\') {
        return Err(HttpError::BadRequest("backslash in path"));
    }
    let mut hidden = false;
    let mut segments: Vec<Vec<u8>> = Vec::new();
    for segment in decoded.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
        if segment == b"." || segment == b".." {
            return Err(HttpError::BadRequest("dot segment in path"));
        }
        let well_known = segments.is_empty() && segment == b".well-known";
        hidden |= segment.starts_with(b".") && !well_known;
        segments.push(segment.to_vec());
    }
    if hidden {
        return Err(HttpError::NotFound);
    }
    Ok(SafePath {
        segments,
        trailing_slash: decoded.ends_with(b"/"),
    })
}

/// Strict percent-decoding: `%` must be followed by two hex digits. (The `percent-encoding`
/// crate passes bad escapes through unchanged, and we want those to be a 400.) Writes into
/// `out`, at least as long as `input`, and returns the decoded length.
fn percent_decode(input: &[u8], out: &mut [u8]) -> Result<usize, HttpError> {
    let mut len = 0;
    let mut bytes = input.iter();
    while let Some(&b) = bytes.next() {
        let byte = if b == b'%' {
            let hi = bytes.next().and_then(|&h| (h as char).to_digit(16));
            let lo = bytes.next().and_then(|&l| (l as char).to_digit(16));
            match (hi, lo) {
                (Some(hi), Some(lo)) => (hi * 16 + lo) as u8,
                _ => return Err(HttpError::BadRequest("invalid percent-encoding")),
            }
        } else {
            b
        };
        // Each output byte consumes at least one input byte, so `len` stays in bounds.
        let Some(slot) = out.get_mut(len) else {
            return Err(HttpError::Internal);
        };
        *slot = byte;
        len += 1;
    }
    Ok(len)
}

/// Bytes escaped when a decoded segment goes back into a URL (a `Location`, a listing href).
/// `:` because a relative reference whose first segment has one is read as a scheme
/// (RFC 3986 §4.2): a file named `javascript:alert(1)` must not become a script link, nor
/// `https:evil.example` an off-site one (`/` is escaped too, so no `//` network-path).
/// `&`, `'`, `(` and `)` are harmless in a path but not in every place a link is pasted
/// (HTML attributes, JavaScript strings), so they go too (nginx escapes the parentheses).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'\'')
    .add(b'(')
    .add(b')')
    .add(b'/')
    .add(b':')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Percent-encodes one decoded path segment for use in a URL.
pub fn encode_segment(segment: &[u8]) -> String {
    percent_encode(segment, SEGMENT).to_string()
}

/// Rebuilds a URL path from decoded segments, so a redirect never repeats raw client bytes
/// (and `//evil.example` can never become a protocol-relative `Location`).
pub fn encode_path(segments: &[Vec<u8>], trailing_slash: bool) -> String {
    let mut url = String::from("/");
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            url.push('/');
        }
        url.extend(percent_encode(segment, SEGMENT));
    }
    if trailing_slash && !segments.is_empty() {
        url.push('/');
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let table = [
            ("/a/b?x=1", "/a/b", Some("x=1")),
            ("/a/b", "/a/b", None),
            ("/?", "/", Some("")),
            ("/a#frag", "/a", None),
            ("http://host/a/b?q", "/a/b", Some("q")),
            ("HTTP://host:8080/x", "/x", None),
            ("https://host", "/", None),
            ("http://host?q", "/", None),
            // An `@` after the authority is just a path or query byte.
            ("http://host/a@b?c@d", "/a@b", Some("c@d")),
        ];
        for (target, path, query) in table {
            assert_eq!(split_target(target), Ok(Target { path, query }), "{target}");
        }
        for bad in [
            "*",
            "a/b",
            "ftp://host/a",
            "host:80",
            "http:/x",
            "http://user:pw@evil/hello.txt",
            "https://user@evil",
            "http://@evil?q",
        ] {
            assert_eq!(
                split_target(bad).map_err(HttpError::status),
                Err(400),
                "{bad}"
            );
        }
    }

    fn decoded(path: &str) -> Result<(Vec<&'static str>, bool), u16> {
        decode_path(path)
            .map(|safe| {
                let segments = safe
                    .segments
                    .iter()
                    .map(|s| &*String::from_utf8_lossy(s).into_owned().leak())
                    .collect();
                (segments, safe.trailing_slash)
            })
            .map_err(HttpError::status)
    }

    #[test]
    fn safe_paths() {
        let table: &[(&str, &[&str], bool)] = &[
            ("/", &[], true),
            ("/index.html", &["index.html"], false),
            ("/dir/", &["dir"], true),
            ("/a//b", &["a", "b"], false),
            ("/with%20space.txt", &["with space.txt"], false),
            ("/%69%6E%64%65%78.html", &["index.html"], false),
            ("/text..txt", &["text..txt"], false),
            ("/a..", &["a.."], false),
            ("/%252e%252e/x", &["%2e%2e", "x"], false),
            ("/.well-known/acme", &[".well-known", "acme"], false),
            ("/caf%C3%A9", &["café"], false),
            ("/a%2fb", &["a", "b"], false),
        ];
        for (path, segments, slash) in table {
            assert_eq!(decoded(path), Ok((segments.to_vec(), *slash)), "{path}");
        }
    }

    #[test]
    fn traversal_and_hidden_paths_are_refused() {
        let table = [
            ("/../etc/passwd", 400),
            ("/a/../../etc/passwd", 400),
            ("/..", 400),
            ("/.", 400),
            ("/./index.html", 400),
            ("/%2e%2e/etc/passwd", 400),
            ("/%2E%2E/etc/passwd", 400),
            ("/..%2fetc/passwd", 400),
            ("/..%2Fetc%2Fpasswd", 400),
            ("/%2e%2e%2fetc%2fpasswd", 400),
            ("/..%5cetc", 400),
            ("/a%5c..%5cb", 400),
            ("/a\\b", 400),
            ("/a%00.html", 400),
            ("/%zz", 400),
            ("/%4", 400),
            ("/%", 400),
            ("/%%30", 400),
            ("/.git/config", 404),
            ("/.env", 404),
            ("/dir/.hidden", 404),
            ("/..a", 404),
            ("/.well-known/.secret", 404),
            ("/a/.well-known/x", 404),
            ("relative", 400),
        ];
        for (path, status) in table {
            assert_eq!(decoded(path), Err(status), "{path}");
        }
        // Absolute-form with `..` is refused the same way once split.
        let target = split_target("http://host/../etc/passwd").unwrap();
        assert_eq!(decoded(target.path), Err(400));
    }

    #[test]
    fn encoded_paths_round_trip() {
        let segments = vec![b"a b".to_vec(), b"caf\xc3\xa9".to_vec(), b"%?#".to_vec()];
        let url = encode_path(&segments, true);
        assert_eq!(url, "/a%20b/caf%C3%A9/%25%3F%23/");
        let back = decode_path(&url).unwrap();
        assert_eq!(back.segments, segments);
        assert_eq!(encode_path(&[], true), "/");
        assert_eq!(
            encode_path(&[b"evil.example".to_vec()], true),
            "/evil.example/"
        );
    }
}
