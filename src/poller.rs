//! Holds every connection that is waiting for its client, outside the workers: one thread,
//! one epoll set. A connection waiting to read goes back to the pool when readable, one with
//! an unfinished reply when writable; one past its deadline is closed (or handed back for a
//! 408, or for its cut-off reply to be logged); a lingering close is drained here.
//! May use: polling, conn, sys (epoll registration), metrics (gauges of parked connections).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use polling::{Event, Events, Poller};

use crate::conn::{self, Conn};
use crate::metrics::{self, Metrics};
use crate::sys::Registered;

/// How often deadlines are checked: timeouts are whole seconds, so this is precise enough,
/// and a sweep over every parked connection stays cheap at this rate.
const SWEEP: Duration = Duration::from_millis(250);

/// Why a connection is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// For (the rest of) a request: back to the pool when readable.
    Request,
    /// For the client to make room for the rest of a reply: back to the pool when writable.
    Write,
    /// For the client to close after our close: read and drop input until then.
    Drain,
}

/// The shared handle: workers park connections, the poller thread runs [`Parker::run`].
#[derive(Clone)]
pub struct Parker {
    shared: Arc<Shared>,
}

struct Shared {
    /// Shared with every registration, which deletes itself from it (see [`Registered`]).
    poller: Arc<Poller>,
    state: Mutex<State>,
    /// The status page's counters (`--status`), for the parked gauges.
    metrics: Option<Arc<Metrics>>,
}

#[derive(Default)]
struct State {
    /// Keys grow with every park.
    next_key: usize,
    parked: BTreeMap<usize, Parked>,
    /// The parked connections [`Parker::evict_idle`] may close, oldest idle first. Not the
    /// order of parking: two workers can park in the opposite order of the replies their
    /// clients saw.
    idle: BTreeSet<(Instant, usize)>,
    /// Connections with requests already buffered, to be queued again by the poller thread.
    ready: Vec<Conn>,
    /// Shutting down: see [`Parker::stop`].
    stopping: Option<Stopping>,
    /// The poller thread has returned: nothing can be parked any more.
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

impl Parked {
    /// Closing it loses nothing: it waits for a next request that has not started.
    fn closable(&self, served_only: bool) -> bool {
        self.wait == Wait::Request
            && self.conn.0.is_idle()
            && (!served_only || self.conn.0.has_served())
    }
}

/// A parked connection: registered in the epoll set for as long as it is in the map.
struct Parked {
    conn: Registered<Held, Arc<Poller>>,
    wait: Wait,
    deadline: Instant,
}

/// A connection as registered: its socket is what the epoll set watches.
struct Held(Conn);

impl AsFd for Held {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.fd()
    }
}

/// A connection taken out of the map, no longer registered.
struct Unparked {
    conn: Conn,
    wait: Wait,
    deadline: Instant,
}

impl Parker {
    /// A parker that keeps `metrics`' parked gauges (`--status`) if given.
    pub fn new(metrics: Option<Arc<Metrics>>) -> io::Result<Parker> {
        Ok(Parker {
            shared: Arc::new(Shared {
                poller: Arc::new(Poller::new()?),
                state: Mutex::new(State::default()),
                metrics,
            }),
        })
    }

