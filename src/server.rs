//! Binding, the accept loop, and shutdown. Accepted sockets go to the worker pool; waiting
//! ones go to the poller. Never parses HTTP. May use: config, pool, poller, conn, accesslog.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use polling::{Event, Events, Poller};
use socket2::{Domain, Socket, Type};
use std::os::fd::{AsRawFd, RawFd};

use crate::accesslog::AccessLog;
use crate::config::{Config, Dispatch};
use crate::conn::{self, Conn, Context, Next, Scratch, Slot};
use crate::handler::Site;
use crate::poller::{Parker, Wait};
use crate::pool::{Pool, Submitter};

/// Jobs (ready connections) that may wait for a worker before the producers wait.
const QUEUE: usize = 4096;
/// The listen backlog (the kernel caps it at net.core.somaxconn).
const BACKLOG: i32 = 1024;
/// How long a lingering close waits for the client to finish.
const LINGER: Duration = Duration::from_secs(2);
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
/// At most this many listeners (one per CPU).
const MAX_LISTENERS: usize = 64;

/// A bound server, ready to [`Server::run`].
pub struct Server {
    /// One per CPU (see [`listen`]), all on the same address.
    listeners: Vec<TcpListener>,
    config: Config,
    log: AccessLog,
    stop: Arc<Stop>,
}

struct Stop {
    requested: Arc<AtomicBool>,
    /// The accept loop waits on this; `notify` wakes it.
    poller: Poller,
}

/// Stops a running server from another thread (a signal handler, a test).
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Stop>);

impl ShutdownHandle {
    /// Stops accepting, closes idle connections, lets in-flight replies finish (bounded),
    /// flushes the access log; [`Server::run`] then returns.
    pub fn shutdown(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
        let _ = self.0.poller.notify();
    }
}

impl Server {
    /// Opens the access log and listens on `config.addr` (port 0 picks a free port). When
    /// this returns, connections are already being queued by the kernel.
    pub fn bind(config: Config) -> io::Result<Server> {
        let log = AccessLog::open(config.access_log.as_deref()).map_err(|err| {
            let path = config.access_log.as_deref().unwrap_or("stderr".as_ref());
            io::Error::new(
                err.kind(),
                format!("cannot open access log '{}': {err}", path.display()),
            )
        })?;
        let listeners =
            listen(config.addr, config.dispatch, config.deadlines.idle).map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("cannot listen on {}: {err}", config.addr),
                )
            })?;
        Ok(Server {
            listeners,
            config,
            log,
            stop: Arc::new(Stop {
                requested: Arc::new(AtomicBool::new(false)),
                poller: Poller::new()?,
            }),
        })
    }

    /// The address actually bound (with the real port).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self.listeners.first() {
            Some(listener) => listener.local_addr(),
            None => Err(io::Error::other("no listener")),
        }
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(Arc::clone(&self.stop))
    }

    /// Serves until shut down. Returns an error only if the server could not start its
    /// threads or its accept loop failed for good.
    pub fn run(self) -> io::Result<()> {
        let Server {
            listeners,
            config,
            log,
            stop,
        } = self;
        let parker = Parker::new()?;
        let deadlines = config.deadlines;
        let ctx = Arc::new(Context {
            site: Site {
                root: config.root.clone(),
                list: config.list,
                health: config.health.clone(),
                cache_control: config.cache_control.clone(),
                pages: config.pages.clone(),
            },
            log: log.clone(),
            deadlines,
            stopping: Arc::clone(&stop.requested),
            parked_files: Arc::new(AtomicUsize::new(0)),
        });
        let worker_parker = parker.clone();
        let worker_ctx = Arc::clone(&ctx);
        let pool = Pool::new(
            config.workers,
            QUEUE,
            Scratch::default,
            move |scratch, conn| {
                let handed_over = match conn::serve(conn, &worker_ctx, scratch) {
                    Next::Park(conn) => {
                        let deadline = conn.deadline(&deadlines);
                        worker_parker.park(conn, Wait::Request, deadline)
                    }
                    Next::ParkWrite(conn) => {
                        let deadline = conn.deadline(&deadlines);
                        worker_parker.park(conn, Wait::Write, deadline)
                    }
                    Next::Yield(conn) => worker_parker.requeue(conn),
                    Next::Linger(conn) => {
                        worker_parker.park(conn, Wait::Drain, Instant::now() + LINGER)
                    }
                    Next::Close => Ok(()),
                };
                // The poller has stopped (the grace period is over): the connection closes
                // here, and a reply it cuts off still gets its log line.
                if let Err(conn) = handed_over {
                    conn::abandon(conn, &worker_ctx, scratch);
                }
            },
        )?;

        let (Some(to_workers), Some(from_poller)) = (pool.submitter(), pool.submitter()) else {
            return Err(io::Error::other("worker pool closed at start"));
        };
        let poller_parker = parker.clone();
        let poller_thread = thread::Builder::new()
            .name("poller".into())
            .spawn(move || {
                poller_parker.run(|conn| {
                    let _ = from_poller.submit(conn);
                })
            })?;

        let fd_budget = connection_budget(config.workers, listeners.len());
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
        // Every admitted connection, wherever it is: the stop waits for this to reach zero.
        let open = Arc::new(AtomicUsize::new(0));
        let mut acceptor = Acceptor {
            listeners: &listeners,
            limit,
            // An explicit limit past the budget has already been warned about: then running
            // out of descriptors is what refuses newcomers.
            fd_budget: fd_budget.max(limit),
            open: Arc::clone(&open),
            refused: Arc::new(AtomicUsize::new(0)),
            refusals: 0,
            refusals_logged: None,
            spare: spare_fd(),
            dispatch: config.dispatch,
            parker: &parker,
            to_workers: &to_workers,
            ctx: &ctx,
            scratch: Scratch::default(),
        };
        let result = acceptor.run(&stop);
        drop(acceptor);
        drop(listeners);
        drop(to_workers);

        // Shutdown, in data-flow order: nothing new comes in, idle connections close,
        // in-flight requests finish (bounded by the grace period), then the log is flushed.
        let stop_by = Instant::now() + config.grace;
        let idle = parker.stop(stop_by, open);
        log::info!("shutting down: {idle} idle connections get a last call, then close");
        let _ = poller_thread.join();
        if !pool.shutdown(stop_by.saturating_duration_since(Instant::now())) {
            log::warn!(
                "grace period of {}s over with replies in flight",
                config.grace.as_secs()
            );
        }
        if !log.flush(Duration::from_secs(5)) {
            log::warn!("access log not flushed in time");
        }
        result
    }
}

