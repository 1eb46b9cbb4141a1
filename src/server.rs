//! Binding, the accept loop, and shutdown. Accepted sockets go to the worker pool; waiting
//! ones go to the poller. Never parses HTTP. May use: config, pool, poller, conn, accesslog.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use polling::{Event, Events, Poller};
use socket2::{Domain, Socket, Type};

use crate::accesslog::AccessLog;
use crate::config::Config;
use crate::conn::{self, Conn, Context, Next, Scratch, Slot};
use crate::handler::Site;
use crate::poller::{Parker, Wait};
use crate::pool::Pool;

/// Jobs (ready connections) that may wait for a worker before the producers wait.
const QUEUE: usize = 4096;
/// The listen backlog (the kernel caps it at net.core.somaxconn).
const BACKLOG: i32 = 1024;
/// How long a lingering close waits for the client to finish.
const LINGER: Duration = Duration::from_secs(2);
/// How long to stop accepting after running out of file descriptors.
const FD_BACKOFF: Duration = Duration::from_millis(100);
/// How often to look again while at the connection limit.
const FULL_BACKOFF: Duration = Duration::from_millis(10);
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
        let listener = listen(config.addr).map_err(|err| {
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
        let ctx = Arc::new(Context {
            site: Site {
                root: config.root.clone(),
                list: config.list,
                health: config.health.clone(),
                cache_control: config.cache_control.clone(),
                pages: config.pages.clone(),
            },
            log: log.clone(),
            stopping: Arc::clone(&stop.requested),
        });
        let timeout = config.timeout;
        let worker_parker = parker.clone();
        let pool = Pool::new(
            config.workers,
            QUEUE,
            Scratch::default,
            move |scratch, conn| match conn::serve(conn, &ctx, scratch) {
                Next::Park(conn) => {
                    let deadline = conn.deadline(timeout);
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

        let limit = connection_limit(config.workers);
        log::debug!("at most {limit} open connections");
        let send_timeout = config.send_timeout;
        let result = accept_loop(&listener, &stop, limit, |stream, peer, slot| {
            let _ = to_workers.submit(Conn::new(stream, peer, send_timeout, slot));
        });
        drop(listener);
        drop(to_workers);

        // Shutdown, in data-flow order: nothing new comes in, idle connections close,
        // in-flight replies finish (bounded), then the log is flushed.
        log::info!("shutting down: {} idle connections closed", parker.parked());
        parker.stop();
        let _ = poller_thread.join();
        if !pool.shutdown(config.grace) {
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

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Restarts must not wait for TIME_WAIT to clear.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    let listener: TcpListener = socket.into();
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Accepts until shutdown is requested. Linux does not pass O_NONBLOCK on to accepted
/// sockets, so they are blocking (reads use MSG_DONTWAIT; writes rely on SO_SNDTIMEO).
fn accept_loop(
    listener: &TcpListener,
    stop: &Stop,
    limit: usize,
    submit: impl Fn(TcpStream, SocketAddr, Slot),
) -> io::Result<()> {
    // SAFETY: the listener outlives the registration; it is deleted before returning.
    unsafe { stop.poller.add(listener, Event::readable(LISTENER))? };
    let open = Arc::new(AtomicUsize::new(0));
    let mut full = false;
    let mut events = Events::new();
    let mut backoff_until: Option<Instant> = None;
    let result = loop {
        if stop.requested.load(Ordering::SeqCst) {
            break Ok(());
        }
        events.clear();
        let timeout = backoff_until.map(|until| until.saturating_duration_since(Instant::now()));
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
            // At the limit, newcomers wait in the kernel's backlog until a connection closes,
            // so the workers always have descriptors left to open files with.
            if open.load(Ordering::SeqCst) >= limit {
                if !full {
                    log::warn!("{limit} connections open: pausing accepts");
                }
                full = true;
                backoff_until = Some(Instant::now() + FULL_BACKOFF);
                break;
            }
            full = false;
            match listener.accept() {
                Ok((stream, peer)) => submit(stream, peer, Slot::take(&open)),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => match err.raw_os_error() {
                    // Out of descriptors or memory: pause accepting instead of spinning on
                    // a listener that stays readable (nginx does the same).
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        log::warn!("accept: {err}; pausing accepts for {FD_BACKOFF:?}");
                        backoff_until = Some(Instant::now() + FD_BACKOFF);
                        break;
                    }
                    // The client gave up before we accepted, or a transient network error.
                    _ => log::debug!("accept: {err}"),
                },
            }
        }
        // The registration is one-shot: arm it again.
        if let Err(err) = stop.poller.modify(listener, Event::readable(LISTENER)) {
            break Err(err);
        }
    };
    let _ = stop.poller.delete(listener);
    result
}

/// Raises the open-file limit to its hard maximum and returns how many connections may be
/// open at once: the limit less a reserve for everything else the server opens.
fn connection_limit(workers: usize) -> usize {
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
    fds.saturating_sub(FD_RESERVE + 2 * workers).max(1)
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
