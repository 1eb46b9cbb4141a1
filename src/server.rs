//! Wiring: binds, starts the worker pool, the sweep thread and the accept loop, and shuts
//! them down in data-flow order (nothing new comes in, idle connections close, replies in
//! flight finish, each worker writes out its log lines); turns SIGINT/SIGTERM into that
//! shutdown, and SIGUSR1/SIGHUP into reopening the access log.
//! May use: accept, accesslog, config, conn, filecache, listen, poller, pool, sys, metrics
//! (the status page's probes).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::accept::{self, Acceptor, Stop};
use crate::accesslog::AccessLog;
use crate::config::{Config, LogFormat, LogTo};
use crate::conn::{self, Conn, Context, Next, Scratch};
use crate::filecache;
use crate::listen;
use crate::poller::{Parker, Wait};
use crate::pool::{Pool, Source};
use crate::sys;

/// How long a lingering close waits for the client to finish.
const LINGER: Duration = Duration::from_secs(2);

/// How long the workers get, after the grace period, to close and log the replies it cut
/// off (and to write out their log lines) before the process exits anyway.
const WIND_DOWN: Duration = Duration::from_secs(2);

/// A bound server, ready to [`Server::run`].
pub struct Server {
    /// One per CPU (see [`listen::listen`]), all on the same address.
    listeners: Vec<TcpListener>,
    config: Config,
    log: AccessLog,
    stop: Arc<Stop>,
}

/// Stops a running server from another thread (a signal handler, a test).
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Stop>);

impl ShutdownHandle {
    /// Stops accepting, closes idle connections, lets in-flight replies finish (bounded),
    /// and every worker writes out its access-log lines; [`Server::run`] then returns.
    pub fn shutdown(&self) {
        self.0.request();
    }
}

impl Server {
    /// Opens the access log and listens on `config.addr` (port 0 picks a free port) or, under
    /// socket activation (`LISTEN_FDS`), on the sockets systemd handed over, as they are
    /// (`-a` and `-p` then do not apply). When this returns, connections are already being
    /// queued by the kernel. It reads and clears `LISTEN_FDS`: call it before starting threads.
    pub fn bind(config: Config) -> io::Result<Server> {
        let log = open_log(&config.access_log, config.log_format)?;
        let listeners = match listen::inherited(config.dispatch, config.deadlines.idle)? {
            Some(listeners) => {
                let addrs: Vec<String> = listeners
                    .iter()
                    .map(|l| {
                        l.local_addr()
                            .map_or_else(|e| e.to_string(), |a| a.to_string())
                    })
                    .collect();
                log::info!(
                    "listening on {} (socket activation, {} sockets); -a and -p do not apply",
                    addrs.join(", "),
                    listeners.len()
                );
                listeners
            }
            None => listen::listen(config.addr, config.dispatch, config.deadlines.idle).map_err(
                |err| {
                    io::Error::new(
                        err.kind(),
                        format!("cannot listen on {}: {err}", config.addr),
                    )
                },
            )?,
        };
        Ok(Server {
            listeners,
            config,
            log,
            stop: Arc::new(Stop::new()?),
        })
    }