    /// STATUS TOUCH POINT: the status page's gauges (`--status`): a connection parked (`1`)
    /// or taken out (`-1`). Lingering closes are not counted.
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

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the map half-updated: every update is one call.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Holds `conn` until it is readable (for [`Wait::Write`], writable; for [`Wait::Drain`],
    /// until the client closes) or `deadline` passes. While stopping, an idle keep-alive
    /// connection gets only the last call. Once the poller has stopped, the connection is
    /// given back (`Err`), so that the caller can log a reply it cuts off.
    pub fn park(&self, conn: Conn, wait: Wait, mut deadline: Instant) -> Result<(), Conn> {
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
        // `polling` keeps the key `usize::MAX` for its own wake-ups (`notify`), so keys wrap
        // before it. (Wrapping cannot collide with a parked key in practice: that would take
        // 2^64 parks while one connection stays parked.)
        state.next_key = if key >= usize::MAX - 1 { 0 } else { key + 1 };
        let interest = match wait {
            Wait::Write => Event::writable(key),
            Wait::Request | Wait::Drain => Event::readable(key),
        };
        // Registered under the lock, so the poller thread cannot see the event before the
        // connection is in the map; it stays registered exactly as long as it is in the map.
        let idle = wait == Wait::Request && conn.is_idle();
        let idle_since = conn.idle_since();
        match Registered::add(Arc::clone(&self.shared.poller), Held(conn), interest) {
            Ok(conn) => {
                if idle {
                    state.idle.insert((idle_since, key));
                }
                self.count(wait, 1); // STATUS TOUCH POINT
                state.parked.insert(
                    key,
                    Parked {
                        conn,
                        wait,
                        deadline,
                    },
                );
            }
            Err((err, Held(conn))) => {
                log::warn!("cannot park a connection: {err}; closing it");
                return Err(conn);
            }
        }
        Ok(())
    }

    /// Queues `conn` again through the poller thread (it has more work ready). Once the poller
    /// has stopped, the connection is given back (`Err`).
    pub fn requeue(&self, conn: Conn) -> Result<(), Conn> {
        let mut state = self.state();
        if state.closed {
            return Err(conn);
        }
        state.ready.push(conn);
        drop(state);
        let _ = self.shared.poller.notify();
        Ok(())
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

    /// Starts the shutdown. Idle keep-alive connections close after a last call of
    /// [`LAST_CALL`] (a request that arrives meanwhile is answered with `Connection: close`);
    /// [`Parker::run`] returns once every connection counted in `open` is done (replies in
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
        let _ = self.shared.poller.notify();
        idle
    }

    /// The poller thread: waits for readiness and deadlines until [`Parker::stop`].
    /// `submit` hands a connection back to the workers.
    pub fn run(&self, submit: impl Fn(Conn)) {
        let mut events = Events::new();
        // Reused across wake-ups: a wake-up allocates nothing.
        let mut readable = Vec::new();
        let mut expired = Vec::new();
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
            let ready = {
                let mut state = self.state();
                if let Some(stopping) = &state.stopping {
                    // A connection at a worker is in neither map, so the count decides.
                    let done = state.parked.is_empty()
                        && state.ready.is_empty()
                        && stopping.open.load(Ordering::SeqCst) == 0;
                    if done || Instant::now() >= stopping.by {
                        if !done {
                            log::warn!(
                                "grace period over: closing {} waiting connections",
                                state.parked.len() + state.ready.len()
                            );
                        }
                        let mut cut_off = Vec::new();
                        state.idle.clear();
                        for (_, parked) in std::mem::take(&mut state.parked) {
                            self.count(parked.wait, -1); // STATUS TOUCH POINT
                            let Held(mut conn) = parked.conn.into_inner();
                            if parked.wait == Wait::Write {
                                conn.expire();
                                cut_off.push(conn);
                            }
                        }
                        for mut conn in std::mem::take(&mut state.ready) {
                            if conn.is_writing() {
                                conn.expire();
                                cut_off.push(conn);
                            }
                        }
                        state.closed = true;
                        drop(state);
                        // Replies cut off by the end of the grace period still get their
                        // log line: a worker closes them.
                        for conn in cut_off {
                            submit(conn);
                        }
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
                        .iter_mut()
                        .filter_map(|(&key, parked)| {
                            // A client that takes bytes the kernel had queued is reading.
                            if parked.wait == Wait::Write {
                                let conn = &mut parked.conn.get_mut().0;
                                if let Some(deadline) = conn.sample_send_queue(now) {
                                    parked.deadline = deadline;
                                }
                            }
                            (parked.deadline <= now).then_some(key)
                        })
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
            for Unparked {
                mut conn,
                wait,
                deadline,
            } in readable.drain(..)
            {
                match wait {
                    Wait::Request | Wait::Write => submit(conn),
                    Wait::Drain => {
                        if !conn::drain(&mut conn) {
                            // Closed if the poller has stopped: nothing to log.
                            let _ = self.park(conn, Wait::Drain, deadline);
                        }
                    }
                }
            }
            for Unparked { mut conn, wait, .. } in expired.drain(..) {
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
                    submit(conn);
                }
            }
        }
    }

    /// Takes a connection out of the map and out of the epoll set.
    fn take(&self, state: &mut State, key: usize) -> Option<Unparked> {
        let parked = state.parked.remove(&key)?;
        self.count(parked.wait, -1); // STATUS TOUCH POINT
        if parked.closable(false) {
            state.idle.remove(&(parked.conn.0.idle_since(), key));
        }
        let Held(conn) = parked.conn.into_inner();
        Some(Unparked {
            conn,
            wait: parked.wait,
            deadline: parked.deadline,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    use super::*;
    use crate::conn::Slot;

    /// A connected pair over loopback: the server side wrapped as a `Conn`, and the client.
    fn pair(listener: &TcpListener, open: &Arc<AtomicUsize>) -> (Conn, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        (Conn::new(server, peer, Slot::take(open)), client)
    }

    fn closed(client: &mut TcpStream) -> bool {
        client.set_nonblocking(true).unwrap();
        matches!(client.read(&mut [0u8; 16]), Ok(0))
    }

    #[test]
    fn eviction_closes_the_connection_idle_longest_not_the_one_parked_first() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let parker = Parker::new(None).unwrap();
        let (older, mut older_client) = pair(&listener, &open);
        std::thread::sleep(Duration::from_millis(2));
        let (newer, mut newer_client) = pair(&listener, &open);
        let later = Instant::now() + Duration::from_secs(60);
        // The newer one is parked first, as when the worker of the older one is slow to
        // park it after its reply went out.
        assert!(parker.park(newer, Wait::Request, later).is_ok());
        assert!(parker.park(older, Wait::Request, later).is_ok());
        assert!(parker.evict_idle());
        std::thread::sleep(Duration::from_millis(20));
        assert!(closed(&mut older_client), "the older connection is closed");
        assert!(!closed(&mut newer_client), "the newer one stays open");
        assert_eq!(open.load(Ordering::SeqCst), 1);
        assert!(parker.evict_idle());
        assert!(!parker.evict_idle(), "nothing idle is left");
        assert_eq!(open.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_connection_that_left_is_no_longer_a_candidate() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let parker = Parker::new(None).unwrap();
        let (conn, _client) = pair(&listener, &open);
        let later = Instant::now() + Duration::from_secs(60);
        assert!(parker.park(conn, Wait::Request, later).is_ok());
        let key = *parker.state().parked.keys().next().unwrap();
        let taken = parker.take(&mut parker.state(), key);
        assert!(taken.is_some());
        assert!(parker.state().idle.is_empty());
        assert!(!parker.evict_idle());
        drop(taken);
    }
}
