//! Wiring: binds, starts the worker pool, the poller thread and the accept loop, and shuts
//! them down in data-flow order (nothing new comes in, idle connections close, replies in
//! flight finish, each worker writes out its log lines); turns SIGINT/SIGTERM into that
//! shutdown.
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
use crate::config::{Config, LogTo};
use crate::conn::{self, Context, Next, Scratch};
use crate::filecache;
use crate::listen;
use crate::poller::{Parker, Wait};
use crate::pool::Pool;
use crate::sys;

/// Jobs (ready connections) that may wait for a worker before the producers wait.
const QUEUE: usize = 4096;
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
    /// Opens the access log and listens on `config.addr` (port 0 picks a free port). When
    /// this returns, connections are already being queued by the kernel.
    pub fn bind(config: Config) -> io::Result<Server> {
        let log = open_log(&config.access_log)?;
        let listeners = listen::listen(config.addr, config.dispatch, config.deadlines.idle)
            .map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("cannot listen on {}: {err}", config.addr),
                )
            })?;
        Ok(Server {
            listeners,
            config,
            log,
            stop: Arc::new(Stop::new()?),
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
        // STATUS TOUCH POINT: the status page's counters, if `--status` is on.
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
        // Each worker gathers its access-log lines in its own `Scratch` and writes them out
        // before it waits for work (and when it stops, as the `Scratch` drops).
        let pool = Pool::with_idle(
            config.workers,
            QUEUE,
            move || Scratch::for_worker(&init_ctx), // STATUS TOUCH POINT: a scoreboard slot
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
                    conn::abandon(conn, scratch);
                }
            },
            Scratch::flush_log,
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
            // STATUS TOUCH POINT: what the status page reads of the running server.
            metrics.install_probes(Arc::clone(&open), Box::new(pool.queue_len()));
        }
        let mut acceptor = Acceptor::new(
            &listeners,
            &config,
            fd_budget,
            Arc::clone(&open),
            &parker,
            &to_workers,
            &ctx,
        );
        let result = acceptor.run(&stop);
        drop(acceptor);
        drop(listeners);
        drop(to_workers);

        // Shutdown, in data-flow order: nothing new comes in (the accept loop's log lines were
        // written as it dropped), idle connections close, in-flight requests finish (bounded
        // by the grace period), and each worker writes out its log lines as it stops.
        let stop_by = Instant::now() + config.grace;
        let idle = parker.stop(stop_by, open);
        log::info!("shutting down: {idle} idle connections get a last call, then close");
        let _ = poller_thread.join();
        // At the end of the grace period the poller hands the replies it cut off to the
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

/// Opens the access log `-l` asks for; an error names it.
fn open_log(to: &LogTo) -> io::Result<AccessLog> {
    let (opened, name) = match to {
        LogTo::Off => return Ok(AccessLog::off()),
        LogTo::Stderr => (AccessLog::stderr(), "stderr".into()),
        LogTo::File(path) => (AccessLog::open(path), path.display().to_string()),
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
