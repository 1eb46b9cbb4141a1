//! Holds every connection that is waiting for its client, in one epoll set that the idle
//! workers wait on themselves (leader/followers): a worker takes the one connection whose
//! event it got, serves it, and parks it again (re-arming its one-shot registration), with no
//! thread in between. A connection waiting to read comes back when readable, one with an
//! unfinished reply when writable; a lingering close is drained by whichever worker its
//! event wakes. Work that is not a socket event (a connection with requests already
//! buffered, a new connection handed over by the accept loop, one past its deadline) goes
//! through a queue, and a wake-up in the set tells a waiting worker. The sweep thread keeps
//! the deadlines: it closes idle connections past theirs and hands back half heads (408)
//! and stalled replies (to be logged). Ownership is the map: whoever takes a connection out
//! of it under the lock (a worker woken for it, the sweep, an eviction) owns it.
//! May use: crossbeam-channel, conn, sys (the epoll set), metrics (gauges of parked
//! connections).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::conn::{self, Conn};
use crate::metrics::{self, Metrics};
use crate::sys::{self, Set};

/// How often deadlines are checked: timeouts are whole seconds, so this is precise enough,
/// and a sweep over every parked connection stays cheap at this rate.
const SWEEP: Duration = Duration::from_millis(250);
/// One worker's turn in this many looks at the set before the queue (see [`Parker::next`]).
const EVENTS_FIRST: usize = 8;
/// How often a stop checks whether every connection is done.
const STOP_CHECK: Duration = Duration::from_millis(20);

/// Why a connection is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// For (the rest of) a request: back to a worker when readable.
    Request,
    /// For the client to make room for the rest of a reply: back to a worker when writable.
    Write,
    /// For the client to close after our close: read and drop input until then.
    Drain,
}

/// The shared handle: workers wait on it ([`Parker::next`]) and park connections in it, the
/// accept loop hands new ones over, the sweep thread runs [`Parker::sweep`].
#[derive(Clone)]
pub struct Parker {
    shared: Arc<Shared>,
}

struct Shared {
    set: Set,
    state: Mutex<State>,
    /// Nudges the sweep thread (a stop began).
    nudge: Condvar,
    /// Connections ready for a worker without a socket event.
    queue: (Sender<Conn>, Receiver<Conn>),
    /// Set (under the lock) once nothing can be parked or queued any more.
    closed: AtomicBool,
    /// The status page's counters (`--status`), for the parked gauges.
    metrics: Option<Arc<Metrics>>,
    /// Workers asleep in the set (or about to be): queued work wakes one only then, so a busy
    /// pool pays no wake-up per queued connection.
    sleepers: AtomicUsize,
    /// Counts [`Parker::next`] calls: every [`EVENTS_FIRST`]th looks at the set before the
    /// queue.
    turns: AtomicUsize,
}

#[derive(Default)]
struct State {
    /// Keys grow with every park, below [`sys::RESERVED`].
    next_key: u64,
    parked: BTreeMap<u64, Parked>,
    /// The parked connections [`Parker::evict_idle`] may close, oldest idle first. Not the
    /// order of parking: two workers can park in the opposite order of the replies their
    /// clients saw.
    idle: BTreeSet<(Instant, u64)>,
    /// Shutting down: see [`Parker::stop`].
    stopping: Option<Stopping>,
    /// Nothing can be parked any more.
    closed: bool,
}

struct Stopping {
    /// Everything still parked is closed then.
    by: Instant,
    /// Idle keep-alive connections are closed then.
    last_call: Instant,
    /// Connections still open anywhere (parked, queued, or at a worker): the stop is done
    /// when this is zero.
    open: Arc<AtomicUsize>,
}

/// How long idle keep-alive connections stay open after a stop begins: a client in the
/// middle of a run of requests gets its next one answered (with `Connection: close`) instead
/// of having it cut off by our close as it was sent.
const LAST_CALL: Duration = Duration::from_millis(250);

/// A parked connection: armed in the epoll set for as long as it is in the map (and maybe a
/// little longer: see [`Parker::next`]).
struct Parked {
    conn: Conn,
    wait: Wait,
    deadline: Instant,
}

impl Parked {
    /// Closing it loses nothing: it waits for a next request that has not started.
    fn closable(&self, served_only: bool) -> bool {
        self.wait == Wait::Request
            && self.conn.is_idle()
            && (!served_only || self.conn.has_served())
    }
}

