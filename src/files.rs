//! URL path → file decision: split the target, percent-decode strictly, refuse traversal,
//! dotfiles and symlinks out of the root, find index files, open only regular files. The only
//! module that turns a URL into a filesystem path. May use: error, std::fs.

use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use percent_encoding::{percent_encode, AsciiSet, CONTROLS};

use crate::error::HttpError;
use crate::listing::Entry;
use crate::negotiate::Coding;

/// The file served for a directory URL ending in `/`.
pub const INDEX: &str = "index.html";

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

/// The most entries a directory listing shows.
pub const MAX_LISTING: usize = 10_000;

/// What a safe path leads to.
#[derive(Debug)]
pub enum Resolved {
    /// A regular file, open, with its metadata, its type (from the requested name) and its
    /// real path (where precompressed variants are looked for).
    File {
        file: File,
        meta: Metadata,
        content_type: &'static str,
        real: PathBuf,
    },
    /// A directory (asked for with its slash) that has no index file, with its metadata.
    Directory { real: PathBuf, meta: Metadata },
    /// A directory asked for without its slash: the `Location` to send with a 301.
    Redirect(String),
}

/// Splits a request target into path and query. Accepts origin-form (`/a?b`) and
/// absolute-form (`http://host/a?b`, RFC 9112 §3.2.2); anything else is a 400.
pub fn split_target(target: &str) -> Result<Target<'_>, HttpError> {
    let path_and_query = if target.starts_with('/') {
        target
    } else {
        let rest = strip_scheme(target).ok_or(HttpError::BadRequest("unsupported target"))?;
        // The authority runs to the first '/', '?' or '#'; an empty path means "/".
        match rest.find(['/', '?', '#']) {
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
    let decoded = percent_decode(path.as_bytes())?;
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
/// crate passes bad escapes through unchanged, and we want those to be a 400.)
fn percent_decode(input: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(|&h| (h as char).to_digit(16));
            let lo = bytes.next().and_then(|&l| (l as char).to_digit(16));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                _ => return Err(HttpError::BadRequest("invalid percent-encoding")),
            }
        } else {
            out.push(b);
        }
    }
    Ok(out)
}

/// Bytes escaped when a decoded segment goes back into a URL (a `Location`, a listing href).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
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

/// Finds what `path` names under `root` (canonical, resolved once at start-up). Symlinks are
/// followed only while they stay under the root; only regular files are opened.
pub fn resolve(root: &Path, path: &SafePath, query: Option<&str>) -> Result<Resolved, HttpError> {
    let mut full = root.to_path_buf();
    for segment in &path.segments {
        full.push(OsStr::from_bytes(segment));
    }
    let (file, meta, real) = open_under(root, &full)?;
    if meta.is_dir() {
        if !path.trailing_slash {
            let mut location = encode_path(&path.segments, true);
            if let Some(query) = query {
                location.push('?');
                location.push_str(query);
            }
            return Ok(Resolved::Redirect(location));
        }
        let index = real.join(INDEX);
        if index.symlink_metadata().is_err() {
            return Ok(Resolved::Directory { real, meta });
        }
        // An index that exists but leads out of the root is refused like any other path.
        let (file, meta, index_real) = open_under(root, &index)?;
        return regular(file, meta, INDEX.as_ref(), index_real);
    }
    if path.trailing_slash {
        // `/file.html/` names a directory that isn't one.
        return Err(HttpError::NotFound);
    }
    let name = path
        .segments
        .last()
        .map_or(OsStr::new(""), |s| OsStr::from_bytes(s));
    regular(file, meta, name.as_ref(), real)
}

/// The precompressed variants that sit beside `real` (`real.br`, `real.gz`). Only regular
/// files count, not symlinks, so a variant is always in the same directory as the file
/// and can never lead out of the root. Two `lstat`s, no opens.
pub fn variants(real: &Path) -> Vec<Coding> {
    [Coding::Br, Coding::Gzip]
        .into_iter()
        .filter(|coding| {
            variant_path(real, *coding)
                .symlink_metadata()
                .is_ok_and(|meta| meta.is_file())
        })
        .collect()
}

