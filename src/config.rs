//! Every setting once: each flag's name, default and help text in [`Args`], and the one
//! validated conversion from them to the [`Config`] the server runs with
//! ([`Config::from_args`]), so every check that can fail before the server binds happens
//! here, with a message a user can act on.
//! May use: error, files (to open the root), filecache, handler (the `Site` it fills),
//! response (the `Charset` it checks), scoreboard.
//!
//! A new flag is a field in [`Args`] (name, default and help together), then its checked
//! value in `from_args`: into a [`Config`] field, or, if the handler needs it, into a field
//! of [`Site`], which reaches every request as it is.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

use crate::error::ErrorPages;
use crate::filecache;
use crate::files::Root;
use crate::handler::Site;
use crate::response::Charset;

// The flags as typed: each default is the one the binary uses, written once next to the help
// text that states it. Nothing here is checked yet; `Config::from_args` does that. (The doc
// comment below is the `--help` description, so this note is a plain comment.)
/// Serve a folder over HTTP/1.1 with a fixed pool of worker threads.
#[derive(FromArgs, Debug)]
pub struct Args {
    /// document root to serve (default: docroot)
    #[argh(option, short = 'r', default = "PathBuf::from(\"docroot\")")]
    pub root: PathBuf,
    /// number of worker threads, at least 1 (default: 8)
    #[argh(option, short = 'w', default = "8")]
    pub workers: usize,
    /// address to listen on, IPv4 or IPv6 (default: 127.0.0.1)
    #[argh(option, short = 'a', default = "String::from(\"127.0.0.1\")")]
    pub host: String,
    /// port to listen on; 0 picks a free one (default: 8080)
    #[argh(option, short = 'p', default = "8080")]
    pub port: u16,
    /// seconds a connection may wait idle for its next request (default: 5)
    #[argh(option, short = 't', default = "5")]
    pub timeout: u64,
    /// access log file, appended to, or off (default: stderr)
    #[argh(option, short = 'l')]
    pub log: Option<PathBuf>,
    /// access log line format: combined, common or json (one object a line)
    /// (default: combined)
    #[argh(option, default = "String::from(\"combined\")")]
    pub log_format: String,
    /// seconds a reply may wait for a client that takes none of it before the connection is
    /// closed (default: 30)
    #[argh(option, default = "30")]
    pub send_timeout: u64,
    /// seconds in-flight replies may take after SIGTERM/SIGINT (default: 30)
    #[argh(option, default = "30")]
    pub grace: u64,
    /// seconds a request head may take from its first byte to its end (default: 10)
    #[argh(option, default = "10")]
    pub header_timeout: u64,
    /// bytes per second a request head must keep up after its first 2 seconds; 0 turns the
    /// check off (default: 100)
    #[argh(option, default = "100")]
    pub header_min_rate: u32,
    /// most connections open at once; at the limit the oldest idle one is closed, else
    /// newcomers get 503 (default: the open-file limit less a reserve)
    #[argh(option)]
    pub max_connections: Option<usize>,
    /// how new connections reach the workers: direct, defer (TCP_DEFER_ACCEPT) or poll
    /// (default: direct)
    #[argh(option, default = "String::from(\"direct\")")]
    pub dispatch: String,
    /// list directories that have no index.html (default: 404)
    #[argh(switch)]
    pub list: bool,
    /// directory of custom error pages: NNN.html per status, 50x.html for any 5xx
    /// (default: 404.html and 50x.html at the root, if present)
    #[argh(option)]
    pub error_pages: Option<PathBuf>,
    /// answer GET/HEAD on this path with 200 "ok" without touching the disk, e.g. /healthz
    #[argh(option)]
    pub health: Option<String>,
    /// serve the status page and metrics on this path, e.g. /server-status (default: off)
    #[argh(option)]
    pub status: Option<String>,
    /// address blocks beyond loopback that may see --status, e.g. 10.0.0.0/8,fd00::/8
    #[argh(option)]
    pub status_allow: Option<String>,
    /// value of the Cache-Control header on 200/206/304 file responses, e.g. "max-age=3600"
    #[argh(option)]
    pub cache_control: Option<String>,
    /// bytes the open-file cache keeps in memory (small bodies, path keys), suffix K, M or G;
    /// 0 turns the cache off (do so on NFS and other filesystems whose changes inotify does
    /// not see) (default: 64M)
    #[argh(option, default = "String::from(\"64M\")")]
    pub file_cache: String,
    /// charset named in the Content-Type of text/*, JavaScript and JSON replies, e.g. utf-8
    /// (default: none, types are sent bare)
    #[argh(option)]
    pub charset: Option<String>,
    /// debug logging (RUST_LOG works too)
    #[argh(switch, short = 'd')]
    pub debug: bool,
    /// print the version and exit
    #[argh(switch)]
    pub version: bool,
    /// check the settings (flags, document root, error pages, access log) as a start would,
    /// without listening; print "configuration ok" and exit 0, or the error and exit 1
    #[argh(switch)]
    pub check: bool,
}

