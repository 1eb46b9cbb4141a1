//! URL path → open file: split the target, percent-decode strictly, refuse traversal and
//! dotfiles, then open beneath the root's descriptor so nothing outside the root can be
//! reached (openat2 RESOLVE_BENEATH, or a component walk where that is missing); index files,
//! precompressed variants, directory entries. The only module that turns a URL into an open
//! file. May use: error, negotiate, listing, sys.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr};
use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use percent_encoding::{percent_encode, AsciiSet, CONTROLS};

use crate::error::HttpError;
use crate::listing::Entry;
use crate::negotiate::Coding;
use crate::sys::{self, Kind};

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
    /// A regular file, open, with its metadata (fstat of that descriptor), its type (from the
    /// requested name) and its path from the root (where precompressed variants are looked
    /// for: beside the name asked for).
    File {
        file: File,
        meta: Metadata,
        content_type: &'static str,
        rel: RelPath,
    },
    /// A directory (asked for with its slash) that has no index file: open for reading (a
    /// listing reads this descriptor), its metadata, and its path from the root.
    Directory {
        dir: File,
        meta: Metadata,
        rel: RelPath,
    },
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

/// How paths are resolved beneath the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// `openat2(2)` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` relative to the root's
    /// descriptor (Linux ≥ 5.6): the kernel refuses, during the one lookup, anything that
    /// would leave the root, so there is no window between a check and the open.
    Openat2,
    /// Where `openat2` is missing (ENOSYS) or filtered (EPERM under seccomp): one component
    /// at a time with `openat(O_PATH | O_NOFOLLOW)`, symlinks read and resolved here with the
    /// same rules (no absolute targets, no `..` above the root, at most [`MAX_LINKS`]).
    Walk,
}

/// The most symlinks one lookup follows in [`Resolution::Walk`]: the kernel's own limit
/// before ELOOP (path_resolution(7)).
pub const MAX_LINKS: usize = 40;

/// How often a lookup is retried on EAGAIN/EINTR. openat2 answers EAGAIN when a rename
/// elsewhere raced with `..` resolution (openat2(2), RESOLVE_BENEATH); a few tries settle it,
/// an endless stream of renames gets a 503.
const RETRIES: usize = 8;

/// openat2's restrictions for every lookup: stay beneath the root, and no /proc magic links
/// (which jump anywhere regardless of the path).
const BENEATH: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;

/// Flags for opening what a client asked for: read-only; O_NONBLOCK so a FIFO cannot hang a
/// worker in open(2); O_NOCTTY so a terminal device can never become ours. (O_CLOEXEC is
/// added by [`sys`].)
const READ: i32 = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;

/// The document root, opened once at start-up: every lookup is relative to this descriptor
/// (`O_PATH | O_DIRECTORY`), never to a path string, so renaming things around the root (or
/// the root itself) cannot redirect a lookup. Cheap to clone.
#[derive(Clone)]
pub struct Root {
    fd: Arc<OwnedFd>,
    path: PathBuf,
    resolution: Resolution,
    /// Which resolution, and why, for the start-up log line.
    note: Arc<str>,
}

impl fmt::Debug for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Root")
            .field("path", &self.path)
            .field("resolution", &self.resolution)
            .finish()
    }
}