    /// `--check`: what [`Server::bind`] would do short of listening. The settings were
    /// validated on the way to `config`; this opens the access log as a start would (so it
    /// creates a missing log file). It binds nothing: a `SO_REUSEPORT` listener on the port of
    /// a running httpd would take a share of its new connections, then reset them on close.
    pub fn check(config: &Config) -> io::Result<()> {
        open_log(&config.access_log, config.log_format).map(drop)
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
        // The status page's counters, if `--status` is on.
        let metrics = config.site.status.as_ref().map(|s| Arc::clone(&s.metrics));
        let parker = Parker::new(metrics.clone())?;
        let deadlines = config.deadlines;
        let ctx = Arc::new(Context {
            site: config.site.clone(),
            log,
            deadlines,
            stopping: Arc::clone(&stop.requested),
            parked_files: Arc::new(AtomicUsize::new(0)),
            metrics: metrics.clone(),
        });
        let worker_parker = parker.clone();
        let worker_ctx = Arc::clone(&ctx);
        let init_ctx = Arc::clone(&ctx);
        // Idle workers wait on the parker's epoll set themselves (leader/followers). Each
        // gathers its access-log lines in its own `Scratch` and writes them out before it
        // sleeps (and when it stops, as the `Scratch` drops).
        let pool = Pool::with_idle(
            config.workers,
            parker.clone(),
            move || Scratch::for_worker(&init_ctx),
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
                    Next::Yield(conn) => worker_parker.queue(conn),
                    Next::Linger(conn) => {
                        worker_parker.park(conn, Wait::Drain, Instant::now() + LINGER)
                    }
                    Next::Close => Ok(()),
                };
                // The stop is over (the grace period is spent): the connection closes here,
                // and a reply it cuts off still gets its log line.
                if let Err(conn) = handed_over {
                    conn::abandon(conn, scratch);
                }
            },
            Scratch::flush_log,
        )?;

        let sweep_parker = parker.clone();
        let sweep_thread = thread::Builder::new()
            .name("sweep".into())
            .spawn(move || sweep_parker.sweep())?;

        let fd_limit = sys::raise_open_file_limit();
        // The file cache's open files (at most a quarter of the limit) and its inotify
        // descriptor come off the connections' share.
        let cache_fds = config.site.cache.as_ref().map_or(0, |cache| {
            let quarter = usize::try_from(fd_limit / 4).unwrap_or(usize::MAX);
            cache.set_max_files(filecache::MAX_FILES.min(quarter));
            cache.max_files() + 1
        });
        let fd_budget = accept::connection_budget(fd_limit, config.workers, listeners.len())
            .saturating_sub(cache_fds)
            .max(1);
        // Every admitted connection, wherever it is: the stop waits for this to reach zero.
        let open = Arc::new(AtomicUsize::new(0));
        if let Some(metrics) = &metrics {
            // What the status page reads of the running server.
            let queue = parker.clone();
            metrics.install_probes(Arc::clone(&open), Box::new(move || queue.queued()));
        }
        let mut acceptor = Acceptor::new(
            &listeners,
            &config,
            fd_budget,
            Arc::clone(&open),
            &parker,
            &ctx,
        );
        let result = acceptor.run(&stop);
        drop(acceptor);
        drop(listeners);

        // Shutdown, in data-flow order: nothing new comes in (the accept loop's log lines were
        // written as it dropped), idle connections close, in-flight requests finish (bounded
        // by the grace period), and each worker writes out its log lines as it stops.
        let stop_by = Instant::now() + config.grace;
        let idle = parker.stop(stop_by, open);
        log::info!("shutting down: {idle} idle connections get a last call, then close");
        let _ = sweep_thread.join();
        // At the end of the grace period the sweep hands the replies it cut off to the
        // workers, which reset them and log them: never-blocking work that still needs a
        // moment after the deadline, or their lines would be lost with the process.
        let wind_down = stop_by
            .saturating_duration_since(Instant::now())
            .max(WIND_DOWN);
        if !pool.shutdown(wind_down) {
            log::warn!(
                "grace period of {}s over with replies in flight",
                config.grace.as_secs()
            );
        }
        result
    }
}

/// The workers take their connections from the parker's epoll set and queue.
impl Source<Conn> for Parker {
    fn next(&self, idle: &mut dyn FnMut()) -> Option<Conn> {
        Parker::next(self, idle)
    }
}

/// Opens the access log `-l` asks for; an error names it.
fn open_log(to: &LogTo, format: LogFormat) -> io::Result<AccessLog> {
    let (opened, name) = match to {
        LogTo::Off => return Ok(AccessLog::off()),
        LogTo::Stderr => (AccessLog::stderr(format), "stderr".into()),
        LogTo::File(path) => (AccessLog::open(path, format), path.display().to_string()),
    };
    opened.map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot open access log '{name}': {err}"),
        )
    })
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

/// Makes SIGUSR1 (nginx's convention) and SIGHUP reopen the access log file by its name, so
/// logrotate can rename the file and have the lines that follow go to a fresh one, without a
/// restart. Neither signal stops the server; with the log on stderr or off they only say so
/// in the server's own log.
pub fn reopen_log_on_signals(server: &Server) -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGUSR1};
    let log = server.log.clone();
    let mut signals = signal_hook::iterator::Signals::new([SIGUSR1, SIGHUP])?;
    thread::Builder::new()
        .name("log-reopen".into())
        .spawn(move || {
            for signal in signals.forever() {
                let name = if signal == SIGHUP {
                    "SIGHUP"
                } else {
                    "SIGUSR1"
                };
                match log.reopen() {
                    Ok(Some(path)) => {
                        log::info!("{name}: reopened the access log '{}'", path.display())
                    }
                    Ok(None) => {
                        log::info!("{name}: the access log is not a file; nothing to reopen")
                    }
                    Err(err) => log::warn!(
                        "{name}: cannot reopen the access log {err}; still writing to the old file"
                    ),
                }
            }
        })?;
    Ok(())
}