/// How new connections reach the workers (`--dispatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// Straight onto the workers' queue; a worker that finds no bytes yet parks it.
    Direct,
    /// As `Direct`, with `TCP_DEFER_ACCEPT`: the kernel completes `accept` only once the
    /// client has sent data, so workers rarely see an empty connection.
    Defer,
}

impl Dispatch {
    pub fn parse(value: &str) -> Result<Dispatch, ConfigError> {
        match value {
            "direct" => Ok(Dispatch::Direct),
            "defer" => Ok(Dispatch::Defer),
            _ => Err(ConfigError(format!(
                "--dispatch '{value}': expected direct or defer"
            ))),
        }
    }
}

/// Where the access log goes (`-l`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTo {
    /// No `-l`: the server's stderr.
    Stderr,
    /// `-l FILE`: appended to FILE (`-l ./off` for a file named `off`).
    File(PathBuf),
    /// `-l off`: no access log (nginx's `access_log off`).
    Off,
}

impl LogTo {
    fn from_flag(flag: Option<PathBuf>) -> LogTo {
        match flag {
            None => LogTo::Stderr,
            Some(path) if path.as_os_str() == "off" => LogTo::Off,
            Some(path) => LogTo::File(path),
        }
    }
}

/// The access log's line format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Apache's and nginx's "combined": common, then the Referer and the User-Agent.
    Combined,
    /// The Common Log Format: client, time, request line, status, body bytes.
    Common,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    pub fn parse(value: &str) -> Result<LogFormat, ConfigError> {
        match value {
            "combined" => Ok(LogFormat::Combined),
            "common" => Ok(LogFormat::Common),
            "json" => Ok(LogFormat::Json),
            _ => Err(ConfigError(format!(
                "--log-format '{value}': expected combined, common or json"
            ))),
        }
    }
}

/// How long a connection may wait for its client before it is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Keep-alive idle (`-t`): from the end of a reply, or from accept, to the next byte.
    pub idle: Duration,
    /// From the first byte of a head to its end (`--header-timeout`).
    pub header: Duration,
    /// Bytes per second a head must keep up (`--header-min-rate`), after the first two
    /// seconds (`HEADER_SLACK` in conn.rs); 0 turns the rate check off.
    pub header_min_rate: u32,
    /// A reply waiting for its client: from the last byte the client took (`--send-timeout`).
    pub send: Duration,
}

/// Everything the server needs to start, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// What the handler needs (root, listing, health path, Cache-Control, error pages),
    /// handed to it as is.
    pub site: Site,
    pub workers: usize,
    pub addr: SocketAddr,
    /// Keep-alive idle timeout and request-head deadlines.
    pub deadlines: Deadlines,
    /// The most connections open at once (`--max-connections`); `None` derives it from the
    /// open-file limit.
    pub max_connections: Option<usize>,
    /// How new connections reach the workers (`--dispatch`).
    pub dispatch: Dispatch,
    /// Where the access log goes (`-l`).
    pub access_log: LogTo,
    /// What its lines look like (`--log-format`).
    pub log_format: LogFormat,
    /// How long in-flight replies may take after a stop signal (`--grace`).
    pub grace: Duration,
    /// Whether the file cache is on and, if off, why: for the log at start-up.
    pub file_cache_note: String,
}