impl Parker {
    /// A parker that keeps `metrics`' parked gauges (`--status`) if given.
    pub fn new(metrics: Option<Arc<Metrics>>) -> io::Result<Parker> {
        Ok(Parker {
            shared: Arc::new(Shared {
                set: Set::new()?,
                state: Mutex::new(State::default()),
                nudge: Condvar::new(),
                queue: unbounded(),
                closed: AtomicBool::new(false),
                metrics,
                sleepers: AtomicUsize::new(0),
                turns: AtomicUsize::new(0),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the map half-updated: every update is one call.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Holds `conn` until it is readable (for [`Wait::Write`], writable; for [`Wait::Drain`],
    /// until the client closes) or `deadline` passes. While stopping, an idle keep-alive
    /// connection gets only the last call. Once the stop is over, the connection is given
    /// back (`Err`), so that the caller can log a reply it cuts off.
    pub fn park(&self, mut conn: Conn, wait: Wait, mut deadline: Instant) -> Result<(), Conn> {
        let mut state = self.state();
        if state.closed {
            return Err(conn);
        }
        if let Some(stopping) = &state.stopping {
            if wait == Wait::Request && conn.is_idle() && conn.has_served() {
                deadline = deadline.min(stopping.last_call);
            }
        }
        let key = state.next_key;
        // Wrapping cannot collide with a parked key in practice: that would take 2^64 parks
        // while one connection stays parked.
        state.next_key = if key + 1 >= sys::RESERVED { 0 } else { key + 1 };
        // Armed under the lock, so a worker woken by the event cannot look for the
        // connection before it is in the map.
        let first = !conn.is_registered();
        if let Err(err) = self
            .shared
            .set
            .arm(conn.fd(), key, wait == Wait::Write, first)
        {
            log::warn!("cannot park a connection: {err}; closing it");
            return Err(conn);
        }
        conn.set_registered();
        self.count(wait, 1);
        if wait == Wait::Request && conn.is_idle() {
            state.idle.insert((conn.idle_since(), key));
        }
        state.parked.insert(
            key,
            Parked {
                conn,
                wait,
                deadline,
            },
        );
        Ok(())
    }

    /// How many connections wait in the queue for a worker (`--status`).
    pub fn queued(&self) -> usize {
        self.shared.queue.1.len()
    }

    /// The status page's gauges (`--status`): a connection parked (`1`) or taken out
    /// (`-1`). Lingering closes are not counted.
    fn count(&self, wait: Wait, delta: i64) {
        let why = match wait {
            Wait::Request => metrics::Parked::Read,
            Wait::Write => metrics::Parked::Write,
            Wait::Drain => return,
        };
        if let Some(metrics) = &self.shared.metrics {
            metrics.parked(why, delta);
        }
    }

    /// Takes a connection out of the map (see [`take`]), keeping the gauges.
    fn take(&self, state: &mut State, key: u64) -> Option<Parked> {
        let parked = take(state, key)?;
        self.count(parked.wait, -1);
        Some(parked)
    }

    /// Queues `conn` for a worker (it has work ready without a socket event: buffered
    /// requests, or it is new). Once the stop is over, the connection is given back (`Err`).
    pub fn queue(&self, conn: Conn) -> Result<(), Conn> {
        let state = self.state();
        if state.closed {
            return Err(conn);
        }
        // Sent under the lock, so that the stop, which closes under it too, never leaves a
        // connection behind in the queue.
        let _ = self.shared.queue.0.send(conn);
        drop(state);
        self.wake_a_sleeper();
        Ok(())
    }

    /// Wakes one worker asleep in the set, if any is: one that is not will look at the queue
    /// before it sleeps. (The fences pair with those in [`Parker::next`]: either the worker
    /// sees what was queued, or this sees the worker.)
    fn wake_a_sleeper(&self) {
        fence(Ordering::SeqCst);
        if self.shared.sleepers.load(Ordering::SeqCst) > 0 {
            self.shared.set.wake_one();
        }
    }

    /// Closes the connection that has been idle the longest (a keep-alive connection between
    /// requests, or a new one that has sent nothing), to make room for a newcomer. Returns
    /// whether there was one.
    pub fn evict_idle(&self) -> bool {
        let mut state = self.state();
        let oldest = state.idle.first().map(|&(_, key)| key);
        let evicted = oldest.and_then(|key| self.take(&mut state, key));
        drop(state);
        evicted.is_some()
    }

    /// A worker's next connection: a queued one first (every [`EVENTS_FIRST`]th call, ready
    /// events first), else one whose event it gets from the set (after `idle()`, when nothing
    /// is ready at once and it is about to sleep). Lingering closes woken here are drained on
    /// the way. `None` once the stop is over and the queue is empty: the worker ends.
    pub fn next(&self, idle: &mut dyn FnMut()) -> Option<Conn> {
        let (_, queue) = &self.shared.queue;
        let mut keys = [0; sys::BATCH];
        // Now and then socket events before the queue: connections that always have more work
        // queued (yielding after every turn) must not keep the workers from ever looking at
        // the set, where parked connections wait with their next request. (Found nothing:
        // the look before sleeping need not be repeated at once.)
        let mut looked = false;
        if self.shared.turns.fetch_add(1, Ordering::Relaxed) % EVENTS_FIRST == 0 {
            match self.shared.set.wait_some(&mut keys, false) {
                Ok(0) => looked = true,
                Ok(ready) => {
                    if let Some(conn) = self.take_ready(&keys[..ready]) {
                        return Some(conn);
                    }
                }
                Err(err) => waiting_failed(&err),
            }
        }
        loop {
            if let Ok(conn) = queue.try_recv() {
                if !queue.is_empty() {
                    // Pass the rest on: one wake-up may have stood for several connections.
                    self.wake_a_sleeper();
                }
                return Some(conn);
            }
            if self.shared.closed.load(Ordering::SeqCst) {
                // Everything was queued before the close: what is left is the last.
                return queue.try_recv().ok();
            }
            let ready = if std::mem::take(&mut looked) {
                Ok(0)
            } else {
                self.shared.set.wait_some(&mut keys, false)
            };
            let ready = match ready {
                Ok(0) => {
                    idle();
                    let sleepers = &self.shared.sleepers;
                    sleepers.fetch_add(1, Ordering::SeqCst);
                    fence(Ordering::SeqCst);
                    if !queue.is_empty() || self.shared.closed.load(Ordering::SeqCst) {
                        sleepers.fetch_sub(1, Ordering::SeqCst);
                        continue;
                    }
                    let woken = self.shared.set.wait_some(&mut keys, true);
                    sleepers.fetch_sub(1, Ordering::SeqCst);
                    match woken {
                        Ok(n) => n,
                        Err(err) => {
                            waiting_failed(&err);
                            continue;
                        }
                    }
                }
                Ok(n) => n,
                Err(err) => {
                    waiting_failed(&err);
                    continue;
                }
            };
            if let Some(conn) = self.take_ready(&keys[..ready]) {
                return Some(conn);
            }
        }
    }

    /// Takes the connections whose events came (keys in the set) out of the map, under one
    /// lock: the first waiting for a worker is returned, the others go to the queue (where
    /// this worker, or another one, takes them next), and lingering closes are drained. A
    /// key may be stale (the sweep or an eviction took the connection first, and then it is
    /// theirs; it may even be parked again under a new key), or a wake-up's.
    fn take_ready(&self, keys: &[u64]) -> Option<Conn> {
        let mut taken: [Option<Parked>; sys::BATCH] = std::array::from_fn(|_| None);
        {
            let mut state = self.state();
            for (slot, &key) in taken.iter_mut().zip(keys) {
                if key < sys::RESERVED {
                    *slot = self.take(&mut state, key);
                }
            }
        }
        let mut first = None;
        let mut queued = false;
        for parked in taken.into_iter().flatten() {
            let Parked {
                mut conn,
                wait,
                deadline,
            } = parked;
            match wait {
                Wait::Request | Wait::Write if first.is_none() => first = Some(conn),
                Wait::Request | Wait::Write => {
                    let state = self.state();
                    if state.closed {
                        // The stop is over: closed unserved, like the rest of the queue.
                        continue;
                    }
                    let _ = self.shared.queue.0.send(conn);
                    drop(state);
                    queued = true;
                }
                Wait::Drain => {
                    if !conn::drain(&mut conn) {
                        // Closed if the stop is over: nothing to log.
                        let _ = self.park(conn, Wait::Drain, deadline);
                    }
                }
            }
        }
        if queued {
            self.wake_a_sleeper();
        }
        first
    }
}

/// Takes a connection out of the map, and so into the caller's hands. It may still be armed:
/// a late event for it finds nothing under its key.
fn take(state: &mut State, key: u64) -> Option<Parked> {
    let parked = state.parked.remove(&key)?;
    if parked.closable(false) {
        state.idle.remove(&(parked.conn.idle_since(), key));
    }
    Some(parked)
}

/// An `epoll_wait` that failed for another reason than a signal: logged, and paced.
fn waiting_failed(err: &io::Error) {
    log::error!("waiting for connections: {err}");
    std::thread::sleep(Duration::from_millis(10));
}

mod sweep;
#[cfg(test)]
mod tests;
