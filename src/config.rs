//! Validated settings, built once at start-up from the command line: every check that can
//! fail before the server binds happens here, with a message a user can act on. May use: std.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::ErrorPages;

/// Default for `--send-timeout`: how long a client that stops reading may hold a worker
/// (SO_SNDTIMEO: the longest one write may wait for the client to make room).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for `--grace`: how long in-flight replies may take to finish after SIGTERM/SIGINT.
pub const GRACE: Duration = Duration::from_secs(30);

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The document root, canonical (absolute, no symlinks): resolved once, here.
    pub root: PathBuf,
    pub workers: usize,
    pub addr: SocketAddr,
    /// Keep-alive idle timeout, and the time a request head has to arrive in full.
    pub timeout: Duration,
    /// Access log file; `None` logs to stderr.
    pub access_log: Option<PathBuf>,
    /// How long one write may wait for a client that does not read (`--send-timeout`).
    pub send_timeout: Duration,
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
    /// Checks and canonicalises the settings.
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
            timeout: Duration::from_secs(timeout_secs),
            access_log,
            send_timeout: SEND_TIMEOUT,
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
        self.send_timeout = Duration::from_secs(send_secs);
        self.grace = Duration::from_secs(grace_secs);
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
        self.pages = ErrorPages::load(dir, &self.root).map_err(ConfigError)?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let ok = Config::new(Path::new("."), 8, "::1", 0, 5, None).unwrap();
        assert!(ok.root.is_absolute());
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
        let timed = base().with_timeouts(2, 0).unwrap();
        assert_eq!(
            (timed.send_timeout, timed.grace),
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