impl Root {
    /// Opens the directory at `path` (canonical) with the best resolution this kernel offers,
    /// probed once per process and logged once.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = open_dir(path)?;
        let (resolution, note) = probe(fd.as_fd());
        Ok(Root {
            fd: Arc::new(fd),
            path: path.to_path_buf(),
            resolution: *resolution,
            note: Arc::clone(note),
        })
    }

    /// As [`Root::open`] with a chosen resolution (tests use both).
    pub fn open_with(path: &Path, resolution: Resolution) -> io::Result<Root> {
        let note = match resolution {
            Resolution::Openat2 => OPENAT2,
            Resolution::Walk => "path resolution by component walk (chosen)",
        };
        Ok(Root {
            fd: Arc::new(open_dir(path)?),
            path: path.to_path_buf(),
            resolution,
            note: note.into(),
        })
    }

    /// The path the root was opened at (for messages and start-up reads only: lookups use
    /// the descriptor).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn resolution(&self) -> Resolution {
        self.resolution
    }

    /// One line saying how paths are resolved and, for the walk, why: for the log at
    /// start-up (`main` writes it once the server has bound, so a bad command line still
    /// fails with a single line).
    pub fn resolution_note(&self) -> &str {
        &self.note
    }

    /// Opens `rel` beneath the root with `flags`, retrying a lookup that a concurrent rename
    /// interrupted (bounded). Nothing outside the root is ever opened: leaving it is EXDEV
    /// (or ELOOP for a loop or a magic link).
    fn open_beneath(&self, rel: &RelPath, flags: i32) -> io::Result<OwnedFd> {
        let mut tries = 0;
        loop {
            let result = match self.resolution {
                Resolution::Openat2 => sys::openat2(self.fd.as_fd(), &rel.0, flags, BENEATH),
                Resolution::Walk => walk(self.fd.as_fd(), rel.0.as_bytes(), flags),
            };
            match result {
                Err(err)
                    if matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EINTR))
                        && tries < RETRIES =>
                {
                    tries += 1;
                }
                result => return result,
            }
        }
    }

    /// Opens `rel` for reading and describes what was opened (fstat on the descriptor, so
    /// the answer is about the very file we hold).
    fn open_file(&self, rel: &RelPath) -> io::Result<(File, Metadata)> {
        let file = File::from(self.open_beneath(rel, READ)?);
        let meta = file.metadata()?;
        Ok((file, meta))
    }
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(path)?;
    Ok(file.into())
}

const OPENAT2: &str = "path resolution: openat2 (kernel-enforced, RESOLVE_BENEATH)";

