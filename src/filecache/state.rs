//! The cache's shared state: entries, the watches they depend on and the inotify instance
//! behind one lock; draining events, admission of a finished miss, and the bounds.
//! May use: files, sys.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Value, EVENTS, MAX_DEPTH, MAX_ENTRIES, MAX_FILES, MAX_KEY, MAX_WATCHES};
use crate::files::{RelPath, Resolution, Root};
use crate::sys::{self, InotifyEvent};

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
    /// Lookups answered from the cache, and lookups it could not answer (for the status
    /// page): plain counts, as they change under the lock a lookup holds anyway.
    hits: u64,
    misses: u64,
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
    /// A cache of at most `max_bytes` of bodies and keys for paths beneath `root`; `None` where it
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
                hits: 0,
                misses: 0,
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

    /// Lookups answered from the cache (hits) and not (misses) since start.
    pub fn lookups(&self) -> (u64, u64) {
        let state = self.lock();
        (state.hits, state.misses)
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
    pub(super) fn get(&self, key: &[u8]) -> Result<Value, u64> {
        let arrived = self.drains.load(Ordering::SeqCst);
        let mut state = self.lock();
        // Exact either way: a drain begun after this lookup arrived read every event queued
        // before it, and drains run whole under the lock, so that one is applied by now.
        if self.drains.load(Ordering::SeqCst) == arrived {
            self.drains.fetch_add(1, Ordering::SeqCst);
            state.drain();
        }
        let found = match state.entries.get(key) {
            Some(entry) if !state.broken => Ok(entry.value.clone()),
            _ => Err(state.epoch),
        };
        match found {
            Ok(_) => state.hits += 1,
            Err(_) => state.misses += 1,
        }
        found
    }

    /// Watches `rel` (the root for `None`) without following a final symlink; `dir` insists
    /// on a directory.
    pub(super) fn watch(&self, root: &Root, rel: Option<&RelPath>, dir: bool) -> io::Result<i32> {
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
    pub(super) fn finish(&self, key: Box<[u8]>, epoch: u64, wds: Vec<i32>, value: Option<Value>) {
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
        let (body, files) = match &value {
            Value::Found(found) => (found.weight(), found.reps.len()),
            Value::Missing => (0, 0),
        };
        // The key is held in the map, in the eviction queue and once per watch it depends
        // on: that counts against the bound as much as a body does.
        let bytes = body + key.len() * (wds.len() + 2);
        self.remove(&key, &wds);
        let new_watches = wds.iter().filter(|wd| !self.deps.contains_key(wd)).count();
        if bytes > self.max_bytes
            || files > self.max_files
            || key.len() > MAX_KEY
            || wds.len() > MAX_DEPTH
            || self.deps.len() + new_watches > MAX_WATCHES
        {
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
