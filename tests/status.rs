//! The status page (`--status`) over real sockets: the HTML page's fields and counts move
//! with traffic, the Prometheus (OpenMetrics) exposition parses line by line, only loopback
//! (or `--status-allow`) clients see it, and without the flag the path is an ordinary file.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use common::{read_to_close, site, Reply, Server};

const PATH: &str = "/server-status";

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.header(name)
}

/// The number in `<td ... id="ID">N</td>`.
fn cell(page: &str, id: &str) -> u64 {
    let marker = format!("id=\"{id}\">");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {id} in {page}"));
    let rest = &page[at + marker.len()..];
    let end = rest.find('<').expect("cell end");
    rest[..end]
        .parse()
        .unwrap_or_else(|_| panic!("{id}: {:?} is not a count", &rest[..end]))
}

#[test]
fn the_page_shows_live_counts() {
    let root = site();
    let server = Server::start(root.path(), &["--status", PATH, "-w", "2"]);
    for _ in 0..5 {
        assert_eq!(server.get("/index.html").status, 200);
    }
    assert_eq!(server.get("/no-such-file").status, 404);
    // Raw markup in a target must never reach the page unescaped.
    let _ = server.exchange(b"GET /<script>x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");

    let reply = server.get(PATH);
    assert_eq!(reply.status, 200);
    assert_eq!(
        header(&reply, "Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&reply, "Cache-Control"), Some("no-store"));
    let page = String::from_utf8(reply.body).expect("UTF-8 page");
    assert!(cell(&page, "status-2xx") >= 5, "{page}");
    assert!(cell(&page, "status-4xx") >= 2, "{page}");
    assert!(cell(&page, "accepted") >= 8, "{page}");
    assert!(cell(&page, "sent") > 0, "{page}");
    assert_eq!(cell(&page, "refused"), 0);
    assert!(cell(&page, "open") >= 1, "this very connection is open");
    for field in ["uptime", "queued", "parked_read", "parked_write", "evicted"] {
        assert!(page.contains(&format!("id=\"{field}\"")), "{field}: {page}");
    }
    assert!(cell(&page, "cache-hits") >= 4, "{page}");
    // Two workers, one of them answering this very request.
    assert_eq!(page.matches("<td class=\"state\">").count(), 2, "{page}");
    assert!(page.contains("<td class=\"state\">writing</td>"), "{page}");
    assert!(page.contains(&format!("<code>GET {PATH}</code>")), "{page}");
    assert!(!page.contains("<script>"), "{page}");

    // The counts move.
    for _ in 0..3 {
        assert_eq!(server.get("/style.css").status, 200);
    }
    let again = String::from_utf8(server.get(PATH).body).expect("UTF-8 page");
    assert!(cell(&again, "status-2xx") >= cell(&page, "status-2xx") + 4);

    // GET and HEAD only.
    let head = server.request("HEAD", PATH);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(server.request("POST", PATH).status, 405);
}

/// One sample line: `name{labels} value` or `name value`.
fn sample(line: &str) -> (&str, &str, f64) {
    let (series, value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("no value: {line:?}"));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value: {line:?}")),
    };
    let (name, labels) = match series.split_once('{') {
        Some((name, labels)) => {
            let labels = labels
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
            for pair in labels.split(',') {
                let (key, quoted) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("bad label: {line:?}"));
                assert!(
                    key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line:?}"
                );
                assert!(
                    quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'),
                    "{line:?}"
                );
            }
            (name, labels)
        }
        None => (series, ""),
    };
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad name: {line:?}"
    );
    (name, labels, value)
}

/// Checks the exposition line by line and returns its samples.
fn parse_exposition(text: &str) -> Vec<(String, String, f64)> {
    let mut helped = BTreeSet::new();
    let mut typed = BTreeSet::new();
    let mut samples = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "OpenMetrics ends with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap_or_default().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            let name = words.next().unwrap_or_default();
            let kind = words.next().unwrap_or_default();
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "{line:?}"
            );
            typed.insert(name.to_owned());
        } else {
            assert!(!line.starts_with('#'), "unknown comment {line:?}");
            let (name, labels, value) = sample(line);
            assert!(
                name.starts_with("httpd_") || name == "process_start_time_seconds",
                "{line:?}"
            );
            // Every sample belongs to a family with HELP and TYPE (a counter's samples end
            // in _total, a histogram's in _bucket, _sum, _count).
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|f| typed.contains(*f)))
                .unwrap_or(name);
            assert!(typed.contains(family), "no TYPE for {line:?}");
            assert!(helped.contains(family), "no HELP for {line:?}");
            samples.push((name.to_owned(), labels.to_owned(), value));
        }
    }
    samples
}

fn value(samples: &[(String, String, f64)], name: &str, labels: &str) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l == labels)
        .unwrap_or_else(|| panic!("no {name}{{{labels}}} in {samples:?}"))
        .2
}

