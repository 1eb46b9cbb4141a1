//! Validated settings, built once at start-up from the command line: every check that can
//! fail before the server binds happens here, with a message a user can act on. May use: error, files (to open the root), std.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::ErrorPages;
use crate::files::Root;

/// Default for `--send-timeout`: how long a reply may wait for a client that takes none of it
/// before the connection is closed (nginx's `send_timeout`).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for `--grace`: how long in-flight replies may take to finish after SIGTERM/SIGINT.
pub const GRACE: Duration = Duration::from_secs(30);
/// Default for `--header-timeout`: how long a request head may take from its first byte.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for `--header-min-rate`, in bytes per second.
pub const HEADER_MIN_RATE: u32 = 100;

/// How new connections reach the workers (`--dispatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// Straight onto the workers' queue; a worker that finds no bytes yet parks it.
    Direct,
    /// As `Direct`, with `TCP_DEFER_ACCEPT`: the kernel completes `accept` only once the
    /// client has sent data, so workers rarely see an empty connection.
    Defer,
    /// Into the poller first; it reaches a worker when its first bytes arrive.
    Poll,
}

impl Dispatch {
    pub fn parse(value: &str) -> Result<Dispatch, ConfigError> {
        match value {
            "direct" => Ok(Dispatch::Direct),
            "defer" => Ok(Dispatch::Defer),
            "poll" => Ok(Dispatch::Poll),
            _ => Err(ConfigError(format!(
                "--dispatch '{value}': expected direct, defer or poll"
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
    /// Bytes per second a head must keep up, after a second of slack (`--header-min-rate`);
    /// 0 turns the rate check off.
    pub header_min_rate: u32,
    /// A reply waiting for its client: from the last byte the client took (`--send-timeout`).
    pub send: Duration,
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The document root: canonicalised and opened once, here; every request is resolved
    /// beneath its descriptor.
    pub root: Root,
    pub workers: usize,
    pub addr: SocketAddr,
    /// Keep-alive idle timeout and request-head deadlines.
    pub deadlines: Deadlines,
    /// The most connections open at once (`--max-connections`); `None` derives it from the
    /// open-file limit.
    pub max_connections: Option<usize>,
    /// How new connections reach the workers (`--dispatch`).
    pub dispatch: Dispatch,
    /// Access log file; `None` logs to stderr.
    pub access_log: Option<PathBuf>,
    /// How long in-flight replies may take after a stop signal (`--grace`).
    pub grace: Duration,
    /// List directories without an index (`--list`).
    pub list: bool,
    /// The health-check path (`--health`).
    pub health: Option<String>,
    /// The `Cache-Control` value for file responses (`--cache-control`).
    pub cache_control: Option<String>,
    /// Custom error pages, already read.
    pub pages: ErrorPages,
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
    /// Checks and canonicalises the settings, and opens the document root (probing, once,
    /// how paths will be resolved beneath it).
    pub fn new(
        root: &Path,
        workers: usize,
        host: &str,
        port: u16,
        timeout_secs: u64,
        access_log: Option<PathBuf>,
    ) -> Result<Config, ConfigError> {
        let root = root
            .canonicalize()
            .map_err(|err| ConfigError(format!("document root '{}': {err}", root.display())))?;
        if !root.is_dir() {
            return Err(ConfigError(format!(
                "document root '{}' is not a directory",
                root.display()
            )));
        }
        let root = Root::open(&root)
            .map_err(|err| ConfigError(format!("document root '{}': {err}", root.display())))?;
        if workers == 0 {
            return Err(ConfigError("--workers must be at least 1".into()));
        }
        if timeout_secs == 0 {
            return Err(ConfigError("--timeout must be at least 1 second".into()));
        }
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ip: IpAddr = bare.parse().map_err(|_| {
            ConfigError(format!(
                "invalid address '{host}': expected an IP address such as 127.0.0.1 or ::1"
            ))
        })?;
        Ok(Config {
            root,
            workers,
            addr: SocketAddr::new(ip, port),
            deadlines: Deadlines {
                idle: Duration::from_secs(timeout_secs),
                header: HEADER_TIMEOUT,
                header_min_rate: HEADER_MIN_RATE,
                send: SEND_TIMEOUT,
            },
            max_connections: None,
            dispatch: Dispatch::Direct,
            access_log,
            grace: GRACE,
            list: false,
            health: None,
            cache_control: None,
            pages: ErrorPages::default(),
        })
    }

    /// `--send-timeout SECS` (at least 1) and `--grace SECS` (0 stops at once).
    pub fn with_timeouts(mut self, send_secs: u64, grace_secs: u64) -> Result<Config, ConfigError> {
        if send_secs == 0 {
            return Err(ConfigError(
                "--send-timeout must be at least 1 second".into(),
            ));
        }
        self.deadlines.send = Duration::from_secs(send_secs);
        self.grace = Duration::from_secs(grace_secs);
        Ok(self)
    }

    /// `--header-timeout SECS` (at least 1) and `--header-min-rate BYTES` (0: no rate check).
    pub fn with_header_limits(mut self, secs: u64, min_rate: u32) -> Result<Config, ConfigError> {
        if secs == 0 {
            return Err(ConfigError(
                "--header-timeout must be at least 1 second".into(),
            ));
        }
        self.deadlines.header = Duration::from_secs(secs);
        self.deadlines.header_min_rate = min_rate;
        Ok(self)
    }

    /// `--max-connections N` (at least 1; unset: derived from the open-file limit).
    pub fn with_max_connections(mut self, max: Option<usize>) -> Result<Config, ConfigError> {
        if max == Some(0) {
            return Err(ConfigError("--max-connections must be at least 1".into()));
        }
        self.max_connections = max;
        Ok(self)
    }

    /// `--health PATH`: an absolute URL path, answered without touching the disk.
    pub fn with_health(mut self, path: Option<String>) -> Result<Config, ConfigError> {
        if let Some(path) = &path {
            if !path.starts_with('/')
                || !path.bytes().all(|b| b.is_ascii_graphic())
                || path.contains('?')
            {
                return Err(ConfigError(format!(
                    "--health '{path}': expected a URL path such as /healthz"
                )));
            }
        }
        self.health = path;
        Ok(self)
    }

    /// `--cache-control VALUE`: sent verbatim, so it must be a plain header value.
    pub fn with_cache_control(mut self, value: Option<String>) -> Result<Config, ConfigError> {
        if let Some(value) = &value {
            if value.trim().is_empty() || !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
            {
                return Err(ConfigError(format!(
                    "--cache-control '{value}': expected a header value such as 'public, max-age=3600'"
                )));
            }
        }
        self.cache_control = value;
        Ok(self)
    }

    /// `--error-pages DIR` (or, without it, `404.html`/`50x.html` at the root), read now.
    pub fn with_error_pages(mut self, dir: Option<&Path>) -> Result<Config, ConfigError> {
        self.pages = ErrorPages::load(dir, self.root.path()).map_err(ConfigError)?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let ok = Config::new(Path::new("."), 8, "::1", 0, 5, None).unwrap();
        assert!(ok.root.path().is_absolute());
        assert_eq!(ok.addr, "[::1]:0".parse().unwrap());
        assert_eq!(
            Config::new(Path::new("."), 1, "[::1]", 80, 1, None)
                .unwrap()
                .addr,
            "[::1]:80".parse().unwrap()
        );
        let errors = [
            Config::new(Path::new("/no/such/dir"), 8, "127.0.0.1", 0, 5, None),
            Config::new(Path::new("Cargo.toml"), 8, "127.0.0.1", 0, 5, None),
            Config::new(Path::new("."), 0, "127.0.0.1", 0, 5, None),
            Config::new(Path::new("."), 8, "localhost:80", 0, 5, None),
            Config::new(Path::new("."), 8, "127.0.0.1", 0, 0, None),
        ];
        for result in errors {
            assert!(result.is_err(), "{result:?}");
        }
        let base = || Config::new(Path::new("."), 1, "::1", 0, 1, None).unwrap();
        assert!(base().with_health(Some("/healthz".into())).is_ok());
        assert!(base().with_timeouts(0, 30).is_err());
        assert!(base().with_header_limits(0, 100).is_err());
        assert!(base().with_max_connections(Some(0)).is_err());
        let limited = base().with_header_limits(3, 0).unwrap();
        assert_eq!(limited.deadlines.header, Duration::from_secs(3));
        assert_eq!(limited.deadlines.header_min_rate, 0);
        assert_eq!(Dispatch::parse("poll"), Ok(Dispatch::Poll));
        assert!(Dispatch::parse("fast").is_err());
        let timed = base().with_timeouts(2, 0).unwrap();
        assert_eq!(
            (timed.deadlines.send, timed.grace),
            (Duration::from_secs(2), Duration::ZERO)
        );
        for bad in ["healthz", "/a b", "/x?y", "/\n"] {
            assert!(base().with_health(Some(bad.into())).is_err(), "{bad}");
        }
        assert!(base()
            .with_cache_control(Some("public, max-age=60".into()))
            .is_ok());
        for bad in ["", "a\r\nSet-Cookie: x=1", "caf\u{e9}"] {
            assert!(
                base().with_cache_control(Some(bad.into())).is_err(),
                "{bad:?}"
            );
        }
        assert!(base()
            .with_error_pages(Some(Path::new("/no/such/dir")))
            .is_err());
    }
}
