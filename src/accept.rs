//! The accept loop and admission control: takes connections off the listeners and sends
//! each to the workers' queue, closes the longest-idle one to
//! make room at the limit, answers 503 when none is idle, and on a stop hands the port over
//! to a successor without dropping a connection. Never parses HTTP.
//! May use: config, conn, listen, poller, sys.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::conn::{self, Conn, Context, Scratch, Slot};
use crate::listen;
use crate::poller::{Parker, Wait};
use crate::sys::{self, Set, RESERVED};

/// How long to stop accepting after running out of file descriptors with no spare left.
const FD_BACKOFF: Duration = Duration::from_millis(100);
/// Refused connections that may linger after their 503 (beyond the limit), so a request
/// arriving just after it does not reset the 503 away; the rest close at once.
const REFUSED_LINGER: usize = 32;
const REFUSED_LINGER_TIME: Duration = Duration::from_secs(1);
/// At most one log line per this long about newcomers answered 503.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
/// Descriptors kept free of connections: listeners, pollers, log, stdio, plus one file
/// per worker (and one more for a directory's index) so a worker can always open a file.
const FD_RESERVE: usize = 32;
/// How long a stopping httpd keeps accepting after it stops being the kernel's first choice,
/// so that handshakes already under way with it complete (a round trip, with room to spare).
const HANDOFF: Duration = Duration::from_millis(500);

/// A stop request, and the accept loop's epoll set that it wakes.
pub struct Stop {
    /// Set once a stop is requested; connections see it too (finish the reply, then close).
    pub requested: Arc<AtomicBool>,
    /// What the accept loop waits on: its listeners' readiness, and [`Stop::request`].
    accept_set: Set,
}

impl Stop {
    pub fn new() -> io::Result<Stop> {
        Ok(Stop {
            requested: Arc::new(AtomicBool::new(false)),
            accept_set: Set::new()?,
        })
    }

    /// Asks the accept loop to hand off and return. One edge-triggered wake-up, not the
    /// set's level-triggered stop: the loop goes on waiting in the set for the hand-off, and
    /// a stop that stays ready would make every one of those waits return at once (a spin).
    /// The flag is set first, so the loop that the wake-up reaches sees it.
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.accept_set.wake_one();
    }
}

/// How many connections `fd_limit` open files leave room for: the limit less a reserve for
/// everything else the server opens (listeners, two per worker, refused connections
/// lingering after their 503). At least 1.
pub fn connection_budget(fd_limit: u64, workers: usize, listeners: usize) -> usize {
    let fds = usize::try_from(fd_limit).unwrap_or(usize::MAX);
    fds.saturating_sub(FD_RESERVE + listeners + 2 * workers + REFUSED_LINGER)
        .max(1)
}

/// The accept loop and admission control. Runs on the thread that called `Server::run`.
pub struct Acceptor<'a> {
    listeners: &'a [TcpListener],
    limit: usize,
    /// Descriptors connections and the files of their parked replies may use together.
    fd_budget: usize,
    /// Connections counted against `limit` (each holds a [`Slot`]).
    open: Arc<AtomicUsize>,
    /// Refused connections lingering after their 503, counted against [`REFUSED_LINGER`].
    refused: Arc<AtomicUsize>,
    /// Newcomers answered 503 since the last log line about it, and when that was.
    refusals: usize,
    refusals_logged: Option<Instant>,
    spare: Option<File>,
    parker: &'a Parker,
    ctx: &'a Context,
    scratch: Scratch,
}

/// What one accept attempt found.
enum Accepted {
    More,
    Empty,
    /// Out of descriptors or memory, with no spare to make room: wait a little.
    Exhausted,
}

