//! The open-file cache that is never stale: per decoded request path, what resolving it
//! found (the open file, its metadata, which precompressed variants exist, small bodies in
//! memory) or that it is not there (404), invalidated through inotify.
//! May use: files, negotiate, url, error, sys.
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

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::CString;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::HttpError;
use crate::files::{self, RelPath, Resolution, Resolved, Root};
use crate::negotiate::Coding;
use crate::sys::{self, InotifyEvent};
use crate::url::SafePath;

/// Bodies up to this size are kept in memory (the connection's one-write limit,
/// `conn::write::SMALL_BODY`, so a cached small reply still leaves in one write).
pub const SMALL_BODY: u64 = 32 * 1024;

/// The most entries (found or missing) at once, whatever their size: bounds the bookkeeping.
pub const MAX_ENTRIES: usize = 16 * 1024;

/// The most open files cached entries hold, at most (the server lowers it to a quarter of
/// the descriptor limit and counts it against the connection budget).
pub const MAX_FILES: usize = 1024;

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
}

/// A regular file as resolved: its representations (identity first) and its type.
#[derive(Debug)]
pub struct Found {
    pub content_type: &'static str,
    pub reps: Vec<Rep>,
    /// The codings of the precompressed variants, for negotiation.
    pub available: Vec<Coding>,
}

impl Found {
    /// The file `files::resolve` opened and the variants beside it (`files::variants`).
    fn open(
        root: &Root,
        (file, meta, content_type, rel): (File, Metadata, &'static str, &RelPath),
        bodies: bool,
    ) -> Found {
        let mut reps = vec![rep(Coding::Identity, file, meta, bodies)];
        for variant in files::variants(root, rel) {
            reps.push(rep(variant.coding, variant.file, variant.meta, bodies));
        }
        let available = reps[1..].iter().map(|rep| rep.coding).collect();
        Found {
            content_type,
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
        file: Arc::new(file),
        meta,
        body,
    }
}

/// What a lookup gives the handler.
#[derive(Debug)]
pub enum Lookup {
    File(Arc<Found>),
    /// A directory or a redirect (never cached; boxed, as it is the large, rare case).
    Other(Box<Resolved>),
}

/// Resolves `path` as `files::resolve` does, through `cache` when there is one.
pub fn resolve(
    cache: Option<&FileCache>,
    root: &Root,
    path: &SafePath,
    query: Option<&str>,
) -> Result<Lookup, HttpError> {
    let Some(cache) = cache else {
        return uncached(root, path, query, false);
    };
    let key = key(path);
    let epoch = match cache.get(&key) {
        Ok(Value::Found(found)) => return Ok(Lookup::File(found)),
        Ok(Value::Missing) => return Err(HttpError::NotFound),
        Err(epoch) => epoch,
    };
    // Watches first, then the lookup: whatever changes after a watch exists is an event.
    let Some(plan) = Plan::new(cache, root, path) else {
        return uncached(root, path, query, false);
    };
    let result = uncached(root, path, query, true);
    match &result {
        Ok(Lookup::File(found)) => {
            let admitted = plan.admit_found(root, found);
            cache.finish(
                key,
                epoch,
                &plan,
                admitted.map(|()| Value::Found(Arc::clone(found))),
            );
        }
        Err(HttpError::NotFound) => {
            let admitted = plan.admit_missing(root);
            cache.finish(key, epoch, &plan, admitted.map(|()| Value::Missing));
        }
        _ => cache.finish(key, epoch, &plan, None),
    }
    result
}

fn uncached(
    root: &Root,
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
            bodies,
        ))),
        other => Lookup::Other(Box::new(other)),
    })
}

/// The cache key: the decoded segments joined by `/`, and a final `/` when the URL had one
/// (which changes the answer). The query never does for what is cached.
fn key(path: &SafePath) -> Box<[u8]> {
    let mut key = Vec::with_capacity(64);
    for (i, segment) in path.segments.iter().enumerate() {
        if i > 0 {
            key.push(b'/');
        }
        key.extend_from_slice(segment);
    }
    if path.trailing_slash {
        key.push(b'/');
    }
    key.into()
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

/// The cache: entries, the watches they depend on, and the inotify instance, all behind one
/// lock (a hit must drain the events and look up as one step; see the module note).
pub struct FileCache {
    state: Mutex<State>,
    /// The inotify instance (add_watch needs no lock).
    inotify: Arc<OwnedFd>,
    /// Drains begun so far (bumped under the lock, before the read): a lookup that finds
    /// it moved since it arrived knows a drain that began after it arrived has been
    /// applied, and needs no read of its own (waiters under load share one read).
    drains: AtomicU64,
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("FileCache")
            .field("entries", &state.entries.len())
            .field("bytes", &state.bytes)
            .field("files", &state.files)
            .finish()
    }
}

