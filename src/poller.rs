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
    /// Flipped by every [`Parker::next`]: whether that one looks at the set before the
    /// queue.
    events_first: AtomicBool,
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
                events_first: AtomicBool::new(false),
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

    /// A worker's next connection: a queued one first (every other call, a ready event
    /// first), else the one whose event it gets from the set (after `idle()`, when nothing is
    /// ready at once and it is about to sleep).
    /// Lingering closes woken here are drained on the way. `None` once the stop is over and
    /// the queue is empty: the worker ends.
    pub fn next(&self, idle: &mut dyn FnMut()) -> Option<Conn> {
        let (_, queue) = &self.shared.queue;
        // Every other time, a socket event before the queue: connections that always have
        // more work queued (yielding after every turn) must not keep the workers from ever
        // looking at the set, where parked connections wait with their next request.
        // (Found nothing: the look before sleeping need not be repeated at once.)
        let mut looked = false;
        if self.shared.events_first.fetch_xor(true, Ordering::Relaxed) {
            match self.shared.set.wait_one(false) {
                Ok(Some(key)) => {
                    if let Some(conn) = self.claim(key) {
                        return Some(conn);
                    }
                }
                Ok(None) => looked = true,
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
                Ok(None)
            } else {
                self.shared.set.wait_one(false)
            };
            let key = match ready {
                Ok(Some(key)) => key,
                Ok(None) => {
                    idle();
                    let sleepers = &self.shared.sleepers;
                    sleepers.fetch_add(1, Ordering::SeqCst);
                    fence(Ordering::SeqCst);
                    if !queue.is_empty() || self.shared.closed.load(Ordering::SeqCst) {
                        sleepers.fetch_sub(1, Ordering::SeqCst);
                        continue;
                    }
                    let woken = self.shared.set.wait_one(true);
                    sleepers.fetch_sub(1, Ordering::SeqCst);
                    match woken {
                        Ok(Some(key)) => key,
                        Ok(None) => continue,
                        Err(err) => {
                            waiting_failed(&err);
                            continue;
                        }
                    }
                }
                Err(err) => {
                    waiting_failed(&err);
                    continue;
                }
            };
            if let Some(conn) = self.claim(key) {
                return Some(conn);
            }
        }
    }

    /// The connection whose event a worker got under `key`, if it is now the worker's: not
    /// for a wake-up or a stop (the caller looks at the queue next), nor for a stale event,
    /// nor for a lingering close, which is drained here and parked again if need be.
    fn claim(&self, key: u64) -> Option<Conn> {
        if key >= sys::RESERVED {
            return None;
        }
        // The event may be stale: the sweep or an eviction took the connection first, and
        // then it is theirs (it may even be parked again under a new key).
        let Parked {
            mut conn,
            wait,
            deadline,
        } = self.take(&mut self.state(), key)?;
        match wait {
            Wait::Request | Wait::Write => Some(conn),
            Wait::Drain => {
                if !conn::drain(&mut conn) {
                    // Closed if the stop is over: nothing to log.
                    let _ = self.park(conn, Wait::Drain, deadline);
                }
                None
            }
        }
    }

    /// Starts the shutdown. Idle keep-alive connections close after a last call of
    /// [`LAST_CALL`] (a request that arrives meanwhile is answered with `Connection: close`);
    /// [`Parker::sweep`] returns once every connection counted in `open` is done (replies in
    /// flight at a worker or parked, new connections, heads in progress, lingering closes),
    /// or at `stop_by`, closing whatever is left. Returns how many idle connections got the
    /// last call.
    pub fn stop(&self, stop_by: Instant, open: Arc<AtomicUsize>) -> usize {
        let mut state = self.state();
        let last_call = Instant::now() + LAST_CALL;
        state.stopping = Some(Stopping {
            by: stop_by,
            last_call,
            open,
        });
        let mut idle = 0;
        for parked in state.parked.values_mut() {
            if parked.closable(true) {
                parked.deadline = parked.deadline.min(last_call);
                idle += 1;
            }
        }
        drop(state);
        self.shared.nudge.notify_all();
        idle
    }

    /// The sweep thread: closes or hands back connections past their deadlines until the
    /// stop is over.
    pub fn sweep(&self) {
        // Reused across sweeps: a sweep allocates nothing when nothing expires.
        let mut late = Vec::new();
        let mut expired = Vec::new();
        let mut state = self.state();
        loop {
            let pause = if state.stopping.is_some() {
                STOP_CHECK
            } else {
                SWEEP
            };
            state = match self.shared.nudge.wait_timeout(state, pause) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
            if self.stop_is_over(&mut state) {
                return;
            }
            let now = Instant::now();
            for (&key, parked) in state.parked.iter_mut() {
                // A client that takes bytes the kernel had queued is reading.
                if parked.wait == Wait::Write {
                    if let Some(deadline) = parked.conn.sample_send_queue(now) {
                        parked.deadline = deadline;
                    }
                }
                if parked.deadline <= now {
                    late.push(key);
                }
            }
            expired.extend(late.drain(..).filter_map(|key| self.take(&mut state, key)));
            if expired.is_empty() {
                continue;
            }
            drop(state);
            for Parked { mut conn, wait, .. } in expired.drain(..) {
                // An idle keep-alive connection just closes (as nginx does); half a head
                // gets its 408 from a worker; a reply the client stopped taking is closed by
                // a worker, which logs the bytes that went out.
                let handed_back = match wait {
                    Wait::Request => conn.has_partial_request(),
                    Wait::Write => true,
                    Wait::Drain => false,
                };
                if handed_back {
                    conn.expire();
                    // Closed if the stop is over (it is not: only this thread ends it).
                    let _ = self.queue(conn);
                }
            }
            state = self.state();
        }
    }

    /// During a stop: whether it is over (every connection done, or the grace period
    /// spent). If it is, whatever is still parked or queued is closed, except replies cut
    /// off, which are queued for a worker to log; then workers are told to finish.
    fn stop_is_over(&self, state: &mut State) -> bool {
        let Some(stopping) = &state.stopping else {
            return false;
        };
        let (_, queue) = &self.shared.queue;
        // A connection at a worker is in neither the map nor the queue, so the count decides.
        let done = state.parked.is_empty()
            && queue.is_empty()
            && stopping.open.load(Ordering::SeqCst) == 0;
        if !done && Instant::now() < stopping.by {
            return false;
        }
        for parked in state.parked.values() {
            self.count(parked.wait, -1);
        }
        let mut left: Vec<Conn> = std::mem::take(&mut state.parked)
            .into_values()
            .filter(|parked| parked.wait == Wait::Write)
            .map(|parked| parked.conn)
            .collect();
        left.extend(queue.try_iter().filter(Conn::is_writing));
        if !done {
            log::warn!(
                "grace period over: closing the waiting connections ({} replies cut off)",
                left.len()
            );
        }
        state.idle.clear();
        // Replies cut off by the end of the grace period still get their log line: a
        // worker closes them.
        for mut conn in left {
            conn.expire();
            let _ = self.shared.queue.0.send(conn);
        }
        state.closed = true;
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.set.stop();
        true
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

#[cfg(test)]
mod tests;
