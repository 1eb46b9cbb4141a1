//! One error type for every request that ends in an error status, the one `match` that maps
//! it to a status, and the one function that renders every error reply. May use: response.

use std::io;

use crate::response::{Body, Response};

/// Everything that can go wrong while handling one request, as the client will see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Malformed request line, header, framing or path. The text is for the debug log only.
    BadRequest(&'static str),
    /// The file exists but may not be served (a directory without an index, not a regular
    /// file, no permission).
    Forbidden,
    /// No such file, or a path we refuse to reveal (dotfiles, symlinks leaving the root).
    NotFound,
    /// Anything but GET and HEAD.
    MethodNotAllowed,
    /// The request head did not arrive in time.
    RequestTimeout,
    /// The request target is longer than [`crate::request::MAX_TARGET`].
    UriTooLong,
    /// The head is longer than [`crate::request::MAX_HEAD`] or has too many fields.
    HeaderTooLarge,
    /// A transfer coding we do not implement (RFC 9112 §6.1).
    NotImplemented,
    /// The server is out of a resource (file descriptors) for now.
    Unavailable,
    /// An HTTP version other than 1.0 and 1.1.
    VersionNotSupported,
    /// The filesystem failed in a way the client did not cause.
    Internal,
}

impl HttpError {
    /// The status code for this error: the only place errors become numbers.
    pub fn status(self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::Forbidden => 403,
            HttpError::NotFound => 404,
            HttpError::MethodNotAllowed => 405,
            HttpError::RequestTimeout => 408,
            HttpError::UriTooLong => 414,
            HttpError::HeaderTooLarge => 431,
            HttpError::Internal => 500,
            HttpError::NotImplemented => 501,
            HttpError::Unavailable => 503,
            HttpError::VersionNotSupported => 505,
        }
    }

    /// Whether the connection must close after this reply: after a malformed request we can
    /// no longer trust the framing of whatever follows it (RFC 9112 §9.6), and after a
    /// server fault we start clean.
    pub fn closes_connection(self) -> bool {
        !matches!(
            self,
            HttpError::Forbidden | HttpError::NotFound | HttpError::MethodNotAllowed
        )
    }

    /// The reply for this error: a small fixed HTML page that never echoes the request.
    pub fn response(self) -> Response {
        let mut response = Response::new(self.status(), Body::Static(self.page()));
        response.content_type = Some("text/html");
        if self == HttpError::MethodNotAllowed {
            response.allow = Some("GET, HEAD");
        }
        if self == HttpError::Unavailable {
            response.extra.push(("Retry-After", "1".to_string()));
        }
        response
    }

    fn page(self) -> &'static [u8] {
        macro_rules! page {
            ($code:literal, $reason:literal) => {
                concat!(
                    "<!DOCTYPE html>\n<html><head><title>",
                    $code,
                    " ",
                    $reason,
                    "</title></head>\n<body><h1>",
                    $code,
                    " ",
                    $reason,
                    "</h1><hr>httpd</body></html>\n"
                )
                .as_bytes()
            };
        }
        match self {
            HttpError::BadRequest(_) => page!("400", "Bad Request"),
            HttpError::Forbidden => page!("403", "Forbidden"),
            HttpError::NotFound => page!("404", "Not Found"),
            HttpError::MethodNotAllowed => page!("405", "Method Not Allowed"),
            HttpError::RequestTimeout => page!("408", "Request Timeout"),
            HttpError::UriTooLong => page!("414", "URI Too Long"),
            HttpError::HeaderTooLarge => page!("431", "Request Header Fields Too Large"),
            HttpError::Internal => page!("500", "Internal Server Error"),
            HttpError::NotImplemented => page!("501", "Not Implemented"),
            HttpError::Unavailable => page!("503", "Service Unavailable"),
            HttpError::VersionNotSupported => page!("505", "HTTP Version Not Supported"),
        }
    }
}

impl From<io::Error> for HttpError {
    /// Filesystem errors met while resolving a path. "Not there" in any form is a 404, so a
    /// client cannot tell a missing file from one it may not see.
    fn from(err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => HttpError::NotFound,
            io::ErrorKind::PermissionDenied => HttpError::Forbidden,
            _ => match err.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENAMETOOLONG) => HttpError::NotFound,
                Some(libc::EACCES) | Some(libc::EPERM) => HttpError::Forbidden,
                Some(libc::EMFILE) | Some(libc::ENFILE) => {
                    log::warn!("out of file descriptors opening a file: {err}");
                    HttpError::Unavailable
                }
                _ => {
                    log::warn!("filesystem error: {err}");
                    HttpError::Internal
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_status() {
        let table = [
            (HttpError::BadRequest("x"), 400, true),
            (HttpError::Forbidden, 403, false),
            (HttpError::NotFound, 404, false),
            (HttpError::MethodNotAllowed, 405, false),
            (HttpError::RequestTimeout, 408, true),
            (HttpError::UriTooLong, 414, true),
            (HttpError::HeaderTooLarge, 431, true),
            (HttpError::Internal, 500, true),
            (HttpError::NotImplemented, 501, true),
            (HttpError::Unavailable, 503, true),
            (HttpError::VersionNotSupported, 505, true),
        ];
        for (err, status, closes) in table {
            assert_eq!(err.status(), status, "{err:?}");
            assert_eq!(err.closes_connection(), closes, "{err:?}");
            let response = err.response();
            assert_eq!(response.status, status);
            assert_eq!(response.content_type, Some("text/html"));
            let Body::Static(page) = response.body else {
                panic!("error pages are static")
            };
            let page = std::str::from_utf8(page).unwrap();
            assert!(page.contains(&format!("<title>{status} ")), "{page}");
        }
        assert_eq!(
            HttpError::MethodNotAllowed.response().allow,
            Some("GET, HEAD")
        );
        assert_eq!(HttpError::NotFound.response().allow, None);
    }

    #[test]
    fn io_errors_map_to_statuses() {
        let table = [
            (io::Error::from(io::ErrorKind::NotFound), 404),
            (io::Error::from_raw_os_error(libc::ENOTDIR), 404),
            (io::Error::from_raw_os_error(libc::ELOOP), 404),
            (io::Error::from_raw_os_error(libc::ENAMETOOLONG), 404),
            (io::Error::from_raw_os_error(libc::EACCES), 403),
            (io::Error::from_raw_os_error(libc::EMFILE), 503),
            (io::Error::from_raw_os_error(libc::EIO), 500),
        ];
        for (err, status) in table {
            let text = err.to_string();
            assert_eq!(HttpError::from(err).status(), status, "{text}");
        }
    }
}