/// Opens the `coding` variant of `real` found by [`variants`].
pub fn open_variant(real: &Path, coding: Coding) -> Result<(File, Metadata), HttpError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(variant_path(real, coding))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(HttpError::Forbidden);
    }
    Ok((file, meta))
}

fn variant_path(real: &Path, coding: Coding) -> PathBuf {
    let mut name = real.as_os_str().to_owned();
    name.push(coding.suffix());
    PathBuf::from(name)
}

/// The visible entries of directory `real` for a listing: no dotfiles, only directories and
/// regular files, symlinks only when they stay under `root`. Reads metadata, never contents.
/// Returns at most [`MAX_LISTING`] entries and whether more were left out.
pub fn read_dir(root: &Path, real: &Path) -> Result<(Vec<Entry>, bool), HttpError> {
    let mut entries = Vec::new();
    let mut truncated = false;
    for item in std::fs::read_dir(real)? {
        let Ok(item) = item else { continue };
        let name = item.file_name().as_bytes().to_vec();
        if name.starts_with(b".") {
            continue;
        }
        let Ok(kind) = item.file_type() else { continue };
        let path = item.path();
        if kind.is_symlink()
            && !path
                .canonicalize()
                .is_ok_and(|target| target.starts_with(root))
        {
            continue;
        }
        // Follows an inside symlink to describe what it points to.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_dir() && !meta.is_file() {
            continue;
        }
        if entries.len() == MAX_LISTING {
            truncated = true;
            break;
        }
        entries.push(Entry {
            name,
            is_dir: meta.is_dir(),
            size: if meta.is_dir() { 0 } else { meta.len() },
            modified: meta.modified().ok(),
        });
    }
    Ok((entries, truncated))
}

/// Canonicalises `full`, refuses it unless it lies under `root`, then opens it. O_NONBLOCK
/// means a FIFO swapped in after the check cannot hang the worker in `open`.
fn open_under(root: &Path, full: &Path) -> Result<(File, Metadata, PathBuf), HttpError> {
    let real = full.canonicalize()?;
    if !real.starts_with(root) {
        log::debug!("refused {}: outside the root", full.display());
        return Err(HttpError::NotFound);
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&real)?;
    let meta = file.metadata()?;
    Ok((file, meta, real))
}

fn regular(file: File, meta: Metadata, name: &Path, real: PathBuf) -> Result<Resolved, HttpError> {
    if !meta.is_file() {
        return Err(HttpError::Forbidden);
    }
    Ok(Resolved::File {
        file,
        meta,
        content_type: content_type(name),
        real,
    })
}

/// The media type for a file name, from its extension; unknown → `application/octet-stream`.
pub fn content_type(name: &Path) -> &'static str {
    mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream")
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
        ];
        for (target, path, query) in table {
            assert_eq!(split_target(target), Ok(Target { path, query }), "{target}");
        }
        for bad in ["*", "a/b", "ftp://host/a", "host:80", "http:/x"] {
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

    #[test]
    fn content_types() {
        let table = [
            ("a.html", "text/html"),
            ("a.htm", "text/html"),
            ("a.css", "text/css"),
            ("a.jpg", "image/jpeg"),
            ("a.jpeg", "image/jpeg"),
            ("a.JPG", "image/jpeg"),
            ("a.png", "image/png"),
            ("a.gif", "image/gif"),
            ("a.swf", "application/x-shockwave-flash"),
            ("a.txt", "text/plain"),
            ("a.unknownext", "application/octet-stream"),
            ("noext", "application/octet-stream"),
        ];
        for (name, expected) in table {
            assert_eq!(content_type(Path::new(name)), expected, "{name}");
        }
        let js = content_type(Path::new("a.js"));
        assert!(
            js == "text/javascript" || js == "application/javascript",
            "{js}"
        );
    }
}
