//! The `httpd` command: flags → `Config`, logger, bind, print the address, run, exit code.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;
use httpd::config::Dispatch;
use httpd::{server, Config, Server};

/// Serve a folder over HTTP/1.1 with a fixed pool of worker threads.
#[derive(FromArgs)]
struct Args {
    /// document root to serve (default: docroot)
    #[argh(option, short = 'r', default = "PathBuf::from(\"docroot\")")]
    root: PathBuf,
    /// number of worker threads, at least 1 (default: 8)
    #[argh(option, short = 'w', default = "8")]
    workers: usize,
    /// address to listen on, IPv4 or IPv6 (default: 127.0.0.1)
    #[argh(option, short = 'a', default = "String::from(\"127.0.0.1\")")]
    host: String,
    /// port to listen on; 0 picks a free one (default: 8080)
    #[argh(option, short = 'p', default = "8080")]
    port: u16,
    /// seconds a connection may wait idle for its next request (default: 5)
    #[argh(option, short = 't', default = "5")]
    timeout: u64,
    /// access log file, appended to (default: stderr)
    #[argh(option, short = 'l')]
    log: Option<PathBuf>,
    /// seconds a reply may wait for a client that takes none of it before the connection is
    /// closed (default: 30)
    #[argh(option, default = "30")]
    send_timeout: u64,
    /// seconds in-flight replies may take after SIGTERM/SIGINT (default: 30)
    #[argh(option, default = "30")]
    grace: u64,
    /// seconds a request head may take from its first byte to its end (default: 10)
    #[argh(option, default = "10")]
    header_timeout: u64,
    /// bytes per second a request head must keep up after its first 2 seconds; 0 turns the
    /// check off (default: 100)
    #[argh(option, default = "100")]
    header_min_rate: u32,
    /// most connections open at once; at the limit the oldest idle one is closed, else
    /// newcomers get 503 (default: the open-file limit less a reserve)
    #[argh(option)]
    max_connections: Option<usize>,
    /// how new connections reach the workers: direct, defer (TCP_DEFER_ACCEPT) or poll
    /// (default: direct)
    #[argh(option, default = "String::from(\"direct\")")]
    dispatch: String,
    /// list directories that have no index.html (default: 404)
    #[argh(switch)]
    list: bool,
    /// directory of custom error pages: NNN.html per status, 50x.html for any 5xx
    /// (default: 404.html and 50x.html at the root, if present)
    #[argh(option)]
    error_pages: Option<PathBuf>,
    /// answer GET/HEAD on this path with 200 "ok" without touching the disk, e.g. /healthz
    #[argh(option)]
    health: Option<String>,
    /// value of the Cache-Control header on 200/206/304 file responses, e.g. "max-age=3600"
    #[argh(option)]
    cache_control: Option<String>,
    /// debug logging (RUST_LOG works too)
    #[argh(switch, short = 'd')]
    debug: bool,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    if args.version {
        println!("httpd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if args.debug {
        logger.filter_level(log::LevelFilter::Debug);
    }
    logger.init();

    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("httpd: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let config = Config::new(
        &args.root,
        args.workers,
        &args.host,
        args.port,
        args.timeout,
        args.log,
    )
    .and_then(|config| config.with_timeouts(args.send_timeout, args.grace))
    .and_then(|config| config.with_header_limits(args.header_timeout, args.header_min_rate))
    .and_then(|config| config.with_max_connections(args.max_connections))
    .and_then(|config| config.with_health(args.health))
    .and_then(|config| config.with_cache_control(args.cache_control))
    .and_then(|config| config.with_error_pages(args.error_pages.as_deref()))
    .and_then(|mut config| {
        config.list = args.list;
        config.dispatch = Dispatch::parse(&args.dispatch)?;
        Ok(config)
    })
    .map_err(|err| err.to_string())?;
    let resolution = config.root.resolution_note().to_owned();
    let server = Server::bind(config).map_err(|err| err.to_string())?;
    log::info!("{resolution}");
    let addr = server.local_addr().map_err(|err| err.to_string())?;
    server::shutdown_on_signals(server.shutdown_handle())
        .map_err(|err| format!("cannot install signal handlers: {err}"))?;
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on http://{addr}");
    let _ = stdout.flush();
    server.run().map_err(|err| format!("server failed: {err}"))
}