/// Whether openat2 works here, asked once per process with a harmless lookup of the root
/// itself; with the line that says so.
fn probe(root: BorrowedFd<'_>) -> &'static (Resolution, Arc<str>) {
    static PROBED: OnceLock<(Resolution, Arc<str>)> = OnceLock::new();
    PROBED.get_or_init(|| match openat2_probe(root) {
        Ok(_) => (Resolution::Openat2, OPENAT2.into()),
        Err(err) => (
            Resolution::Walk,
            format!("openat2 unavailable ({err}): path resolution by component walk").into(),
        ),
    })
}

fn openat2_probe(root: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // Test-only (tests/fault.rs): act as if the kernel lacked openat2, to run the walk end to
    // end.
    #[cfg(feature = "fault-injection")]
    if std::env::var_os("HTTPD_FAULT_NO_OPENAT2").is_some() {
        return Err(io::Error::other("disabled by HTTPD_FAULT_NO_OPENAT2"));
    }
    sys::openat2(root, c".", libc::O_PATH, BENEATH)
}

/// [`Resolution::Walk`]: resolves `rel` one component at a time from `root`, holding a
/// descriptor for each directory on the way. Every component is opened with `O_NOFOLLOW`, so
/// a symlink is never followed by the kernel: its target is read (`readlinkat`) and its parts
/// take its place. An absolute target, or a `..` with nothing left to climb, is EXDEV (what
/// RESOLVE_BENEATH answers); more than [`MAX_LINKS`] symlinks is ELOOP. `..` pops our own
/// stack of descriptors, never asks the filesystem, so the walk never leaves the root.
fn walk(root: BorrowedFd<'_>, rel: &[u8], flags: i32) -> io::Result<OwnedFd> {
    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    push_components(&mut pending, rel);
    let mut dirs: Vec<OwnedFd> = Vec::new();
    let mut links = 0;
    loop {
        let here = dirs.last().map_or(root, |fd| fd.as_fd());
        let Some(name) = pending.pop_front() else {
            // Nothing left after `.` or `..`: the path names the directory we are in.
            return sys::openat(here, c".", flags);
        };
        match name.as_slice() {
            b"." => continue,
            b".." => {
                if dirs.pop().is_none() {
                    return Err(io::Error::from_raw_os_error(libc::EXDEV));
                }
                continue;
            }
            _ => {}
        }
        let last = pending.is_empty();
        let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let target = if last && flags & libc::O_PATH == 0 {
            // The final open is the real one, still O_NOFOLLOW: ELOOP means the entry is a
            // symlink (or just became one), to be resolved here like any other.
            match sys::openat(here, &cname, flags | libc::O_NOFOLLOW) {
                Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
                    match sys::readlinkat(here, &cname) {
                        Ok(target) => target,
                        // No longer a symlink: look again (counted, so a flapping entry ends).
                        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                            follow(&mut links)?;
                            pending.push_front(cname.into_bytes());
                            continue;
                        }
                        Err(err) => return Err(err),
                    }
                }
                result => return result,
            }
        } else {
            // O_PATH opens nothing (no FIFO can block, no device is touched); fstat says what
            // the entry is, and readlinkat on the same descriptor reads that very symlink.
            let entry = File::from(sys::openat(here, &cname, libc::O_PATH | libc::O_NOFOLLOW)?);
            let kind = entry.metadata()?.file_type();
            if kind.is_symlink() {
                sys::readlinkat(entry.as_fd(), c"")?
            } else if last {
                return Ok(entry.into());
            } else if kind.is_dir() {
                dirs.push(entry.into());
                continue;
            } else {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
        };
        follow(&mut links)?;
        if target.starts_with(b"/") {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        if target.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        // The target's parts come next, resolved from the directory holding the symlink.
        let mut parts = VecDeque::new();
        push_components(&mut parts, &target);
        parts.append(&mut pending);
        pending = parts;
    }
}

/// Counts one more symlink followed; past [`MAX_LINKS`] the lookup is ELOOP.
fn follow(links: &mut usize) -> io::Result<()> {
    *links += 1;
    if *links > MAX_LINKS {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    Ok(())
}

/// Appends the components of `path` to `out`: empty ones dropped, and a trailing `/` kept as
/// a final `.` so the name before it must be a directory.
fn push_components(out: &mut VecDeque<Vec<u8>>, path: &[u8]) {
    out.extend(
        path.split(|&b| b == b'/')
            .filter(|part| !part.is_empty())
            .map(<[u8]>::to_vec),
    );
    if path.ends_with(b"/") {
        out.push_back(b".".to_vec());
    }
}

/// A path relative to the root: decoded segments joined by `/` (`.` for the root itself),
/// ready for a system call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelPath(CString);

impl RelPath {
    /// Joins checked segments. Refuses (400) a segment no URL could have produced, so a
    /// hand-built [`SafePath`] cannot smuggle in `..` or a `/`.
    pub fn from_segments(segments: &[Vec<u8>]) -> Result<RelPath, HttpError> {
        let mut joined = Vec::new();
        for segment in segments {
            if segment.is_empty()
                || segment == b"."
                || segment == b".."
                || segment.contains(&b'/')
                || segment.contains(&0)
            {
                return Err(HttpError::BadRequest("unsafe path segment"));
            }
            if !joined.is_empty() {
                joined.push(b'/');
            }
            joined.extend_from_slice(segment);
        }
        if joined.is_empty() {
            joined.push(b'.');
        }
        CString::new(joined)
            .map(RelPath)
            .map_err(|_| HttpError::BadRequest("NUL in path"))
    }

    /// `self/name`, for a name from a directory (no `/`, no NUL).
    fn join(&self, name: &[u8]) -> Option<RelPath> {
        if name.contains(&b'/') {
            return None;
        }
        let mut joined = match self.as_bytes() {
            b"." => Vec::with_capacity(name.len() + 1),
            bytes => [bytes, b"/"].concat(),
        };
        joined.extend_from_slice(name);
        CString::new(joined).ok().map(RelPath)
    }

    /// `self` with `suffix` appended to its last name (`a/b.html` → `a/b.html.gz`).
    fn with_suffix(&self, suffix: &str) -> Option<RelPath> {
        CString::new([self.as_bytes(), suffix.as_bytes()].concat())
            .ok()
            .map(RelPath)
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Finds what `path` names beneath `root`: one lookup under [`Root`]'s rules and an fstat
/// of what it opened. Symlinks inside the root work; anything leading out is 404. Only
/// regular files are served.
pub fn resolve(root: &Root, path: &SafePath, query: Option<&str>) -> Result<Resolved, HttpError> {
    let rel = RelPath::from_segments(&path.segments)?;
    let (file, meta) = root.open_file(&rel).map_err(|err| refused(err, &rel))?;
    if meta.is_dir() {
        if !path.trailing_slash {
            let mut location = encode_path(&path.segments, true);
            if let Some(query) = query {
                location.push('?');
                location.push_str(query);
            }
            return Ok(Resolved::Redirect(location));
        }
        // The index by its full path from the root, not from the directory's descriptor: an
        // index that is a symlink elsewhere in the root works, one leading out is 404.
        let index = rel
            .join(INDEX.as_bytes())
            .ok_or(HttpError::BadRequest("unsafe path segment"))?;
        return match root.open_file(&index) {
            Ok((file, meta)) => regular(file, meta, INDEX.as_ref(), index),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Resolved::Directory {
                dir: file,
                meta,
                rel,
            }),
            Err(err) => Err(refused(err, &index)),
        };
    }
    if path.trailing_slash {
        // `/file.html/` names a directory that isn't one.
        return Err(HttpError::NotFound);
    }
    let name = path
        .segments
        .last()
        .map_or(OsStr::new(""), |s| OsStr::from_bytes(s));
    regular(file, meta, name.as_ref(), rel)
}

/// The status for a failed lookup of `rel`. Leaving the root (EXDEV) and symlink loops or
/// magic links (ELOOP) look like a missing file; the reason goes to the debug log.
fn refused(err: io::Error, rel: &RelPath) -> HttpError {
    match err.raw_os_error() {
        Some(libc::EXDEV) => {
            log::debug!("refused /{rel}: leads out of the root");
            HttpError::NotFound
        }
        Some(libc::ELOOP) => {
            log::debug!("refused /{rel}: symlink loop or magic link");
            HttpError::NotFound
        }
        // open(2) on a socket is ENXIO, on a device without a driver ENXIO/ENODEV: not a
        // regular file, so the same 403 as a FIFO.
        Some(libc::ENXIO | libc::ENODEV) => HttpError::Forbidden,
        // Still racing with renames after RETRIES tries.
        Some(libc::EAGAIN) => {
            log::warn!("lookup of /{rel} kept racing with renames: {err}");
            HttpError::Unavailable
        }
        Some(libc::EINTR) => {
            log::warn!("lookup of /{rel} kept being interrupted: {err}");
            HttpError::Internal
        }
        _ => HttpError::from(err),
    }
}

/// A precompressed variant of a file, open, found by [`variants`].
#[derive(Debug)]
pub struct Variant {
    pub coding: Coding,
    pub file: File,
    pub meta: Metadata,
}

/// The precompressed variants beside `rel` (`rel.br`, `rel.gz`), opened beneath the root
/// like any request (a variant that is a symlink inside the root works; one leading out does
/// not count). Only regular files count. One lookup each, which is also the existence test.
pub fn variants(root: &Root, rel: &RelPath) -> Vec<Variant> {
    [Coding::Br, Coding::Gzip]
        .into_iter()
        .filter_map(|coding| {
            let rel = rel.with_suffix(coding.suffix())?;
            let (file, meta) = root.open_file(&rel).ok()?;
            meta.is_file().then_some(Variant { coding, file, meta })
        })
        .collect()
}

/// The visible entries of the directory open as `dir` (at `rel` under the root), read through
/// that descriptor: no dotfiles, only directories and regular files, symlinks only when they
/// resolve beneath the root (looked up under [`Root`]'s rules, `O_PATH`). Reads metadata,
/// never contents. Returns at most [`MAX_LISTING`] entries and whether more were left out.
pub fn read_dir(root: &Root, dir: &File, rel: &RelPath) -> Result<(Vec<Entry>, bool), HttpError> {
    let mut entries = Vec::new();
    let mut truncated = false;
    for item in sys::DirStream::new(dir.as_fd())? {
        let item = item?;
        // Hidden, and names the request decoder refuses (a backslash is a 400): never link
        // to what cannot be fetched.
        if item.name.starts_with(b".") || item.name.contains(&b'\\') {
            continue;
        }
        let Some(entry) = describe(root, dir, rel, item) else {
            continue;
        };
        if entries.len() == MAX_LISTING {
            truncated = true;
            break;
        }
        entries.push(entry);
    }
    Ok((entries, truncated))
}

/// One listing entry, or `None` if it is not shown.
fn describe(root: &Root, dir: &File, rel: &RelPath, item: sys::DirEntry) -> Option<Entry> {
    let mut kind = item.kind;
    let name = CString::new(item.name).ok()?;
    if matches!(kind, Kind::File | Kind::Dir | Kind::Unknown) {
        let stat = sys::fstatat_nofollow(dir.as_fd(), &name).ok()?;
        kind = stat.kind;
        if matches!(kind, Kind::File | Kind::Dir) {
            return Some(Entry {
                name: name.into_bytes(),
                is_dir: kind == Kind::Dir,
                size: if kind == Kind::Dir { 0 } else { stat.size },
                modified: stat.modified,
            });
        }
    }
    if kind != Kind::Symlink {
        return None;
    }
    // A symlink is described by what it leads to, and only if that is beneath the root.
    let target = rel.join(name.as_bytes())?;
    let fd = root.open_beneath(&target, libc::O_PATH).ok()?;
    let meta = File::from(fd).metadata().ok()?;
    (meta.is_dir() || meta.is_file()).then(|| Entry {
        name: name.into_bytes(),
        is_dir: meta.is_dir(),
        size: if meta.is_dir() { 0 } else { meta.len() },
        modified: meta.modified().ok(),
    })
}

fn regular(file: File, meta: Metadata, name: &Path, rel: RelPath) -> Result<Resolved, HttpError> {
    if !meta.is_file() {
        return Err(HttpError::Forbidden);
    }
    Ok(Resolved::File {
        file,
        meta,
        content_type: content_type(name),
        rel,
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

    /// A temporary tree: `root/` with symlinks that stay inside and ones that lead out to
    /// `outside/`. Removed on drop.
    struct Tree(PathBuf);

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tree(tag: &str) -> Tree {
        use std::os::unix::fs::symlink;
        let base = std::env::temp_dir().join(format!("httpd-files-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        for dir in ["outside/dir", "root/dir/sub"] {
            std::fs::create_dir_all(base.join(dir)).unwrap();
        }
        for (file, text) in [
            ("outside/secret.txt", "OUTSIDE"),
            ("root/a.txt", "A"),
            ("root/dir/b.txt", "B"),
            ("root/dir/sub/c.txt", "C"),
        ] {
            std::fs::write(base.join(file), text).unwrap();
        }
        let outside = base.join("outside");
        let links: &[(&str, &Path)] = &[
            ("link-file", Path::new("a.txt")),
            ("link-dir", Path::new("dir")),
            ("link-dir-slash", Path::new("dir/")),
            ("chain1", Path::new("chain2")),
            ("chain2", Path::new("link-dir")),
            ("dir/up-file", Path::new("../a.txt")),
            ("dir/sub/up2", Path::new("../../link-file")),
            ("dir/sub/round", Path::new("../sub/../../dir/b.txt")),
            ("file-slash", Path::new("a.txt/")),
            ("out-rel", Path::new("../outside/secret.txt")),
            ("out-dir", Path::new("../outside")),
            ("dir/out-chain", Path::new("../../outside/secret.txt")),
            ("dir/deep", Path::new("../dir/../../outside")),
            ("dir/via-in", Path::new("../out-dir/secret.txt")),
            ("loop-a", Path::new("loop-b")),
            ("loop-b", Path::new("loop-a")),
            ("self", Path::new("self")),
            ("etc", Path::new("/etc")),
            ("dangling", Path::new("nowhere")),
        ];
        for (name, target) in links {
            symlink(target, root.join(name)).unwrap();
        }
        symlink(outside.join("secret.txt"), root.join("out-abs")).unwrap();
        // Absolute, though it names a file inside: RESOLVE_BENEATH refuses every absolute
        // target, and so does the walk.
        symlink(root.join("a.txt"), root.join("abs-in")).unwrap();
        Tree(base)
    }

    /// What one lookup gave: the file's contents, `dir`, or the errno.
    fn lookup(root: &Root, rel: &str) -> Result<String, i32> {
        let rel = RelPath::from_segments(
            &rel.split('/')
                .filter(|s| !s.is_empty())
                .map(|s| s.as_bytes().to_vec())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let (mut file, meta) = root
            .open_file(&rel)
            .map_err(|err| err.raw_os_error().unwrap_or(-1))?;
        if meta.is_dir() {
            return Ok("dir".into());
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text).unwrap();
        Ok(text)
    }

    #[test]
    fn both_resolvers_keep_every_lookup_beneath_the_root() {
        let tree = tree("resolvers");
        let (exdev, eloop) = (libc::EXDEV, libc::ELOOP);
        let table: &[(&str, Result<&str, i32>)] = &[
            ("", Ok("dir")),
            ("a.txt", Ok("A")),
            ("dir", Ok("dir")),
            ("dir/sub/c.txt", Ok("C")),
            ("link-file", Ok("A")),
            ("link-dir", Ok("dir")),
            ("link-dir/b.txt", Ok("B")),
            ("link-dir-slash/b.txt", Ok("B")),
            ("chain1/sub/c.txt", Ok("C")),
            ("dir/up-file", Ok("A")),
            ("dir/sub/up2", Ok("A")),
            ("dir/sub/round", Ok("B")),
            ("link-dir/sub/up2", Ok("A")),
            ("missing", Err(libc::ENOENT)),
            ("dangling", Err(libc::ENOENT)),
            ("a.txt/x", Err(libc::ENOTDIR)),
            ("file-slash", Err(libc::ENOTDIR)),
            ("out-rel", Err(exdev)),
            ("out-abs", Err(exdev)),
            ("abs-in", Err(exdev)),
            ("etc", Err(exdev)),
            ("etc/passwd", Err(exdev)),
            ("out-dir", Err(exdev)),
            ("out-dir/secret.txt", Err(exdev)),
            ("dir/out-chain", Err(exdev)),
            ("dir/deep/secret.txt", Err(exdev)),
            ("dir/via-in", Err(exdev)),
            ("link-dir/out-chain", Err(exdev)),
            ("loop-a", Err(eloop)),
            ("self", Err(eloop)),
            ("self/x", Err(eloop)),
        ];
        let mut resolutions = vec![Resolution::Walk];
        let probe_root = Root::open(&tree.0.join("root")).unwrap();
        if probe_root.resolution() == Resolution::Openat2 {
            resolutions.push(Resolution::Openat2);
        } else {
            eprintln!("openat2 unavailable here: only the component walk is checked");
        }
        for resolution in resolutions {
            let root = Root::open_with(&tree.0.join("root"), resolution).unwrap();
            for (rel, expected) in table {
                let got = lookup(&root, rel);
                assert_eq!(got.as_deref(), expected.as_deref(), "{resolution:?} {rel}");
            }
            // O_PATH lookups (listing entries) follow the same rules.
            for (rel, ok) in [("link-dir", true), ("link-file", true), ("out-dir", false)] {
                let rel = RelPath::from_segments(&[rel.as_bytes().to_vec()]).unwrap();
                assert_eq!(root.open_beneath(&rel, libc::O_PATH).is_ok(), ok, "{rel}");
            }
        }
    }

    #[test]
    fn the_walk_follows_at_most_max_links() {
        use std::os::unix::fs::symlink;
        let tree = tree("links");
        let root_dir = tree.0.join("root");
        // hop0 -> hop1 -> ... -> hopN -> a.txt: N + 1 links.
        let hops = |n: usize| {
            for i in 0..n {
                symlink(
                    format!("hop{}-{n}", i + 1),
                    root_dir.join(format!("hop{i}-{n}")),
                )
                .unwrap();
            }
            symlink("a.txt", root_dir.join(format!("hop{n}-{n}"))).unwrap();
        };
        hops(MAX_LINKS - 1);
        hops(MAX_LINKS);
        let root = Root::open_with(&root_dir, Resolution::Walk).unwrap();
        assert_eq!(
            lookup(&root, &format!("hop0-{}", MAX_LINKS - 1)),
            Ok("A".into())
        );
        assert_eq!(
            lookup(&root, &format!("hop0-{MAX_LINKS}")),
            Err(libc::ELOOP)
        );
    }

    #[test]
    fn resolve_opens_only_what_it_describes() {
        let tree = tree("resolve");
        let root_dir = tree.0.join("root");
        std::fs::write(root_dir.join("dir/index.html"), "I").unwrap();
        let fifo = CString::new(root_dir.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        for resolution in [
            Resolution::Walk,
            Root::open(&root_dir).unwrap().resolution(),
        ] {
            let root = Root::open_with(&root_dir, resolution).unwrap();
            let get = |path: &str| resolve(&root, &decode_path(path).unwrap(), Some("q=1"));
            match get("/dir") {
                Ok(Resolved::Redirect(location)) => assert_eq!(location, "/dir/?q=1"),
                other => panic!("{other:?}"),
            }
            match get("/link-dir/") {
                Ok(Resolved::File {
                    rel, content_type, ..
                }) => {
                    assert_eq!(
                        (rel.as_bytes(), content_type),
                        (&b"link-dir/index.html"[..], "text/html")
                    );
                }
                other => panic!("{other:?}"),
            }
            match get("/dir/sub/") {
                Ok(Resolved::Directory { rel, meta, .. }) => {
                    assert_eq!(rel.as_bytes(), b"dir/sub");
                    assert!(meta.is_dir());
                }
                other => panic!("{other:?}"),
            }
            let status = |path: &str| get(path).map(|_| 200).map_err(HttpError::status);
            assert_eq!(status("/fifo"), Err(403), "{resolution:?}");
            assert_eq!(status("/a.txt/"), Err(404));
            assert_eq!(status("/out-dir/secret.txt"), Err(404));
            assert_eq!(status("/loop-a"), Err(404));
        }
        let hand_made = SafePath {
            segments: vec![b"..".to_vec(), b"outside".to_vec()],
            trailing_slash: false,
        };
        let root = Root::open(&root_dir).unwrap();
        assert_eq!(
            resolve(&root, &hand_made, None)
                .map(|_| ())
                .map_err(HttpError::status),
            Err(400)
        );
    }
}
