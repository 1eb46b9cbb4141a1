//! Holds every connection that is waiting for its client, outside the workers: one thread,
//! one epoll set. A readable connection goes back to the pool; one past its deadline is
//! closed (or, with half a head, handed back for a 408); a lingering close is drained here.
//! May use: polling, conn.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use polling::{Event, Events, Poller};

use crate::conn::{self, Conn};

/// How often deadlines are checked: timeouts are whole seconds, so this is precise enough,
/// and a sweep over every parked connection stays cheap at this rate.
const SWEEP: Duration = Duration::from_millis(250);

/// Why a connection is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// For (the rest of) a request: back to the pool when readable.
    Request,
    /// For the client to close after our close: read and drop input until then.
    Drain,
}

/// The shared handle: workers park connections, the poller thread runs [`Parker::run`].
#[derive(Clone)]
pub struct Parker {
    shared: Arc<Shared>,
}

struct Shared {
    poller: Poller,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Keys grow with every park, so the map's order is the order connections were parked
    /// in: the first idle entry is the connection idle the longest.
    next_key: usize,
    parked: BTreeMap<usize, Parked>,
    /// Connections with requests already buffered, to be queued again by the poller thread.
    ready: Vec<Conn>,
    /// Shutting down: see [`Parker::stop`].
    stopping: Option<Stopping>,
    /// The poller thread has returned: nothing can be parked any more.
    closed: bool,
}

#[derive(Clone, Copy)]
struct Stopping {
    /// Everything still parked is closed then.
    by: Instant,
    /// Idle keep-alive connections are closed then.
    last_call: Instant,
}

/// How long idle keep-alive connections stay open after a stop begins: a client in the
/// middle of a run of requests gets its next one answered (with `Connection: close`) instead
/// of having it cut off by our close as it was sent.
const LAST_CALL: Duration = Duration::from_millis(250);

impl Parked {
    /// Closing it loses nothing: it waits for a next request that has not started.
    fn closable(&self, served_only: bool) -> bool {
        self.wait == Wait::Request
            && self.conn.is_idle()
            && (!served_only || self.conn.has_served())
    }
}

struct Parked {
    conn: Conn,
    wait: Wait,
    deadline: Instant,
}

