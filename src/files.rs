//! Path → open file beneath the root: one lookup relative to the root's descriptor (openat2
//! RESOLVE_BENEATH, or a component walk where that is missing), so nothing outside the root
//! can be reached; index files, precompressed variants, directory entries. The only module
//! that turns a path into an open file.
//! May use: url, negotiate, listing (the entries it reads), error, sys.

mod walk;

use std::ffi::{CString, OsStr};
use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::error::HttpError;
use crate::listing::Entry;
use crate::negotiate::Coding;
use crate::sys::{self, Kind};
use crate::url::{encode_path, SafePath};

/// The file served for a directory URL ending in `/`.
pub const INDEX: &str = "index.html";

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
                Resolution::Walk => walk::walk(self.fd.as_fd(), rel.0.as_bytes(), flags),
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

    /// `/proc/self/fd/N` for the root's descriptor: a path that names the very directory
    /// lookups start from (the file cache's watches are set up by path).
    pub fn proc_path(&self) -> Vec<u8> {
        format!("/proc/self/fd/{}", self.fd.as_raw_fd()).into_bytes()
    }

    /// Describes what `rel` names if it is reached without any symlink on the way (openat2
    /// `RESOLVE_NO_SYMLINKS`, `O_PATH`: nothing is opened for reading): ELOOP if a symlink
    /// is met. The file cache keeps only what this reaches too, so its watches follow the
    /// route the lookup took.
    pub fn lookup_without_symlinks(&self, rel: &RelPath) -> io::Result<Metadata> {
        let fd = sys::openat2(
            self.fd.as_fd(),
            &rel.0,
            libc::O_PATH,
            BENEATH | libc::RESOLVE_NO_SYMLINKS,
        )?;
        File::from(fd).metadata()
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
    pub fn with_suffix(&self, suffix: &str) -> Option<RelPath> {
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
mod tests;
