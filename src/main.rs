//! The `httpd` command: flags → `Config` (one conversion), logger, bind, print the address,
//! run, exit code; or, with `--check`, the same checks short of listening.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use httpd::Args;
use httpd::{reopen_log_on_signals, shutdown_on_signals, Config, Server};

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

    let outcome = if args.check { check(args) } else { run(args) };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("httpd: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `--check`: the settings as a start would take them, and the access log opened; nothing
/// listens (see `Server::check`).
fn check(args: Args) -> Result<(), String> {
    let config = Config::from_args(args).map_err(|err| err.to_string())?;
    Server::check(&config).map_err(|err| err.to_string())?;
    let _ = writeln!(std::io::stdout(), "configuration ok");
    Ok(())
}

fn run(args: Args) -> Result<(), String> {
    let config = Config::from_args(args).map_err(|err| err.to_string())?;
    let resolution = config.site.root.resolution_note().to_owned();
    let file_cache = config.file_cache_note.clone();
    let server = Server::bind(config).map_err(|err| err.to_string())?;
    log::info!("{resolution}");
    log::info!("{file_cache}");
    let addr = server.local_addr().map_err(|err| err.to_string())?;
    shutdown_on_signals(server.shutdown_handle())
        .map_err(|err| format!("cannot install signal handlers: {err}"))?;
    reopen_log_on_signals(&server)
        .map_err(|err| format!("cannot install signal handlers: {err}"))?;
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on http://{addr}");
    let _ = stdout.flush();
    server.run().map_err(|err| format!("server failed: {err}"))
}
