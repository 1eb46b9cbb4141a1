//! The line formats' tables: common and JSON lines field by field, JSON escaping of whatever
//! a client sends (quotes, controls, bytes that are not UTF-8), the request line's split, the
//! field caps, and the worst line of every format within `PIPE_BUF`.
use super::*;
use crate::accesslog::tests::{entry, format_as};
use crate::accesslog::PIPE_BUF;
use serde_json::Value;
use std::time::Duration;

fn json(entry: &Entry<'_>) -> (String, Value) {
    let line = format_as(LogFormat::Json, entry);
    assert!(line.ends_with('\n'), "{line:?}");
    assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
    let value = serde_json::from_str(&line).unwrap_or_else(|err| panic!("{err}: {line}"));
    (line, value)
}

#[test]
fn common_log_format_has_no_referer_or_agent() {
    let e = Entry {
        referer: Some("http://r/"),
        request_line: b"GET /a\"b HTTP/1.0",
        ..entry(404)
    };
    assert_eq!(
        format_as(LogFormat::Common, &e),
        "::1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a\\x22b HTTP/1.0\" 404 1\n"
    );
    let e = Entry { bytes: 0, ..e };
    assert!(format_as(LogFormat::Common, &e).ends_with("\" 404 -\n"));
    // Combined is the same, then the two headers.
    assert_eq!(
        format_as(LogFormat::Combined, &e),
        "::1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a\\x22b HTTP/1.0\" 404 - \"http://r/\" \"t\"\n"
    );
}

#[test]
fn json_line_has_every_key_in_order() {
    let e = Entry {
        client: "192.0.2.7".parse().unwrap(),
        request_line: b"GET /docs/a.html?x=1 HTTP/1.1",
        referer: Some("http://example.test/"),
        duration: Duration::from_micros(1234),
        ..entry(200)
    };
    let (line, _) = json(&e);
    assert_eq!(
        line,
        "{\"time\":\"1994-11-06T08:49:37Z\",\"client\":\"192.0.2.7\",\"method\":\"GET\",\
         \"path\":\"/docs/a.html?x=1\",\"protocol\":\"HTTP/1.1\",\"status\":200,\"bytes\":1,\
         \"duration_us\":1234,\"referer\":\"http://example.test/\",\"user_agent\":\"t\"}\n"
    );
    // Headers not sent are null; an IPv6 client is its text.
    let (_, value) = json(&Entry {
        user_agent: None,
        bytes: 0,
        ..entry(304)
    });
    assert_eq!(value["referer"], Value::Null);
    assert_eq!(value["user_agent"], Value::Null);
    assert_eq!(value["client"], "::1");
    assert_eq!(value["bytes"], 0);
    assert_eq!(value["status"], 304);
    assert_eq!(value["duration_us"], 1500);
}

#[test]
fn json_escapes_whatever_a_client_sends() {
    let e = Entry {
        request_line: b"GET /a\"b\\c\x1b\x7f\xff\xfe\xc3\xa9\n HTTP/1.1",
        referer: Some("\"},{\"status\":200"),
        user_agent: Some("tab\there\u{1}\u{e9}\u{1F600}"),
        ..entry(200)
    };
    let (line, value) = json(&e);
    // `\xff\xfe` are two invalid sequences: two U+FFFD; é stays é.
    assert_eq!(
        value["path"], "/a\"b\\c\u{1b}\u{7f}\u{FFFD}\u{FFFD}\u{e9}\n",
        "{line}"
    );
    assert_eq!(value["referer"], "\"},{\"status\":200");
    assert_eq!(value["user_agent"], "tab\there\u{1}\u{e9}\u{1F600}");
    assert_eq!(value["status"], 200);
    assert!(line.contains("\\u001b") && line.contains("\\n"), "{line}");
}