/// Listens on `addr` with `SO_REUSEPORT`, so a new httpd can start on the port of a running
/// one: start the new one, then SIGTERM the old (another program's listener, without the
/// option or of another user, still makes this fail).
///
/// One listener per CPU, each marked with `SO_INCOMING_CPU`: Linux (6.3+) hands a new
/// connection to a listener marked with the CPU it arrived on. On stop, the old httpd clears
/// its marks, so from that instant the kernel prefers the new one's listeners, and the old
/// one can empty its queues and close without resetting anyone (see [`Acceptor::run`]).
fn listen(addr: SocketAddr, dispatch: Dispatch, idle: Duration) -> io::Result<Vec<TcpListener>> {
    if addr.port() != 0 && port_has_listener(addr) {
        log::warn!("another listener holds {addr}: sharing the port with it (SO_REUSEPORT)");
    }
    let first = listen_one(addr, dispatch, idle)?;
    let addr = first.local_addr()?;
    let marked = set_incoming_cpu(&first, 0).is_ok();
    let mut listeners = vec![first];
    if marked {
        for cpu in 1..cpu_count() {
            let listener = listen_one(addr, dispatch, idle)?;
            set_incoming_cpu(&listener, cpu as libc::c_int)?;
            listeners.push(listener);
        }
    } else {
        log::debug!(
            "SO_INCOMING_CPU unsupported: one listener; restarts may reset a few connections"
        );
    }
    Ok(listeners)
}

fn listen_one(addr: SocketAddr, dispatch: Dispatch, idle: Duration) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Restarts must not wait for TIME_WAIT to clear.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    if dispatch == Dispatch::Defer {
        let secs = libc::c_int::try_from(idle.as_secs()).unwrap_or(libc::c_int::MAX);
        set_int_option(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            secs,
        )?;
    }
    socket.listen(BACKLOG)?;
    let listener: TcpListener = socket.into();
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// CPUs the kernel may process packets on (configured, not just the ones we may run on).
fn cpu_count() -> usize {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    usize::try_from(n).unwrap_or(1).clamp(1, MAX_LISTENERS)
}

/// Marks a listener as the kernel's choice for connections arriving on `cpu`; -1 unmarks.
fn set_incoming_cpu(listener: &impl AsRawFd, cpu: libc::c_int) -> io::Result<()> {
    set_int_option(
        listener.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_INCOMING_CPU,
        cpu,
    )
}

