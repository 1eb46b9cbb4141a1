//! The one table of the statuses we send: for each, its reason phrase, its built-in page and
//! whether the connection closes after it. `HttpError`, the head's status line and the
//! built-in error pages all read it; adding a status is one row here (and, for an error, one line
//! in `error.rs`'s `http_errors!` list). May use: nothing but std.

/// One status we send.
#[derive(Debug)]
pub struct Status {
    pub code: u16,
    /// The reason phrase of the status line (RFC 9110 §15 spells each one).
    pub reason: &'static str,
    /// The body we send when nothing better is at hand: a small fixed HTML page that never
    /// echoes the request. `None` for statuses whose body the handler makes (or that have
    /// none).
    pub page: Option<&'static [u8]>,
    /// Whether the connection closes after this status: after a malformed request we can no
    /// longer trust the framing of whatever follows it (RFC 9112 §9.6), and after a server
    /// fault (or a timeout, or running out of room) we start clean.
    pub closes: bool,
}

/// One row: code, reason phrase, then `page` for a built-in page, and `close` for a status
/// that ends the connection. The page is put together at compile time, so it costs nothing
/// per request and always says what the status line says.
macro_rules! row {
    ($code:literal, $reason:literal) => {
        Status {
            code: $code,
            reason: $reason,
            page: None,
            closes: false,
        }
    };
    ($code:literal, $reason:literal, page) => {
        Status {
            code: $code,
            reason: $reason,
            page: Some(page!($code, $reason)),
            closes: false,
        }
    };
    ($code:literal, $reason:literal, page, close) => {
        Status {
            code: $code,
            reason: $reason,
            page: Some(page!($code, $reason)),
            closes: true,
        }
    };
}

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

/// Every status the server sends, in order of code.
pub static TABLE: &[Status] = &[
    row!(200, "OK"),
    row!(206, "Partial Content"),
    // The redirect's body is fixed: its Location may carry the client's query, which we
    // never echo into HTML.
    row!(301, "Moved Permanently", page),
    row!(304, "Not Modified"),
    row!(400, "Bad Request", page, close),
    row!(403, "Forbidden", page),
    row!(404, "Not Found", page),
    row!(405, "Method Not Allowed", page),
    row!(406, "Not Acceptable", page),
    row!(408, "Request Timeout", page, close),
    row!(412, "Precondition Failed", page),
    row!(414, "URI Too Long", page, close),
    row!(416, "Range Not Satisfiable", page),
    row!(431, "Request Header Fields Too Large", page, close),
    row!(500, "Internal Server Error", page, close),
    row!(501, "Not Implemented", page, close),
    row!(503, "Service Unavailable", page, close),
    row!(505, "HTTP Version Not Supported", page, close),
];

/// The row for `code`, if we send it. A scan of a few rows in order of code, with the common
/// 200 first: cheaper than hashing.
pub fn lookup(code: u16) -> Option<&'static Status> {
    TABLE.iter().find(|status| status.code == code)
}

/// The reason phrase for `code` ("Unknown" for a code not in the table; the tests make sure
/// we send none).
pub fn reason(code: u16) -> &'static str {
    lookup(code).map_or("Unknown", |status| status.reason)
}

/// The built-in page for `code` (empty for a code without one).
pub fn page(code: u16) -> &'static [u8] {
    lookup(code)
        .and_then(|status| status.page)
        .unwrap_or_default()
}

/// Whether the connection closes after `code` (yes for a code not in the table: when in
/// doubt, start clean).
pub fn closes(code: u16) -> bool {
    lookup(code).is_none_or(|status| status.closes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HttpError;
    use crate::response::{Body, Clock, Response};

    /// Every `Response::new(NNN, ...)` with a literal code anywhere in `src/`: the statuses
    /// the handler makes itself (errors come from `HttpError`).
    fn literal_statuses() -> Vec<u16> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.clone()];
        let mut codes = Vec::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).unwrap() {
                    files.push(entry.unwrap().path());
                }
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (at, _) in text.match_indices("Response::new(") {
                let digits: String = text[at + "Response::new(".len()..]
                    .trim_start()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(code) = digits.parse() {
                    codes.push(code);
                }
            }
        }
        codes
    }

    #[test]
    fn the_table_is_in_order_of_code_without_repeats() {
        for pair in TABLE.windows(2) {
            assert!(pair[0].code < pair[1].code, "{pair:?}");
        }
    }

    #[test]
    fn every_status_we_send_has_a_row_and_a_status_line() {
        let errors: Vec<u16> = HttpError::ALL.iter().map(|e| e.status()).collect();
        let handler = literal_statuses();
        for code in [200, 206, 301, 304] {
            assert!(handler.contains(&code), "{code} not found in {handler:?}");
        }
        for &code in errors.iter().chain(&handler) {
            let status = lookup(code).unwrap_or_else(|| panic!("{code} has no row"));
            assert!(!status.reason.is_empty(), "{code}");
            let mut head = Vec::new();
            Response::new(code, Body::Empty).encode_head(Clock::default().now(), true, &mut head);
            let line = format!("HTTP/1.1 {code} {}\r\n", status.reason);
            assert!(head.starts_with(line.as_bytes()), "{code}");
        }
        // And no row is dead: each is a status something sends.
        for status in TABLE {
            assert!(
                errors.contains(&status.code) || handler.contains(&status.code),
                "{} is in the table but nothing sends it",
                status.code
            );
        }
        assert_eq!(reason(406), "Not Acceptable");
        assert_eq!(reason(299), "Unknown");
    }

    #[test]
    fn every_error_has_its_page_and_every_page_says_its_status() {
        for &err in HttpError::ALL {
            let status = lookup(err.status()).unwrap_or_else(|| panic!("{err:?}"));
            assert!(status.page.is_some(), "{err:?} has no built-in page");
            assert_eq!(err.closes_connection(), status.closes, "{err:?}");
        }
        for status in TABLE {
            let Some(page) = status.page else {
                assert!(!status.closes, "{}", status.code);
                continue;
            };
            let (code, reason) = (status.code, status.reason);
            assert_eq!(
                std::str::from_utf8(page).unwrap(),
                format!(
                    "<!DOCTYPE html>\n<html><head><title>{code} {reason}</title></head>\n\
                     <body><h1>{code} {reason}</h1><hr>httpd</body></html>\n"
                )
            );
            assert_eq!(super::page(code), page);
        }
        assert_eq!(super::page(200), b"");
        assert!(closes(299) && closes(400) && !closes(404) && !closes(200));
    }
}
