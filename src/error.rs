//! One error type for every request that ends in an error status, the one `match` that maps
//! it to a status (whose reason phrase, built-in page and effect on the connection come from
//! the status table), and the one function that renders every error reply (with the site's
//! own pages, loaded once at start-up). May use: status, response.

use std::fs;
use std::io;
use std::path::Path;

use crate::response::{Body, Charset, Response, Text};
use crate::status;

/// Declares [`HttpError`] from one list, so that its variants, [`HttpError::ALL`] and
/// [`HttpError::status`] cannot disagree: adding an error is one line here and one row in
/// [`status::TABLE`] (whose tests walk `ALL`).
macro_rules! http_errors {
    ($( $(#[$doc:meta])* $variant:ident $(($field:ty = $sample:expr))? => $code:literal, )*) => {
        /// Everything that can go wrong while handling one request, as the client will see it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum HttpError {
            $( $(#[$doc])* $variant $(($field))?, )*
        }

        impl HttpError {
            /// Every variant (with a sample field), for the tests that walk them and for
            /// loading a page per status.
            pub const ALL: &'static [HttpError] = &[ $( HttpError::$variant $(($sample))?, )* ];

            /// The status code for this error: the only place errors become numbers.
            /// Everything else about the status is in [`status::TABLE`].
            pub fn status(self) -> u16 {
                match self {
                    $( HttpError::$variant { .. } => $code, )*
                }
            }
        }
    };
}

http_errors! {
    /// Malformed request line, header, framing or path. The text is for the debug log only.
    BadRequest(&'static str = "") => 400,
    /// The file exists but may not be served (not a regular file, no permission).
    Forbidden => 403,
    /// No such file, or a path we refuse to reveal (dotfiles, symlinks leaving the root, a
    /// directory without an index when listing is off).
    NotFound => 404,
    /// Anything but GET and HEAD.
    MethodNotAllowed => 405,
    /// No representation the client accepts (e.g. `Accept-Encoding: identity;q=0` and no
    /// precompressed variant).
    NotAcceptable => 406,
    /// The request head did not arrive in time.
    RequestTimeout => 408,
    /// If-Match or If-Unmodified-Since failed (RFC 9110 §13.1).
    PreconditionFailed => 412,
    /// The request target is longer than [`crate::request::MAX_TARGET`].
    UriTooLong => 414,
    /// A Range with nothing satisfiable (the reply needs `Content-Range: bytes */LEN`).
    RangeNotSatisfiable => 416,
    /// The head is longer than [`crate::request::MAX_HEAD`] or has too many fields.
    HeaderTooLarge => 431,
    /// The filesystem failed in a way the client did not cause.
    Internal => 500,
    /// A transfer coding we do not implement (RFC 9112 §6.1).
    NotImplemented => 501,
    /// The server is out of a resource (file descriptors) for now.
    Unavailable => 503,
    /// An HTTP version other than 1.0 and 1.1.
    VersionNotSupported => 505,
}

impl HttpError {
    /// Whether the connection must close after this reply (the table says why).
    pub fn closes_connection(self) -> bool {
        status::closes(self.status())
    }

    /// The reply for this error with the built-in page: a small fixed HTML page that never
    /// echoes the request.
    pub fn response(self) -> Response {
        ErrorPages::default().render(self)
    }
}

/// The most an error page may weigh; it is held in memory for the life of the process.
const MAX_PAGE: u64 = 1024 * 1024;

/// The site's own error pages, read once at start-up (nginx's `error_page`), used in place of
/// the built-in ones. Never read per request.
#[derive(Debug, Clone)]
pub struct ErrorPages {
    /// (status, page) for each status with its own `NNN.html`.
    pages: Vec<(u16, &'static [u8])>,
    /// `50x.html`: any 5xx without its own page.
    server_error: Option<&'static [u8]>,
    /// The pages' `Content-Type`: `text/html`, with `--charset`'s parameter if set
    /// (rendered once; the built-in pages are ASCII, so any charset is true of them).
    content_type: Text,
}

impl Default for ErrorPages {
    fn default() -> ErrorPages {
        ErrorPages {
            pages: Vec::new(),
            server_error: None,
            content_type: Text::Static("text/html"),
        }
    }
}

impl ErrorPages {
    /// Loads `NNN.html` for every status we send, and `50x.html`, from `dir`; without a dir,
    /// `404.html` and `50x.html` from the document root, if they are there.
    pub fn load(dir: Option<&Path>, root: &Path) -> Result<ErrorPages, String> {
        let (dir, statuses): (&Path, &[u16]) = match dir {
            Some(dir) => {
                if !dir.is_dir() {
                    return Err(format!(
                        "--error-pages '{}' is not a directory",
                        dir.display()
                    ));
                }
                (
                    dir,
                    &HttpError::ALL
                        .iter()
                        .map(|e| e.status())
                        .collect::<Vec<_>>(),
                )
            }
            None => (root, &[404]),
        };
        let mut pages = ErrorPages::default();
        for &status in statuses {
            if let Some(page) = read_page(&dir.join(format!("{status}.html")))? {
                pages.pages.push((status, page));
            }
        }
        pages.server_error = read_page(&dir.join("50x.html"))?;
        Ok(pages)
    }

    /// The same pages, sent with `charset` (`--charset`).
    pub fn with_charset(mut self, charset: &Charset) -> ErrorPages {
        self.content_type = charset.content_type("text/html");
        self
    }

    /// How many custom pages are loaded.
    pub fn len(&self) -> usize {
        self.pages.len() + usize::from(self.server_error.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The reply for `err`: the site's page for its status if there is one, else ours. The one
    /// place an error becomes a response.
    pub fn render(&self, err: HttpError) -> Response {
        let code = err.status();
        let custom = self
            .pages
            .iter()
            .find(|(s, _)| *s == code)
            .map(|(_, page)| *page)
            .or(self.server_error.filter(|_| code >= 500));
        let page = custom.unwrap_or_else(|| status::page(code));
        let mut response = Response::new(code, Body::Static(page));
        response.content_type = Some(self.content_type.clone());
        if err == HttpError::MethodNotAllowed {
            response.allow = Some("GET, HEAD");
        }
        if err == HttpError::Unavailable {
            response.extra.push(("Retry-After", "1".to_string()));
        }
        response
    }
}

/// Reads one page if it exists; a page that exists but cannot be read is a start-up error.
fn read_page(path: &Path) -> Result<Option<&'static [u8]>, String> {
    match fs::metadata(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(format!("error page '{}': {err}", path.display())),
        Ok(meta) if !meta.is_file() || meta.len() > MAX_PAGE => Err(format!(
            "error page '{}' must be a regular file of at most 1 MiB",
            path.display()
        )),
        Ok(_) => {
            let bytes =
                fs::read(path).map_err(|err| format!("error page '{}': {err}", path.display()))?;
            // Loaded once and kept for the life of the process.
            Ok(Some(Box::leak(bytes.into_boxed_slice())))
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
            (HttpError::NotAcceptable, 406, false),
            (HttpError::RequestTimeout, 408, true),
            (HttpError::PreconditionFailed, 412, false),
            (HttpError::UriTooLong, 414, true),
            (HttpError::RangeNotSatisfiable, 416, false),
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
            assert_eq!(response.content_type.as_deref(), Some("text/html"));
            assert!(
                HttpError::ALL.iter().any(|e| e.status() == status),
                "{err:?}"
            );
            let Body::Static(page) = response.body else {
                panic!("error pages are static")
            };
            let page = std::str::from_utf8(page).unwrap();
            // The page and the status line say the same thing.
            let reason = status::reason(status);
            assert!(
                page.contains(&format!("<title>{status} {reason}</title>")),
                "{page}"
            );
        }
        assert_eq!(
            HttpError::MethodNotAllowed.response().allow,
            Some("GET, HEAD")
        );
        assert_eq!(HttpError::NotFound.response().allow, None);
    }

    #[test]
    fn custom_pages_replace_the_built_in_ones() {
        let dir = std::env::temp_dir().join(format!("httpd-pages-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("404.html"), "my 404").unwrap();
        fs::write(dir.join("50x.html"), "my 50x").unwrap();
        fs::write(dir.join("403.html"), "my 403").unwrap();
        let body = |pages: &ErrorPages, err: HttpError| match pages.render(err).body {
            Body::Static(page) => String::from_utf8_lossy(page).into_owned(),
            other => panic!("{other:?}"),
        };
        let from_dir = ErrorPages::load(Some(&dir), Path::new("/nonexistent")).unwrap();
        assert_eq!(from_dir.len(), 3);
        assert_eq!(body(&from_dir, HttpError::NotFound), "my 404");
        assert_eq!(body(&from_dir, HttpError::Forbidden), "my 403");
        assert_eq!(body(&from_dir, HttpError::Internal), "my 50x");
        assert_eq!(body(&from_dir, HttpError::Unavailable), "my 50x");
        assert_eq!(from_dir.render(HttpError::Internal).status, 500);
        assert!(body(&from_dir, HttpError::BadRequest("x")).contains("400 Bad Request"));
        // At the root only 404.html and 50x.html count.
        let from_root = ErrorPages::load(None, &dir).unwrap();
        assert_eq!(from_root.len(), 2);
        assert!(body(&from_root, HttpError::Forbidden).contains("403 Forbidden"));
        assert!(ErrorPages::load(Some(&dir.join("404.html")), &dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
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