#[test]
fn the_prometheus_exposition_parses() {
    let root = site();
    let server = Server::start(root.path(), &["--status", PATH, "-w", "2"]);
    for _ in 0..5 {
        assert_eq!(server.get("/index.html").status, 200);
    }
    assert_eq!(server.get("/missing").status, 404);

    let by_query = server.get(&format!("{PATH}?format=prometheus"));
    let by_accept = server.ask("GET", PATH, &[("Accept", "text/plain; version=0.0.4")]);
    for reply in [&by_query, &by_accept] {
        assert_eq!(reply.status, 200);
        assert_eq!(
            header(reply, "Content-Type"),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
        );
        assert_eq!(header(reply, "Cache-Control"), Some("no-store"));
    }
    let text = String::from_utf8(by_query.body.clone()).expect("UTF-8");
    let samples = parse_exposition(&text);
    assert!(value(&samples, "httpd_requests_total", "code=\"2xx\"") >= 5.0);
    assert!(value(&samples, "httpd_requests_total", "code=\"4xx\"") >= 1.0);
    assert!(value(&samples, "httpd_accepted_total", "") >= 7.0);
    assert!(value(&samples, "httpd_sent_bytes_total", "") > 0.0);
    assert!(value(&samples, "httpd_file_cache_hits_total", "") >= 1.0);
    assert!(value(&samples, "httpd_file_cache_misses_total", "") >= 1.0);
    assert!(value(&samples, "httpd_connections", "state=\"open\"") >= 1.0);
    assert!(value(&samples, "httpd_workers", "state=\"writing\"") >= 1.0);
    assert_eq!(value(&samples, "httpd_refused_total", ""), 0.0);
    assert!(value(&samples, "process_start_time_seconds", "") > 1.0e9);
    let count = value(&samples, "httpd_request_duration_seconds_count", "");
    assert!(count >= 6.0);
    assert_eq!(
        value(
            &samples,
            "httpd_request_duration_seconds_bucket",
            "le=\"+Inf\""
        ),
        count
    );
    // Buckets are cumulative.
    let buckets: Vec<f64> = samples
        .iter()
        .filter(|(n, _, _)| n == "httpd_request_duration_seconds_bucket")
        .map(|(_, _, v)| *v)
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
}

#[test]
fn without_the_flag_the_path_is_an_ordinary_file() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    assert_eq!(server.get(PATH).status, 404);
    root.write("server-status", "a file");
    let reply = server.get(PATH);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"a file");
}

#[test]
fn ipv6_loopback_clients_see_it() {
    let root = site();
    let server = Server::start(root.path(), &["-a", "::1", "--status", PATH]);
    assert!(server.addr.is_ipv6());
    assert_eq!(server.get(PATH).status, 200);
}

/// This machine's own address on its default route, if it has one that is not loopback
/// (connecting to it from here goes over loopback, but the peer address is not loopback).
fn own_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn status_from(server: &Server, ip: IpAddr) -> u16 {
    let mut stream = common::connect(SocketAddr::new(ip, server.addr.port()));
    stream
        .write_all(
            format!("GET {PATH} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("write");
    let bytes = read_to_close(&mut stream);
    let mut reader = &bytes[..];
    Reply::read(&mut reader, false).expect("a reply").status
}

#[test]
fn other_clients_get_404_unless_allowed() {
    let Some(ip) = own_address() else {
        println!("skipped: this machine has no non-loopback address to connect from");
        return;
    };
    let root = site();
    let closed = Server::start(root.path(), &["-a", "0.0.0.0", "--status", PATH]);
    assert_eq!(status_from(&closed, ip), 404, "{ip} is not loopback");
    assert_eq!(closed.get(PATH).status, 200, "loopback still sees it");
    let allow = format!("{ip}/32");
    let open = Server::start(
        root.path(),
        &["-a", "0.0.0.0", "--status", PATH, "--status-allow", &allow],
    );
    assert_eq!(status_from(&open, ip), 200, "--status-allow {allow}");
}

/// promtool's parser reads the exposition (it reads the older text format, so it lints the
/// OpenMetrics counters, whose HELP and TYPE name the family without `_total`, as having no
/// help text: that and nothing else is allowed).
#[test]
fn promtool_parses_the_exposition() {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        println!("skipped: promtool not installed (apt-get install prometheus)");
        return;
    };
    let root = site();
    let server = Server::start(root.path(), &["--status", PATH]);
    assert_eq!(server.get("/index.html").status, 200);
    let text = server.get(&format!("{PATH}?format=prometheus")).body;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&text).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!said.contains("error"), "{said}");
    for line in said.lines() {
        assert!(
            line.starts_with("httpd_") && line.ends_with("_total no help text"),
            "promtool: {line}"
        );
    }
}