struct Entry {
    value: Value,
    wds: Vec<i32>,
    bytes: usize,
    files: usize,
    seq: u64,
}

struct State {
    inotify: Arc<OwnedFd>,
    entries: HashMap<Box<[u8]>, Entry>,
    /// Watch → the keys that depend on it.
    deps: HashMap<i32, HashSet<Box<[u8]>>>,
    /// Keys in insertion order, for eviction (stale pairs are skipped).
    order: VecDeque<(Box<[u8]>, u64)>,
    /// Counts every event applied and every watch removed: a miss that saw it change while
    /// it ran is not admitted.
    epoch: u64,
    seq: u64,
    bytes: usize,
    files: usize,
    max_bytes: usize,
    max_files: usize,
    /// Reading the events failed: nothing is cached any more.
    broken: bool,
    events: Vec<InotifyEvent>,
}

/// The cache's size at a glance (tests, debugging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub entries: usize,
    pub bytes: usize,
    pub files: usize,
    pub watches: usize,
}

impl FileCache {
    /// A cache of at most `max_bytes` of bodies for paths beneath `root`; `None` where it
    /// could not be exact: the component walk (no `RESOLVE_NO_SYMLINKS` check), or no
    /// inotify, or no `/proc` to name the root's descriptor.
    pub fn new(root: &Root, max_bytes: u64) -> Result<FileCache, String> {
        if root.resolution() != Resolution::Openat2 {
            return Err("needs openat2 path resolution".into());
        }
        let inotify = Arc::new(sys::inotify_init().map_err(|err| format!("inotify: {err}"))?);
        let cache = FileCache {
            state: Mutex::new(State {
                inotify: Arc::clone(&inotify),
                entries: HashMap::new(),
                deps: HashMap::new(),
                order: VecDeque::new(),
                epoch: 0,
                seq: 0,
                bytes: 0,
                files: 0,
                max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
                max_files: MAX_FILES,
                broken: false,
                events: Vec::new(),
            }),
            inotify,
            drains: AtomicU64::new(0),
        };
        // The root must be watchable through /proc/self/fd.
        let wd = cache
            .watch(root, None, true)
            .map_err(|err| format!("cannot watch the root: {err}"))?;
        let _ = sys::inotify_rm_watch(cache.inotify.as_fd(), wd);
        Ok(cache)
    }

    /// Caps the open files cached entries hold (the server sets it from the descriptor
    /// limit before serving).
    pub fn set_max_files(&self, max: usize) {
        let mut state = self.lock();
        state.max_files = max;
        state.evict(0, 0, &[]);
    }

    pub fn max_files(&self) -> usize {
        self.lock().max_files
    }