impl<'a> Acceptor<'a> {
    /// Admits at most `--max-connections` at once, or, without it, the `fd_budget` that the
    /// open-file limit leaves (see [`connection_budget`]). Every admitted connection holds a
    /// slot in `open` until it closes, wherever it is.
    pub fn new(
        listeners: &'a [TcpListener],
        config: &Config,
        fd_budget: usize,
        open: Arc<AtomicUsize>,
        parker: &'a Parker,
        ctx: &'a Context,
    ) -> Acceptor<'a> {
        let limit = match config.max_connections {
            Some(max) => {
                if max > fd_budget {
                    log::warn!(
                        "--max-connections {max} exceeds the {fd_budget} the open-file limit \
                         allows; past that, newcomers get 503 when descriptors run out"
                    );
                }
                max
            }
            None => fd_budget,
        };
        log::debug!("at most {limit} open connections");
        Acceptor {
            listeners,
            limit,
            // An explicit limit past the budget has already been warned about: then running
            // out of descriptors is what refuses newcomers.
            fd_budget: fd_budget.max(limit),
            open,
            refused: Arc::new(AtomicUsize::new(0)),
            refusals: 0,
            refusals_logged: None,
            spare: spare_fd(),
            parker,
            ctx,
            scratch: Scratch::for_acceptor(ctx),
        }
    }

    /// Accepts until shutdown is requested. Then hands off: the listeners stop being the
    /// kernel's first choice (so another httpd on the port takes new connections), accepting
    /// goes on for [`HANDOFF`] so handshakes already bound here complete, and what is queued
    /// is taken in before the listeners close. A restart drops nothing.
    pub fn run(&mut self, stop: &Stop) -> io::Result<()> {
        let listeners = self.listeners;
        // One-shot registrations, armed again after each round of accepts. A listener leaves
        // the set when it closes.
        for (key, listener) in listeners.iter().enumerate() {
            stop.accept_set
                .arm(listener.as_fd(), key as u64, false, true)?;
        }
        let every: Vec<usize> = (0..listeners.len()).collect();
        let mut events = Vec::with_capacity(listeners.len() + 2);
        let mut backoff_until: Option<Instant> = None;
        let mut handoff_until: Option<Instant> = None;
        loop {
            if handoff_until.is_none() && stop.requested.load(Ordering::SeqCst) {
                for listener in listeners {
                    let _ = listen::unmark(listener);
                }
                handoff_until = Some(Instant::now() + HANDOFF);
            }
            if handoff_until.is_some_and(|until| Instant::now() >= until) {
                for &key in &every {
                    while let Accepted::More = self.accept_one(key) {}
                }
                return Ok(());
            }
            let wake = match (backoff_until, handoff_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timeout = wake.map(|until| until.saturating_duration_since(Instant::now()));
            // The 503 lines of this round go out before the loop waits, as a worker's do.
            self.scratch.flush_log();
            stop.accept_set.wait(&mut events, timeout)?;
            let keys: Vec<usize> = match backoff_until {
                Some(until) if Instant::now() < until => continue,
                // After a pause, every listener may have connections waiting.
                Some(_) => every.clone(),
                None => events
                    .iter()
                    .filter(|&&key| key < RESERVED)
                    .filter_map(|&key| usize::try_from(key).ok())
                    .collect(),
            };
            backoff_until = None;
            for key in keys {
                loop {
                    match self.accept_one(key) {
                        Accepted::More => {}
                        Accepted::Empty => break,
                        Accepted::Exhausted => {
                            backoff_until = Some(Instant::now() + FD_BACKOFF);
                            break;
                        }
                    }
                }
                // The registration is one-shot: arm it again.
                if let Some(listener) = listeners.get(key) {
                    stop.accept_set
                        .arm(listener.as_fd(), key as u64, false, false)?;
                }
            }
        }
    }

    /// Accepts one connection and admits or refuses it.
    fn accept_one(&mut self, key: usize) -> Accepted {
        let listeners = self.listeners;
        let Some(listener) = listeners.get(key) else {
            return Accepted::Empty;
        };
        if self.spare.is_none() {
            self.spare = spare_fd();
        }
        match sys::accept_nonblocking(listener) {
            Ok((stream, peer)) => {
                self.admit(stream, peer);
                Accepted::More
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Accepted::Empty,
            Err(err) => match err.raw_os_error() {
                Some(libc::EMFILE | libc::ENFILE) if self.spare.is_some() => {
                    // Free the spare, take the connection off the queue, answer 503, close.
                    // accept(2) takes a descriptor before it looks at the queue, so EMFILE
                    // does not mean anyone is waiting: an empty queue ends the round.
                    self.spare = None;
                    let next = match listener.accept() {
                        Ok((stream, peer)) => {
                            self.note_refusal(format_args!("accept: {err}"));
                            conn::refuse(stream, peer, self.ctx, &mut self.scratch, None);
                            Accepted::More
                        }
                        Err(again) if again.kind() == io::ErrorKind::WouldBlock => Accepted::Empty,
                        Err(again) => {
                            log::warn!("accept: {again}; pausing accepts for {FD_BACKOFF:?}");
                            Accepted::Exhausted
                        }
                    };
                    self.spare = spare_fd();
                    next
                }
                // Out of descriptors (and no spare) or memory: pause accepting instead of
                // spinning on a listener that stays readable.
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    log::warn!("accept: {err}; pausing accepts for {FD_BACKOFF:?}");
                    Accepted::Exhausted
                }
                // The client gave up before we accepted, or a transient network error.
                _ => {
                    log::debug!("accept: {err}");
                    Accepted::More
                }
            },
        }
    }

    /// Counts a newcomer answered 503, and says so in the log at most every
    /// [`REFUSAL_LOG_EVERY`], so an overload or an attack cannot flood the log.
    fn note_refusal(&mut self, why: std::fmt::Arguments<'_>) {
        if let Some(metrics) = &self.ctx.metrics {
            metrics.refused();
        }
        self.refusals += 1;
        let now = Instant::now();
        if self
            .refusals_logged
            .is_none_or(|at| now >= at + REFUSAL_LOG_EVERY)
        {
            log::warn!("{why}: {} newcomers answered 503", self.refusals);
            self.refusals = 0;
            self.refusals_logged = Some(now);
        }
    }

    /// Admission control: under the limit, the connection goes to work; at it, the oldest
    /// idle connection makes room (as nginx does); with none idle, the newcomer gets 503.
    /// A reply parked with its file open holds a second descriptor, so those count against
    /// the descriptor budget too.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let open = self.open.load(Ordering::SeqCst);
        let files = self.ctx.parked_files.load(Ordering::SeqCst);
        let room = (open < self.limit && open + files < self.fd_budget) || self.evict_idle();
        if !room {
            let limit = self.limit;
            if open >= limit {
                self.note_refusal(format_args!(
                    "{open} connections open (--max-connections {limit}) and none idle"
                ));
            } else {
                let budget = self.fd_budget;
                self.note_refusal(format_args!(
                    "{open} connections and {files} files of parked replies use the \
                     {budget} descriptors available, and no connection is idle"
                ));
            }
            let slot = (self.refused.load(Ordering::SeqCst) < REFUSED_LINGER)
                .then(|| Slot::take(&self.refused));
            if let Some(conn) = conn::refuse(stream, peer, self.ctx, &mut self.scratch, slot) {
                self.parker
                    .park(conn, Wait::Drain, Instant::now() + REFUSED_LINGER_TIME)
                    .ok();
            }
            return;
        }
        if let Some(metrics) = &self.ctx.metrics {
            metrics.accepted();
        }
        let conn = Conn::accepted(stream, peer, Slot::take(&self.open));
        // Onto the workers' queue (a waiting worker is woken for it), not into the epoll set
        // to wait for its first bytes: measured, the queue costs less CPU per connection
        // (ab_results/README.md, "leader/followers").  Closed if the stop is over: nothing
        // was asked of it yet.
        let _ = self.parker.queue(conn);
    }
}

impl Acceptor<'_> {
    /// Closes the connection idle the longest, if there is one (and counts it).
    fn evict_idle(&self) -> bool {
        let evicted = self.parker.evict_idle();
        if let (true, Some(metrics)) = (evicted, &self.ctx.metrics) {
            metrics.evicted();
        }
        evicted
    }
}

/// A descriptor held in reserve: when accept(2) fails with EMFILE, closing it makes room to
/// accept one pending connection and answer it 503, instead of leaving clients to wait in
/// the backlog or spinning on a listener that stays readable.
fn spare_fd() -> Option<File> {
    File::open("/dev/null").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_the_limit_less_the_reserve() {
        let reserve = FD_RESERVE + 4 + 2 * 8 + REFUSED_LINGER;
        assert_eq!(connection_budget(1024, 8, 4), 1024 - reserve);
        assert_eq!(connection_budget(10, 8, 4), 1, "never zero");
        assert_eq!(connection_budget(0, 8, 4), 1, "limit unknown");
        assert_eq!(
            connection_budget(u64::MAX, 8, 4),
            usize::MAX - reserve,
            "unlimited"
        );
    }
}
