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
use std::os::fd::AsRawFd;

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
/// Descriptors kept free of connections: the listener, pollers, log, stdio, plus one file
/// per worker (and one more for a directory's index) so a worker can always open a file.
const FD_RESERVE: usize = 32;
const LISTENER: usize = 0;

/// A bound server, ready to [`Server::run`].
pub struct Server {
    listener: TcpListener,
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
        let listener =
            listen(config.addr, config.dispatch, config.deadlines.idle).map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("cannot listen on {}: {err}", config.addr),
                )
            })?;
        Ok(Server {
            listener,
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
        self.listener.local_addr()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(Arc::clone(&self.stop))
    }

    /// Serves until shut down. Returns an error only if the server could not start its
    /// threads or its accept loop failed for good.
    pub fn run(self) -> io::Result<()> {
        let Server {
            listener,
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
        });
        let worker_parker = parker.clone();
        let worker_ctx = Arc::clone(&ctx);
        let pool = Pool::new(
            config.workers,
            QUEUE,
            Scratch::default,
            move |scratch, conn| match conn::serve(conn, &worker_ctx, scratch) {
                Next::Park(conn) => {
                    let deadline = conn.deadline(&deadlines);
                    worker_parker.park(conn, Wait::Request, deadline)
                }
                Next::Yield(conn) => worker_parker.requeue(conn),
                Next::Linger(conn) => {
                    worker_parker.park(conn, Wait::Drain, Instant::now() + LINGER)
                }
                Next::Close => {}
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

        let fd_budget = connection_budget(config.workers);
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
        let mut acceptor = Acceptor {
            listener: &listener,
            limit,
            open: Arc::new(AtomicUsize::new(0)),
            refused: Arc::new(AtomicUsize::new(0)),
            full: false,
            spare: spare_fd(),
            dispatch: config.dispatch,
            send_timeout: config.send_timeout,
            parker: &parker,
            to_workers: &to_workers,
            ctx: &ctx,
            scratch: Scratch::default(),
        };
        let result = acceptor.run(&stop);
        drop(acceptor);
        drop(listener);
        drop(to_workers);

        // Shutdown, in data-flow order: nothing new comes in, idle connections close,
        // in-flight requests finish (bounded by the grace period), then the log is flushed.
        let stop_by = Instant::now() + config.grace;
        let closed = parker.stop(stop_by);
        log::info!("shutting down: {closed} idle connections closed");
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

/// Binds with `SO_REUSEPORT`, so a new httpd can start on the port of a running one (a
/// zero-downtime restart: start the new one, then SIGTERM the old). Another program's
/// listener (without the option, or another user's) still makes this fail.
fn listen(addr: SocketAddr, dispatch: Dispatch, idle: Duration) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Restarts must not wait for TIME_WAIT to clear.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if addr.port() != 0 && port_has_listener(addr) {
        log::warn!("another listener holds {addr}: sharing the port with it (SO_REUSEPORT)");
    }
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    if dispatch == Dispatch::Defer {
        let secs = libc::c_int::try_from(idle.as_secs()).unwrap_or(libc::c_int::MAX);
        set_defer_accept(&socket, secs)?;
    }
    socket.listen(BACKLOG)?;
    let listener: TcpListener = socket.into();
    listener.set_nonblocking(true)?;
    Ok(listener)
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

/// `TCP_DEFER_ACCEPT`: accept(2) returns a connection only once its first data has arrived
/// (or after about `secs`), so a worker's first read rarely finds nothing.
fn set_defer_accept(socket: &Socket, secs: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt with a valid descriptor and a pointer to a local c_int of the size
    // passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A descriptor held in reserve: when accept(2) fails with EMFILE, closing it makes room to
/// accept one pending connection and answer it 503, instead of leaving clients to wait in
/// the backlog or spinning on a listener that stays readable.
fn spare_fd() -> Option<File> {
    File::open("/dev/null").ok()
}

/// The accept loop and admission control. Runs on the thread that called [`Server::run`].
struct Acceptor<'a> {
    listener: &'a TcpListener,
    limit: usize,
    /// Connections counted against `limit` (each holds a [`Slot`]).
    open: Arc<AtomicUsize>,
    /// Refused connections lingering after their 503, counted against [`REFUSED_LINGER`].
    refused: Arc<AtomicUsize>,
    /// At the limit since the last log line about it.
    full: bool,
    spare: Option<File>,
    dispatch: Dispatch,
    send_timeout: Duration,
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
    /// Accepts until shutdown is requested, then takes in what is already queued (so a
    /// restart behind SO_REUSEPORT drops nothing that reached this listener) and returns.
    fn run(&mut self, stop: &Stop) -> io::Result<()> {
        // SAFETY: the listener outlives the registration; it is deleted before returning.
        unsafe { stop.poller.add(self.listener, Event::readable(LISTENER))? };
        let mut events = Events::new();
        let mut backoff_until: Option<Instant> = None;
        let result = loop {
            if stop.requested.load(Ordering::SeqCst) {
                while let Accepted::More = self.accept_one() {}
                break Ok(());
            }
            events.clear();
            let timeout =
                backoff_until.map(|until| until.saturating_duration_since(Instant::now()));
            if let Err(err) = stop.poller.wait(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break Err(err);
            }
            if let Some(until) = backoff_until {
                if Instant::now() < until {
                    continue;
                }
                backoff_until = None;
            }
            loop {
                match self.accept_one() {
                    Accepted::More => {}
                    Accepted::Empty => break,
                    Accepted::Exhausted => {
                        backoff_until = Some(Instant::now() + FD_BACKOFF);
                        break;
                    }
                }
            }
            // The registration is one-shot: arm it again.
            if let Err(err) = stop.poller.modify(self.listener, Event::readable(LISTENER)) {
                break Err(err);
            }
        };
        let _ = stop.poller.delete(self.listener);
        result
    }

    /// Accepts one connection and admits or refuses it.
    fn accept_one(&mut self) -> Accepted {
        if self.spare.is_none() {
            self.spare = spare_fd();
        }
        match self.listener.accept() {
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
                    let next = match self.listener.accept() {
                        Ok((stream, peer)) => {
                            log::warn!("accept: {err}; answering {peer} with 503");
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

    /// Admission control: under the limit, the connection goes to work; at it, the oldest
    /// idle connection makes room (as nginx does); with none idle, the newcomer gets 503.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let room = self.open.load(Ordering::SeqCst) < self.limit || self.parker.evict_idle();
        if !room {
            if !self.full {
                log::warn!(
                    "{} connections open and none idle: answering newcomers with 503",
                    self.limit
                );
                self.full = true;
            }
            let slot = (self.refused.load(Ordering::SeqCst) < REFUSED_LINGER)
                .then(|| Slot::take(&self.refused));
            if let Some(conn) = conn::refuse(stream, peer, self.ctx, &mut self.scratch, slot) {
                self.parker
                    .park(conn, Wait::Drain, Instant::now() + REFUSED_LINGER_TIME);
            }
            return;
        }
        if self.full {
            log::info!("below {} open connections again", self.limit);
            self.full = false;
        }
        let conn = Conn::new(stream, peer, self.send_timeout, Slot::take(&self.open));
        match self.dispatch {
            Dispatch::Direct | Dispatch::Defer => {
                let _ = self.to_workers.submit(conn);
            }
            Dispatch::Poll => {
                let deadline = conn.deadline(&self.ctx.deadlines);
                self.parker.park(conn, Wait::Request, deadline);
            }
        }
    }
}

/// Raises the open-file limit to its hard maximum and returns how many connections that
/// leaves room for: the limit less a reserve for everything else the server opens.
fn connection_budget(workers: usize) -> usize {
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
    fds.saturating_sub(FD_RESERVE + 2 * workers + REFUSED_LINGER)
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