/// setsockopt(2) for an int-valued option: `TCP_DEFER_ACCEPT` and `SO_INCOMING_CPU`, which
/// socket2 has no setters for.
fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid descriptor and a pointer to a local c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether some socket already listens on `addr`: a bind without `SO_REUSEPORT` fails then.
fn port_has_listener(addr: SocketAddr) -> bool {
    let Ok(probe) = Socket::new(Domain::for_address(addr), Type::STREAM, None) else {
        return false;
    };
    let _ = probe.set_reuse_address(true);
    if addr.is_ipv6() {
        let _ = probe.set_only_v6(true);
    }
    matches!(probe.bind(&addr.into()), Err(err) if err.kind() == io::ErrorKind::AddrInUse)
}

/// A descriptor held in reserve: when accept(2) fails with EMFILE, closing it makes room to
/// accept one pending connection and answer it 503, instead of leaving clients to wait in
/// the backlog or spinning on a listener that stays readable.
fn spare_fd() -> Option<File> {
    File::open("/dev/null").ok()
}

/// The accept loop and admission control. Runs on the thread that called [`Server::run`].
struct Acceptor<'a> {
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
    dispatch: Dispatch,
    parker: &'a Parker,
    to_workers: &'a Submitter<Conn>,
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

impl Acceptor<'_> {
    /// Accepts until shutdown is requested. Then hands off: the listeners stop being the
    /// kernel's first choice (so another httpd on the port takes new connections), accepting
    /// goes on for [`HANDOFF`] so handshakes already bound here complete, and what is queued
    /// is taken in before the listeners close. A restart drops nothing.
    fn run(&mut self, stop: &Stop) -> io::Result<()> {
        for (key, listener) in self.listeners.iter().enumerate() {
            // SAFETY: the listeners outlive their registrations, deleted before returning.
            unsafe { stop.poller.add(listener, Event::readable(key))? };
        }
        let every: Vec<usize> = (0..self.listeners.len()).collect();
        let mut events = Events::new();
        let mut backoff_until: Option<Instant> = None;
        let mut handoff_until: Option<Instant> = None;
        let result = loop {
            if handoff_until.is_none() && stop.requested.load(Ordering::SeqCst) {
                for listener in self.listeners {
                    let _ = set_incoming_cpu(listener, -1);
                }
                handoff_until = Some(Instant::now() + HANDOFF);
            }
            if handoff_until.is_some_and(|until| Instant::now() >= until) {
                for &key in &every {
                    while let Accepted::More = self.accept_one(key) {}
                }
                break Ok(());
            }
            events.clear();
            let wake = match (backoff_until, handoff_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timeout = wake.map(|until| until.saturating_duration_since(Instant::now()));
            if let Err(err) = stop.poller.wait(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break Err(err);
            }
            let keys: Vec<usize> = match backoff_until {
                Some(until) if Instant::now() < until => continue,
                // After a pause, every listener may have connections waiting.
                Some(_) => every.clone(),
                None => events.iter().map(|event| event.key).collect(),
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
                stop.poller
                    .modify(&self.listeners[key], Event::readable(key))?;
            }
        };
        for listener in self.listeners {
            let _ = stop.poller.delete(listener);
        }
        result
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
        match listener.accept() {
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
        let room = (open < self.limit && open + files < self.fd_budget) || self.parker.evict_idle();
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
        let conn = Conn::new(stream, peer, Slot::take(&self.open));
        match self.dispatch {
            Dispatch::Direct | Dispatch::Defer => {
                let _ = self.to_workers.submit(conn);
            }
            Dispatch::Poll => {
                let deadline = conn.deadline(&self.ctx.deadlines);
                // Closed if the poller has stopped: nothing was asked of it yet.
                let _ = self.parker.park(conn, Wait::Request, deadline);
            }
        }
    }
}

/// Raises the open-file limit to its hard maximum and returns how many connections that
/// leaves room for: the limit less a reserve for everything else the server opens.
fn connection_budget(workers: usize, listeners: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    let fds = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
    fds.saturating_sub(FD_RESERVE + listeners + 2 * workers + REFUSED_LINGER)
        .max(1)
}

/// Turns the first SIGINT or SIGTERM into a graceful shutdown; a second one exits at once.
pub fn shutdown_on_signals(handle: ShutdownHandle) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                seen += 1;
                if seen == 1 {
                    log::info!("signal {signal}: finishing in-flight requests, then exiting");
                    handle.shutdown();
                } else {
                    log::warn!("signal {signal} again: exiting now");
                    std::process::exit(1);
                }
            }
        })?;
    Ok(())
}