    pub fn usage(&self) -> Usage {
        let state = self.lock();
        Usage {
            entries: state.entries.len(),
            bytes: state.bytes,
            files: state.files,
            watches: state.deps.len(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change that matters:
        // at worst an entry is missing. Keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached answer for `key` after applying every queued event, or the epoch a miss
    /// starts from.
    fn get(&self, key: &[u8]) -> Result<Value, u64> {
        let arrived = self.drains.load(Ordering::SeqCst);
        let mut state = self.lock();
        // Exact either way: a drain begun after this lookup arrived read every event queued
        // before it, and drains run whole under the lock, so that one is applied by now.
        if self.drains.load(Ordering::SeqCst) == arrived {
            self.drains.fetch_add(1, Ordering::SeqCst);
            state.drain();
        }
        if state.broken {
            return Err(state.epoch);
        }
        match state.entries.get(key) {
            Some(entry) => Ok(entry.value.clone()),
            None => Err(state.epoch),
        }
    }

    /// Watches `rel` (the root for `None`) without following a final symlink; `dir` insists
    /// on a directory.
    fn watch(&self, root: &Root, rel: Option<&RelPath>, dir: bool) -> io::Result<i32> {
        let mut path = root.proc_path();
        if let Some(rel) = rel {
            path.push(b'/');
            path.extend_from_slice(rel.as_bytes());
        }
        let path = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut mask = EVENTS;
        // Not for the root itself: its last component is the /proc magic link to follow.
        if rel.is_some() {
            mask |= libc::IN_DONT_FOLLOW;
        }
        if dir {
            mask |= libc::IN_ONLYDIR;
        }
        sys::inotify_add_watch(self.inotify.as_fd(), &path, mask)
    }

    /// Ends a miss that started at `epoch`: inserts `value` if it was admitted and nothing
    /// changed meanwhile; else drops the watches nobody uses.
    fn finish(&self, key: Box<[u8]>, epoch: u64, plan: &Plan, value: Option<Value>) {
        let wds = plan.wds();
        let mut state = self.lock();
        state.drain();
        match value {
            Some(value) if !state.broken && state.epoch == epoch => {
                state.insert(key, value, wds);
            }
            _ => state.release(&wds),
        }
    }
}

impl State {
    /// Applies every queued event: each drops the entries that depend on its watch; an
    /// overflow (events lost) or a failed read drops everything.
    fn drain(&mut self) {
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        let inotify = Arc::clone(&self.inotify);
        if let Err(err) = sys::inotify_drain(inotify.as_fd(), &mut events) {
            log::warn!("file cache off: reading inotify failed: {err}");
            self.broken = true;
            self.clear();
        }
        for event in &events {
            // IN_IGNORED only says a watch is gone: ours (counted when removed) or its
            // inode's, after the IN_DELETE_SELF that counted.
            if event.mask & libc::IN_IGNORED == 0 {
                self.epoch += 1;
            }
            if event.mask & libc::IN_Q_OVERFLOW != 0 {
                self.clear();
                continue;
            }
            if let Some(keys) = self.deps.get(&event.wd) {
                let keys: Vec<Box<[u8]>> = keys.iter().cloned().collect();
                for key in keys {
                    self.remove(&key, &[]);
                }
            }
            if event.mask & libc::IN_IGNORED != 0 {
                // The watch is gone (removed, or its inode deleted).
                self.deps.remove(&event.wd);
            }
        }
        self.events = events;
    }

    fn clear(&mut self) {
        let keys: Vec<Box<[u8]>> = self.entries.keys().cloned().collect();
        for key in keys {
            self.remove(&key, &[]);
        }
        self.order.clear();
    }

    /// Drops `key`, and each watch only it used except those in `keep` (a removed watch
    /// bumps the epoch: a miss that planned to rely on it is not admitted).
    fn remove(&mut self, key: &[u8], keep: &[i32]) {
        let Some(entry) = self.entries.remove(key) else {
            return;
        };
        self.bytes -= entry.bytes;
        self.files -= entry.files;
        for wd in entry.wds {
            if let Some(keys) = self.deps.get_mut(&wd) {
                keys.remove(key);
                if keys.is_empty() {
                    self.deps.remove(&wd);
                    if !keep.contains(&wd) {
                        self.unwatch(wd);
                    }
                }
            }
        }
    }

    fn unwatch(&mut self, wd: i32) {
        let _ = sys::inotify_rm_watch(self.inotify.as_fd(), wd);
        self.epoch += 1;
    }

    /// Removes the watches in `wds` that no entry depends on (a miss that was not admitted).
    fn release(&mut self, wds: &[i32]) {
        for &wd in wds {
            if !self.deps.contains_key(&wd) {
                self.unwatch(wd);
            }
        }
    }

    fn insert(&mut self, key: Box<[u8]>, value: Value, wds: Vec<i32>) {
        let (bytes, files) = match &value {
            Value::Found(found) => (found.weight(), found.reps.len()),
            Value::Missing => (0, 0),
        };
        self.remove(&key, &wds);
        if bytes > self.max_bytes || files > self.max_files {
            self.release(&wds);
            return;
        }
        self.evict(bytes, files, &wds);
        self.seq += 1;
        let seq = self.seq;
        for &wd in &wds {
            self.deps.entry(wd).or_default().insert(key.clone());
        }
        self.order.push_back((key.clone(), seq));
        self.bytes += bytes;
        self.files += files;
        self.entries.insert(
            key,
            Entry {
                value,
                wds,
                bytes,
                files,
                seq,
            },
        );
        // Invalidated keys leave stale pairs behind: keep the queue proportional.
        if self.order.len() > 2 * MAX_ENTRIES {
            let entries = &self.entries;
            self.order
                .retain(|(key, seq)| entries.get(key).is_some_and(|e| e.seq == *seq));
        }
    }

    /// Evicts the oldest entries until `bytes` and `files` more fit (first in, first out:
    /// cheap and bounded; a hit never needs the lock for longer than a lookup).
    fn evict(&mut self, bytes: usize, files: usize, keep: &[i32]) {
        while self.bytes + bytes > self.max_bytes
            || self.files + files > self.max_files
            || self.entries.len() >= MAX_ENTRIES
        {
            let Some((key, seq)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&key).is_some_and(|e| e.seq == seq) {
                self.remove(&key, keep);
            }
        }
    }
}

#[cfg(test)]
mod tests;
