//! Validated settings, built once at start-up from the command line: every check that can
//! fail before the server binds happens here, with a message a user can act on. May use: std.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a client that stops reading may hold a worker (SO_SNDTIMEO).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight replies may take to finish after SIGTERM/SIGINT.
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
        })
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
    }
}
