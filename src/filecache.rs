//! The open-file cache that is never stale: per decoded request path, what resolving it
//! found (the open file, its metadata, which precompressed variants exist, small bodies in
//! memory, the `ETag`, `Last-Modified` and `Content-Type` values rendered once) or that it is
//! not there (404), invalidated through inotify.
//! May use: files, negotiate, url, error, response, sys.
//!
//! Exactness. Every directory a cached lookup went through, and every file it found, is
//! watched (`inotify`, one instance). Before a hit is served the queued events are applied
//! (one non-blocking read under the cache's lock); inotify queues an event before the system
//! call that caused it returns, so a change whose call has returned is never served stale.
//! A miss is admitted only if no event at all arrived between its start (after a drain) and
//! its insertion: its watches were added before it resolved anything, so a change while it
//! ran makes it uncached rather than stale. Lookups that cross a symlink are not cached (a
//! `RESOLVE_NO_SYMLINKS` lookup must reach the same inode), so every watched path is the
//! route the lookup really took. Not seen, hence `--file-cache 0`: writes through a shared
//! mmap, changes made by another host (NFS, CIFS), mounts over a directory in the root.

use std::fmt::Write as _;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use crate::error::HttpError;
use crate::files::{self, RelPath, Resolved, Root};
use crate::negotiate::Coding;
use crate::response::{Charset, Modified, Small, Text};
use crate::url::SafePath;

/// Bodies up to this size are kept in memory (the connection's one-write limit,
/// `conn::write::SMALL_BODY`, so a cached small reply still leaves in one write).
pub const SMALL_BODY: u64 = 32 * 1024;

/// The most entries (found or missing) at once, whatever their size: bounds the bookkeeping.
pub const MAX_ENTRIES: usize = 16 * 1024;

/// The most open files cached entries hold, at most (the server lowers it to a quarter of
/// the descriptor limit and counts it against the connection budget).
pub const MAX_FILES: usize = 1024;
/// The longest path key cached, in bytes: a key is held once per directory it depends on,
/// so a client asking for long paths must not make that add up.
pub const MAX_KEY: usize = 256;
/// The deepest route cached, in directories (each one a watch the entry depends on).
pub const MAX_DEPTH: usize = 16;
/// The most inotify watches held at once: they count against the user's system-wide
/// `max_user_watches` (8192 by default before Linux 5.11), which other programs share.
pub const MAX_WATCHES: usize = 4096;

/// What changes a lookup's answer, on a directory or on a file.
const EVENTS: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;

/// One representation of a file: the identity or a precompressed variant.
#[derive(Debug)]
pub struct Rep {
    pub coding: Coding,
    pub file: Arc<File>,
    pub meta: Metadata,
    /// The whole body, read once, for files up to [`SMALL_BODY`] while the cache is on.
    pub body: Option<Arc<[u8]>>,
    /// Its strong entity-tag ([`etag`]), rendered once.
    pub etag: Arc<str>,
    /// Its modification time as `Last-Modified` shows it, rendered once (each head still
    /// clamps it to its own `Date`).
    pub modified: Modified,
}

/// A regular file as resolved: its representations (identity first) and its type.
/// Built the same way with the cache off, so a reply's head does not depend on the cache.
#[derive(Debug)]
pub struct Found {
    /// The `Content-Type` value, with `--charset`'s parameter where it applies.
    pub content_type: Text,
    pub reps: Vec<Rep>,
    /// The codings of the precompressed variants, for negotiation.
    pub available: Vec<Coding>,
}