/// A setting that cannot work, worded for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The settings `httpd ARGS...` runs with, through the same parse and conversion as the
    /// binary: how tests and fuzz fixtures get a [`Site`] without spelling one out, so a new
    /// setting never touches them. A parse error or `--help` comes back as its text.
    pub fn from_command_line(args: &[&str]) -> Result<Config, String> {
        let args = Args::from_args(&["httpd"], args).map_err(|exit| exit.output)?;
        Config::from_args(args).map_err(|err| err.0)
    }

    /// The one conversion from flags to settings: checks every value (the first problem
    /// found is the one reported), canonicalises the document root and opens it
    /// (probing, once, how paths will be resolved beneath it), and reads the error pages.
    pub fn from_args(args: Args) -> Result<Config, ConfigError> {
        let root = open_root(&args.root)?;
        if args.workers == 0 {
            return Err(ConfigError("--workers must be at least 1".into()));
        }
        let idle = at_least_a_second("--timeout", args.timeout)?;
        let ip = parse_host(&args.host)?;
        let send = at_least_a_second("--send-timeout", args.send_timeout)?;
        let header = at_least_a_second("--header-timeout", args.header_timeout)?;
        if args.max_connections == Some(0) {
            return Err(ConfigError("--max-connections must be at least 1".into()));
        }
        let health = args.health.map(url_path).transpose()?;
        let status = crate::scoreboard::from_flags(args.status, args.status_allow, args.workers);
        let cache_control = args.cache_control.map(header_value).transpose()?;
        // `--error-pages DIR` or, without it, `404.html`/`50x.html` at the root, read now.
        let pages =
            ErrorPages::load(args.error_pages.as_deref(), root.path()).map_err(ConfigError)?;
        let dispatch = Dispatch::parse(&args.dispatch)?;
        let charset = match args.charset.as_deref() {
            Some(value) => Charset::parse(value).map_err(ConfigError)?,
            None => Charset::default(),
        };
        let pages = pages.with_charset(&charset);
        let log_format = LogFormat::parse(&args.log_format)?;
        let (cache, file_cache_note) =
            filecache::from_flag(&root, &args.file_cache).map_err(ConfigError)?;
        Ok(Config {
            site: Site {
                root,
                list: args.list,
                health,
                cache_control,
                pages,
                cache,
                charset,
                status: status.map_err(ConfigError)?,
            },
            file_cache_note,
            workers: args.workers,
            addr: SocketAddr::new(ip, args.port),
            deadlines: Deadlines {
                idle,
                header,
                header_min_rate: args.header_min_rate,
                send,
            },
            max_connections: args.max_connections,
            dispatch,
            access_log: LogTo::from_flag(args.log),
            log_format,
            grace: Duration::from_secs(args.grace),
        })
    }
}

/// `-r DIR`: an existing directory, canonicalised and opened once.
fn open_root(root: &std::path::Path) -> Result<Root, ConfigError> {
    let root = root
        .canonicalize()
        .map_err(|err| ConfigError(format!("document root '{}': {err}", root.display())))?;
    if !root.is_dir() {
        return Err(ConfigError(format!(
            "document root '{}' is not a directory",
            root.display()
        )));
    }
    Root::open(&root)
        .map_err(|err| ConfigError(format!("document root '{}': {err}", root.display())))
}

/// A timeout flag in whole seconds: 0 would close every connection at once.
fn at_least_a_second(flag: &str, secs: u64) -> Result<Duration, ConfigError> {
    if secs == 0 {
        return Err(ConfigError(format!("{flag} must be at least 1 second")));
    }
    Ok(Duration::from_secs(secs))
}

/// `-a HOST`: an IP address, IPv6 with or without brackets (no names: nothing to resolve).
fn parse_host(host: &str) -> Result<IpAddr, ConfigError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().map_err(|_| {
        ConfigError(format!(
            "invalid address '{host}': expected an IP address such as 127.0.0.1 or ::1"
        ))
    })
}

/// `--health PATH`: an absolute URL path, compared verbatim with request targets.
fn url_path(path: String) -> Result<String, ConfigError> {
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) || path.contains('?') {
        return Err(ConfigError(format!(
            "--health '{path}': expected a URL path such as /healthz"
        )));
    }
    Ok(path)
}

/// `--cache-control VALUE`: sent verbatim, so it must be a plain header value (no line
/// breaks that could start a header of their own).
fn header_value(value: String) -> Result<String, ConfigError> {
    if value.trim().is_empty() || !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err(ConfigError(format!(
            "--cache-control '{value}': expected a header value such as 'public, max-age=3600'"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