#[test]
fn the_request_line_splits_at_its_first_and_last_space() {
    type Parts<'a> = (&'a [u8], &'a [u8], &'a [u8]);
    let cases: &[(&[u8], Parts<'_>)] = &[
        (b"GET /a HTTP/1.1", (b"GET", b"/a", b"HTTP/1.1")),
        (b"GET /a", (b"GET", b"/a", b"")),
        (b"GET /a b HTTP/1.0", (b"GET", b"/a b", b"HTTP/1.0")),
        (b"GET /a b", (b"GET", b"/a b", b"")),
        (b"GARBAGE", (b"GARBAGE", b"", b"")),
        (b"", (b"", b"", b"")),
        (b"GET  HTTP/1.1", (b"GET", b"", b"HTTP/1.1")),
    ];
    for (line, want) in cases {
        assert_eq!(
            split_request_line(line),
            *want,
            "{}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn json_text_is_capped_in_escaped_bytes_without_cutting_a_character() {
    let text = |bytes: &[u8], cap| Text::new(bytes, cap).to_string();
    assert_eq!(text(b"abc", 3), "abc");
    assert_eq!(text(b"abcd", 3), "abc...");
    // A control takes six bytes escaped (\u0001), a quote two, é two, U+FFFD three.
    assert_eq!(text(b"a\x01", 6), "a...");
    assert_eq!(text(b"a\x01", 7), "a\x01");
    assert_eq!(text(b"a\"b", 3), "a\"...");
    assert_eq!(text("a\u{e9}".as_bytes(), 2), "a...");
    assert_eq!(text(b"a\xffb", 3), "a...");
    assert_eq!(text(b"a\xffb", 5), "a\u{FFFD}b");
    assert_eq!(text(b"", 0), "");
}

#[test]
fn clf_time_becomes_rfc_3339() {
    for (clf, want) in [
        ("06/Nov/1994:08:49:37 +0000", "1994-11-06T08:49:37Z"),
        ("01/Jan/2026:00:00:00 +0000", "2026-01-01T00:00:00Z"),
        ("31/Dec/1999:23:59:59 +0000", "1999-12-31T23:59:59Z"),
        ("-", "-"),
        ("06/Xyz/1994:08:49:37 +0000", "06/Xyz/1994:08:49:37 +0000"),
    ] {
        assert_eq!(Rfc3339(clf).to_string(), want);
    }
}

#[test]
fn the_longest_line_of_every_format_fits_one_atomic_pipe_write() {
    // The worst bytes for each escaping: a control is 4 bytes in CLF and 6 in JSON, a quote
    // 4 in CLF; each field is far longer than its cap.
    let control = "\u{1}".repeat(16 * 1024);
    let quote = "\"".repeat(16 * 1024);
    let word = |b: &str| b.repeat(8 * 1024);
    let lines = [
        format!("{} {} HTTP/{}", word("\u{1}"), word("\u{1}"), word("\u{1}")),
        format!("{} {}", word("\u{1}"), word("\u{1}")),
        word("\u{1}"),
        format!("{} {} HTTP/1.1", word("\u{1}"), word("\u{1}")),
    ];
    for format in [LogFormat::Combined, LogFormat::Common, LogFormat::Json] {
        for request_line in &lines {
            for header in [&control, &quote] {
                let line = format_as(
                    format,
                    &Entry {
                        client: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
                        time: "06/Nov/1994:08:49:37 +0000",
                        request_line: request_line.as_bytes(),
                        status: 599,
                        bytes: u64::MAX,
                        duration: Duration::MAX,
                        referer: Some(header),
                        user_agent: Some(header),
                    },
                );
                assert!(line.len() <= PIPE_BUF, "{format:?}: {}", line.len());
                assert!(line.contains("..."), "{format:?}: capped");
            }
        }
    }
    // No escape is cut in two.
    let line = format_as(
        LogFormat::Combined,
        &Entry {
            request_line: &[0xff; 4096],
            referer: Some(&quote),
            ..entry(200)
        },
    );
    assert!(line.contains("\\xFF...\""), "{line}");
    assert!(line.contains("\\x22...\""), "{line}");
    let (line, _) = json(&Entry {
        request_line: format!("GET {} HTTP/1.1", word("\u{1}")).as_bytes(),
        ..entry(200)
    });
    assert!(line.contains("\\u0001...\""), "{line}");
}