impl Found {
    /// The file `files::resolve` opened and the variants beside it (`files::variants`).
    fn open(
        root: &Root,
        (file, meta, content_type, rel): (File, Metadata, &'static str, &RelPath),
        charset: &Charset,
        bodies: bool,
    ) -> Found {
        let mut reps = vec![rep(Coding::Identity, file, meta, bodies)];
        for variant in files::variants(root, rel) {
            reps.push(rep(variant.coding, variant.file, variant.meta, bodies));
        }
        let available = reps[1..].iter().map(|rep| rep.coding).collect();
        Found {
            content_type: charset.content_type(content_type),
            reps,
            available,
        }
    }

    /// Bytes of bodies held in memory.
    fn weight(&self) -> usize {
        self.reps
            .iter()
            .map(|rep| rep.body.as_ref().map_or(0, |b| b.len()))
            .sum()
    }
}

fn rep(coding: Coding, file: File, meta: Metadata, bodies: bool) -> Rep {
    let body = (bodies && meta.len() <= SMALL_BODY)
        .then(|| {
            let mut bytes = vec![0; meta.len() as usize];
            // A failed or short read (truncated meanwhile) keeps no body: the reply reads
            // the file as without a cache, and the event evicts the entry.
            file.read_exact_at(&mut bytes, 0)
                .ok()
                .map(|()| bytes.into())
        })
        .flatten();
    Rep {
        coding,
        etag: etag(&meta, coding),
        modified: Modified::new(meta.modified().unwrap_or(UNIX_EPOCH)),
        file: Arc::new(file),
        meta,
        body,
    }
}

/// A strong validator from size and modification time (to the nanosecond), and the coding
/// for a precompressed variant: stable across restarts for an unchanged file, different when
/// either changes, different for each variant. The time is signed (`-` before 1970), so files
/// dated before the epoch get distinct tags too.
pub fn etag(meta: &Metadata, coding: Coding) -> Arc<str> {
    let (sign, nanos) = match meta.modified().map(|t| t.duration_since(UNIX_EPOCH)) {
        Ok(Ok(after)) => ("", after.as_nanos()),
        Ok(Err(before)) => ("-", before.duration().as_nanos()),
        Err(_) => ("", 0),
    };
    // Rendered on the stack (at most 2 + 1 + 32 + 1 + 16 + 1 + 4 bytes), so the shared
    // string is the one allocation.
    let mut tag = Small::default();
    let _ = match coding.name() {
        Some(name) => write!(tag, "\"{sign}{nanos:x}-{:x}-{name}\"", meta.len()),
        None => write!(tag, "\"{sign}{nanos:x}-{:x}\"", meta.len()),
    };
    Arc::from(tag.as_str())
}

/// What a lookup gives the handler.
#[derive(Debug)]
pub enum Lookup {
    File(Arc<Found>),
    /// A directory or a redirect (never cached; boxed, as it is the large, rare case).
    Other(Box<Resolved>),
}

/// Resolves `path` as `files::resolve` does, through `cache` when there is one; a file's
/// `Content-Type` gets `charset` where it applies.
pub fn resolve(
    cache: Option<&FileCache>,
    (root, charset): (&Root, &Charset),
    path: &SafePath,
    query: Option<&str>,
) -> Result<Lookup, HttpError> {
    let uncached = |bodies| uncached(root, charset, path, query, bodies);
    let Some(cache) = cache else {
        return uncached(false);
    };
    // Built on the stack, so a hit allocates nothing for it; a path too long to be a key is
    // never cached (a client choosing long paths must not grow the cache).
    let mut buf = [0; MAX_KEY];
    let Some(key) = key(path, &mut buf) else {
        return uncached(false);
    };
    let epoch = match cache.get(key) {
        Ok(Value::Found(found)) => return Ok(Lookup::File(found)),
        Ok(Value::Missing) => return Err(HttpError::NotFound),
        Err(epoch) => epoch,
    };
    // Watches first, then the lookup: whatever changes after a watch exists is an event.
    let Some(plan) = Plan::new(cache, root, path) else {
        return uncached(false);
    };
    let result = uncached(true);
    match &result {
        Ok(Lookup::File(found)) => {
            let admitted = plan.admit_found(root, found);
            cache.finish(
                key.into(),
                epoch,
                plan.wds(),
                admitted.map(|()| Value::Found(Arc::clone(found))),
            );
        }
        Err(HttpError::NotFound) => {
            let admitted = plan.admit_missing(root);
            cache.finish(
                key.into(),
                epoch,
                plan.wds(),
                admitted.map(|()| Value::Missing),
            );
        }
        _ => cache.finish(key.into(), epoch, plan.wds(), None),
    }
    result
}

fn uncached(
    root: &Root,
    charset: &Charset,
    path: &SafePath,
    query: Option<&str>,
    bodies: bool,
) -> Result<Lookup, HttpError> {
    Ok(match files::resolve(root, path, query)? {
        Resolved::File {
            file,
            meta,
            content_type,
            rel,
        } => Lookup::File(Arc::new(Found::open(
            root,
            (file, meta, content_type, &rel),
            charset,
            bodies,
        ))),
        other => Lookup::Other(Box::new(other)),
    })
}

/// The cache key, written into `buf`: the decoded segments joined by `/`, and a final `/` when
/// the URL had one (which changes the answer); the query never does for what is cached.
/// `None` when it does not fit [`MAX_KEY`].
fn key<'b>(path: &SafePath, buf: &'b mut [u8; MAX_KEY]) -> Option<&'b [u8]> {
    let mut len = 0;
    let mut push = |bytes: &[u8]| {
        let end = len + bytes.len();
        buf.get_mut(len..end)?.copy_from_slice(bytes);
        len = end;
        Some(())
    };
    for (i, segment) in path.segments.iter().enumerate() {
        if i > 0 {
            push(b"/")?;
        }
        push(segment)?;
    }
    if path.trailing_slash {
        push(b"/")?;
    }
    buf.get(..len)
}

/// A cached answer.
#[derive(Debug, Clone)]
enum Value {
    Found(Arc<Found>),
    Missing,
}

/// The watches one lookup set up before it ran: each directory on its way (root first) and
/// the file and variant names it may find.
struct Plan {
    dirs: Vec<io::Result<i32>>,
    /// The file's path from the root (the index for a URL ending in `/`).
    file_rel: RelPath,
    /// The file, then `.br`, then `.gz` beside it.
    files: [(Coding, io::Result<i32>); 3],
}