impl Parker {
    pub fn new() -> io::Result<Parker> {
        Ok(Parker {
            shared: Arc::new(Shared {
                poller: Poller::new()?,
                state: Mutex::new(State::default()),
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

    /// Holds `conn` until it is readable (or, for [`Wait::Drain`], until the client closes)
    /// or `deadline` passes. While stopping, an idle keep-alive connection is closed instead;
    /// once the poller has stopped, every connection is.
    pub fn park(&self, conn: Conn, wait: Wait, mut deadline: Instant) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        if let Some(stopping) = state.stopping {
            if wait == Wait::Request && conn.is_idle() && conn.has_served() {
                deadline = deadline.min(stopping.last_call);
            }
        }
        let key = state.next_key;
        state.next_key = state.next_key.wrapping_add(1) % (usize::MAX - 1);
        // Registered under the lock, so the poller thread cannot see the event before the
        // connection is in the map.
        // SAFETY: the fd stays open while its Conn is in `parked`, and every path that takes a
        // Conn out of `parked` deletes the fd from the poller first (`take`).
        let added = unsafe { self.shared.poller.add(&conn.fd(), Event::readable(key)) };
        match added {
            Ok(()) => {
                state.parked.insert(
                    key,
                    Parked {
                        conn,
                        wait,
                        deadline,
                    },
                );
            }
            Err(err) => log::warn!("cannot park a connection: {err}; closing it"),
        }
    }

    /// Queues `conn` again through the poller thread (it has buffered requests).
    pub fn requeue(&self, conn: Conn) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        state.ready.push(conn);
        drop(state);
        let _ = self.shared.poller.notify();
    }

    /// Closes the connection that has been idle the longest (a keep-alive connection between
    /// requests, or a new one that has sent nothing), to make room for a newcomer. Returns
    /// whether there was one.
    pub fn evict_idle(&self) -> bool {
        let mut state = self.state();
        let oldest = state
            .parked
            .iter()
            .find(|(_, parked)| parked.closable(false))
            .map(|(&key, _)| key);
        let evicted = oldest.and_then(|key| self.take(&mut state, key));
        drop(state);
        evicted.is_some()
    }

    /// Starts the shutdown. Idle keep-alive connections close after a last call of
    /// [`LAST_CALL`] (a request that arrives meanwhile is answered with `Connection: close`);
    /// [`Parker::run`] returns once the rest (new connections, heads in progress, lingering
    /// closes) are done, or at `stop_by`, closing whatever is left. Returns how many idle
    /// connections got the last call.
    pub fn stop(&self, stop_by: Instant) -> usize {
        let mut state = self.state();
        let last_call = Instant::now() + LAST_CALL;
        state.stopping = Some(Stopping {
            by: stop_by,
            last_call,
        });
        let mut idle = 0;
        for parked in state.parked.values_mut() {
            if parked.closable(true) {
                parked.deadline = parked.deadline.min(last_call);
                idle += 1;
            }
        }
        drop(state);
        let _ = self.shared.poller.notify();
        idle
    }

    /// The poller thread: waits for readiness and deadlines until [`Parker::stop`].
    /// `submit` hands a connection back to the workers.
    pub fn run(&self, submit: impl Fn(Conn)) {
        let mut events = Events::new();
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            events.clear();
            let timeout = next_sweep.saturating_duration_since(Instant::now());
            if let Err(err) = self.shared.poller.wait(&mut events, Some(timeout)) {
                if err.kind() != io::ErrorKind::Interrupted {
                    log::error!("poller: {err}");
                    std::thread::sleep(SWEEP);
                }
                continue;
            }
            let mut readable = Vec::new();
            let mut expired = Vec::new();
            let ready = {
                let mut state = self.state();
                if let Some(stopping) = state.stopping {
                    let done = state.parked.is_empty() && state.ready.is_empty();
                    if done || Instant::now() >= stopping.by {
                        if !done {
                            log::warn!(
                                "grace period over: closing {} waiting connections",
                                state.parked.len() + state.ready.len()
                            );
                        }
                        for (_, parked) in std::mem::take(&mut state.parked) {
                            let _ = self.shared.poller.delete(parked.conn.fd());
                        }
                        state.ready.clear();
                        state.closed = true;
                        return;
                    }
                }
                for event in events.iter() {
                    if let Some(parked) = self.take(&mut state, event.key) {
                        readable.push(parked);
                    }
                }
                let now = Instant::now();
                if now >= next_sweep {
                    next_sweep = now + SWEEP;
                    let late: Vec<usize> = state
                        .parked
                        .iter()
                        .filter(|(_, parked)| parked.deadline <= now)
                        .map(|(&key, _)| key)
                        .collect();
                    expired.extend(
                        late.into_iter()
                            .filter_map(|key| self.take(&mut state, key)),
                    );
                }
                std::mem::take(&mut state.ready)
            };
            for conn in ready {
                submit(conn);
            }
            for Parked {
                mut conn,
                wait,
                deadline,
            } in readable
            {
                match wait {
                    Wait::Request => submit(conn),
                    Wait::Drain => {
                        if !conn::drain(&mut conn) {
                            self.park(conn, Wait::Drain, deadline);
                        }
                    }
                }
            }
            for Parked { mut conn, wait, .. } in expired {
                // An idle keep-alive connection just closes (as nginx does); half a head
                // gets its 408 from a worker.
                if wait == Wait::Request && conn.has_partial_request() {
                    conn.expire();
                    submit(conn);
                }
            }
        }
    }

    fn take(&self, state: &mut State, key: usize) -> Option<Parked> {
        let parked = state.parked.remove(&key)?;
        let _ = self.shared.poller.delete(parked.conn.fd());
        Some(parked)
    }
}
