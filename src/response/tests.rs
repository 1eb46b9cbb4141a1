//! Head encoding byte for byte, the Last-Modified clamp, the clock.

use super::*;

const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

#[test]
fn decimals_match_display() {
    for n in [0, 7, 9, 10, 99, 100, 1024, 206, 1 << 40, u64::MAX] {
        let mut out = b"x".to_vec();
        push_decimal(&mut out, n);
        assert_eq!(out, format!("x{n}").into_bytes());
    }
}

#[test]
fn file_head_bytes() {
    let mut response = Response::new(200, Body::Static(b"hello"));
    response.content_type = Some("text/html".into());
    response.last_modified = Some(Modified::new(UNIX_EPOCH + Duration::from_secs(784111777)));
    response.etag = Some("\"abc-5\"".into());
    response.accept_ranges = true;
    let mut out = Vec::new();
    response.encode_head(Date::parse(DATE).unwrap(), true, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "HTTP/1.1 200 OK\r\nServer: {SERVER}\r\nDate: {DATE}\r\n\
             Content-Type: text/html\r\nContent-Length: 5\r\n\
             Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nETag: \"abc-5\"\r\n\
             Accept-Ranges: bytes\r\nX-Content-Type-Options: nosniff\r\n\
             Connection: keep-alive\r\n\r\n"
        )
    );
}

fn last_modified(modified: SystemTime, date: &str) -> String {
    let mut response = Response::new(200, Body::Empty);
    response.last_modified = Some(Modified::new(modified));
    let mut out = Vec::new();
    response.encode_head(Date::parse(date).unwrap(), true, &mut out);
    let head = String::from_utf8(out).unwrap();
    let line = head
        .lines()
        .find_map(|line| line.strip_prefix("Last-Modified: "))
        .unwrap_or_else(|| panic!("{head}"));
    line.to_string()
}