impl Plan {
    fn new(cache: &FileCache, root: &Root, path: &SafePath) -> Option<Plan> {
        let segments = &path.segments;
        let dir_count = if path.trailing_slash {
            segments.len()
        } else {
            segments.len().checked_sub(1)?
        };
        let mut dirs = Vec::with_capacity(dir_count + 1);
        for depth in 0..=dir_count {
            let result = if depth == 0 {
                cache.watch(root, None, true)
            } else {
                let rel = RelPath::from_segments(&segments[..depth]).ok()?;
                cache.watch(root, Some(&rel), true)
            };
            let failed = result.is_err();
            dirs.push(result);
            if failed {
                break;
            }
        }
        let file_rel = if path.trailing_slash {
            let mut with_index = segments.clone();
            with_index.push(files::INDEX.as_bytes().to_vec());
            RelPath::from_segments(&with_index).ok()?
        } else {
            RelPath::from_segments(segments).ok()?
        };
        let watch_file = |coding: Coding| match coding {
            Coding::Identity => cache.watch(root, Some(&file_rel), false),
            coding => match file_rel.with_suffix(coding.suffix()) {
                Some(rel) => cache.watch(root, Some(&rel), false),
                None => Err(io::ErrorKind::InvalidInput.into()),
            },
        };
        let files = [Coding::Identity, Coding::Br, Coding::Gzip].map(|c| (c, watch_file(c)));
        Some(Plan {
            dirs,
            file_rel,
            files,
        })
    }

    /// Every watch that was set up.
    fn wds(&self) -> Vec<i32> {
        let mut wds: Vec<i32> = self
            .dirs
            .iter()
            .chain(self.files.iter().map(|(_, w)| w))
            .filter_map(|w| w.as_ref().ok().copied())
            .collect();
        wds.sort_unstable();
        wds.dedup();
        wds
    }

    /// Whether `found` may be cached: every directory watched, the file and each variant it
    /// has watched and reached without a symlink (the same inode), and each variant it lacks
    /// truly absent (not a symlink whose target could appear unwatched).
    fn admit_found(&self, root: &Root, found: &Found) -> Option<()> {
        for dir in &self.dirs {
            dir.as_ref().ok()?;
        }
        for (coding, watch) in &self.files {
            let rel = match coding {
                Coding::Identity => self.file_rel.clone(),
                coding => self.file_rel.with_suffix(coding.suffix())?,
            };
            let plain = root.lookup_without_symlinks(&rel);
            match found.reps.iter().find(|rep| rep.coding == *coding) {
                Some(rep) => {
                    watch.as_ref().ok()?;
                    let meta = plain.ok()?;
                    if (meta.dev(), meta.ino()) != (rep.meta.dev(), rep.meta.ino()) {
                        return None;
                    }
                }
                None => match plain {
                    Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
                    Ok(meta) if !meta.is_file() => {}
                    _ => return None,
                },
            }
        }
        Some(())
    }

    /// Whether a 404 may be cached: the path is missing without any symlink on the way
    /// (ENOENT, not ELOOP), and every directory that exists on the way is watched (the
    /// first missing one is an event in its parent once created). A URL ending in `/` whose
    /// directory exists is never a 404 here (it is an index or a directory), so ENOENT for
    /// its index alone is a race that the epoch turns away.
    fn admit_missing(&self, root: &Root) -> Option<()> {
        let plain = root.lookup_without_symlinks(&self.file_rel);
        if plain.err().and_then(|err| err.raw_os_error()) != Some(libc::ENOENT) {
            return None;
        }
        for dir in &self.dirs {
            if let Err(err) = dir {
                if err.raw_os_error() != Some(libc::ENOENT) {
                    return None;
                }
            }
        }
        Some(())
    }
}

mod state;

pub use state::FileCache;

/// `--file-cache SIZE`: the cache (none for `0`, or where it cannot be exact) and a line
/// saying so for the start-up log; an unreadable SIZE is an error for the user.
pub fn from_flag(root: &Root, size: &str) -> Result<(Option<Arc<FileCache>>, String), String> {
    Ok(match parse_size(size)? {
        0 => (None, "file cache: off (--file-cache 0)".to_owned()),
        bytes => match FileCache::new(root, bytes) {
            Ok(cache) => (
                Some(Arc::new(cache)),
                format!("file cache: {bytes} bytes of bodies and keys, kept exact by inotify"),
            ),
            Err(why) => (None, format!("file cache: off ({why})")),
        },
    })
}

/// A byte count with an optional binary suffix: `0`, `65536`, `512K`, `64M`, `1G`.
fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("--file-cache {text:?}: expected bytes, e.g. 0, 512K, 64M, 1G");
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'K' | b'k') => (&text[..text.len() - 1], 10),
        Some(b'M' | b'm') => (&text[..text.len() - 1], 20),
        Some(b'G' | b'g') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let value: u64 = digits.parse().map_err(|_| bad())?;
    value.checked_mul(1 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests;