#[test]
fn last_modified_is_clamped_between_the_epoch_and_the_date() {
    let day = Duration::from_secs(86_400);
    let before_1970 = UNIX_EPOCH - 3653 * day;
    let table = [
        // 1960: shown as the epoch, never a panic (nginx shows the same).
        (before_1970, DATE, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (
            UNIX_EPOCH - Duration::from_nanos(1),
            DATE,
            "Thu, 01 Jan 1970 00:00:00 GMT",
        ),
        (UNIX_EPOCH, DATE, "Thu, 01 Jan 1970 00:00:00 GMT"),
        // Up to the Date's second, shown as it is.
        (
            UNIX_EPOCH + Duration::from_secs(784_111_776),
            DATE,
            "Sun, 06 Nov 1994 08:49:36 GMT",
        ),
        (
            UNIX_EPOCH + Duration::from_millis(784_111_777_900),
            DATE,
            DATE,
        ),
        // Later than the Date (RFC 9110 §8.8.2.1): the Date.
        (UNIX_EPOCH + Duration::from_secs(784_111_778), DATE, DATE),
        (UNIX_EPOCH + Duration::from_secs(4_102_444_800), DATE, DATE),
        // Past what an HTTP-date can show: the Date, never a panic.
        (
            UNIX_EPOCH + Duration::from_secs(LAST_HTTP_DATE + 1000),
            DATE,
            DATE,
        ),
    ];
    for (modified, date, expected) in table {
        assert_eq!(
            last_modified(modified, date),
            expected,
            "{modified:?} {date}"
        );
    }
    assert_eq!(
        http_date(before_1970).to_string(),
        "Thu, 01 Jan 1970 00:00:00 GMT"
    );
    // A Date can no longer be unreadable (it is built from the clock, or parsed); what
    // rendering a time past 9999 does is http_date's to answer.
    assert_eq!(
        http_date(UNIX_EPOCH + Duration::from_secs(LAST_HTTP_DATE + 1000)).to_string(),
        "Fri, 31 Dec 9999 23:59:59 GMT"
    );
    assert!(Date::parse("garbage").is_none());
}

#[test]
fn redirect_and_error_heads() {
    let mut response = Response::new(301, Body::Static(b"moved"));
    response.content_type = Some("text/html".into());
    response.location = Some("/dir/?q=1".into());
    let mut out = Vec::new();
    response.encode_head(Date::parse(DATE).unwrap(), false, &mut out);
    let head = String::from_utf8(out.clone()).unwrap();
    assert!(
        head.starts_with("HTTP/1.1 301 Moved Permanently\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nLocation: /dir/?q=1\r\n"), "{head}");
    assert!(head.ends_with("\r\nConnection: close\r\n\r\n"), "{head}");

    let mut response = crate::error::HttpError::MethodNotAllowed.response();
    response.extra.push(("X-Test", "1".into()));
    response.encode_head(Date::parse(DATE).unwrap(), true, &mut out);
    let head = String::from_utf8(out).unwrap();
    assert!(
        head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nAllow: GET, HEAD\r\nX-Test: 1\r\nX-Content-Type-Options: nosniff\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nContent-Length: "), "{head}");
}

#[test]
fn bodiless_statuses_have_no_length() {
    let response = Response::new(304, Body::Empty);
    let mut out = Vec::new();
    response.encode_head(Date::parse(DATE).unwrap(), true, &mut out);
    let head = String::from_utf8(out).unwrap();
    assert!(!head.contains("\r\nContent-Length:"), "{head}");
    assert!(!head.contains("\r\nContent-Type:"), "{head}");
}

#[test]
fn large_lengths_are_exact() {
    // A body length past 4 GiB must print as a full u64.
    let file = File::open("Cargo.toml").unwrap();
    let response = Response::new(
        200,
        Body::File {
            file: Arc::new(file),
            offset: 0,
            len: (5 << 30) + 7,
        },
    );
    let mut out = Vec::new();
    response.encode_head(Date::parse(DATE).unwrap(), true, &mut out);
    let head = String::from_utf8(out).unwrap();
    assert!(
        head.contains("\r\nContent-Length: 5368709127\r\n"),
        "{head}"
    );
}

#[test]
fn clock_is_imf_fixdate_and_clf_follows() {
    let mut clock = Clock::default();
    let date = clock.now();
    let now = date.text().to_string();
    let second = date.second;
    assert_eq!(Date::parse(&now).map(|d| d.second), Some(second), "{now}");
    assert!(now.ends_with(" GMT") && now.len() == 29, "{now}");
    let (clf, second) = clock.log_time();
    assert_eq!(clf.len(), "06/Nov/1994:08:49:37 +0000".len(), "{clf}");
    assert!(second > 0);
    let clf_time = |imf: &str| {
        let mut out = String::new();
        write_clf_time(imf, &mut out);
        out
    };
    assert_eq!(clf_time(DATE), "06/Nov/1994:08:49:37 +0000");
    assert_eq!(clf_time("garbage"), "-");
}

#[test]
fn a_charset_is_added_to_textual_types_only() {
    let none = Charset::default();
    let utf8 = Charset::parse("utf-8").unwrap();
    let table = [
        ("text/html", "text/html; charset=utf-8"),
        ("text/plain", "text/plain; charset=utf-8"),
        ("text/css", "text/css; charset=utf-8"),
        ("text/javascript", "text/javascript; charset=utf-8"),
        (
            "application/javascript",
            "application/javascript; charset=utf-8",
        ),
        ("application/json", "application/json; charset=utf-8"),
        (
            "application/manifest+json",
            "application/manifest+json; charset=utf-8",
        ),
        ("image/png", "image/png"),
        ("image/svg+xml", "image/svg+xml"),
        ("application/octet-stream", "application/octet-stream"),
        ("application/wasm", "application/wasm"),
        // A type that has its parameters already keeps them.
        ("text/html; charset=utf-8", "text/html; charset=utf-8"),
    ];
    for (media, with) in table {
        assert_eq!(&*none.content_type(media), media, "{media}");
        assert_eq!(&*utf8.content_type(media), with, "{media}");
    }
    assert!(Charset::parse("utf 8").is_err());
    assert!(Charset::parse("").is_err());
}

#[test]
fn modified_renders_once_and_clamps_per_date() {
    let day = Duration::from_secs(86_400);
    let at = |time: SystemTime| {
        let mut response = Response::new(304, Body::Empty);
        response.last_modified = Some(Modified::new(time));
        let mut out = Vec::new();
        response.encode_head(Date::parse(DATE).unwrap(), true, &mut out);
        String::from_utf8(out).unwrap()
    };
    let date = UNIX_EPOCH + Duration::from_secs(784_111_777);
    assert_eq!(Modified::new(date).text(), DATE);
    assert!(at(date - day).contains("\r\nLast-Modified: Sat, 05 Nov 1994 08:49:37 GMT\r\n"));
    assert!(at(date + day).contains(&format!("\r\nLast-Modified: {DATE}\r\n")));
    assert_eq!(
        Modified::new(UNIX_EPOCH - day).text(),
        "Thu, 01 Jan 1970 00:00:00 GMT"
    );
}

#[test]
fn small_refuses_what_does_not_fit() {
    let mut small = Small::default();
    assert!(write!(small, "{}", "x".repeat(96)).is_ok());
    assert_eq!(small.as_str().len(), 96);
    assert!(write!(small, "y").is_err());
    assert_eq!(small.as_str(), "x".repeat(96));
}
