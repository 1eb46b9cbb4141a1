//! The status page (`--status PATH`): who may see it (loopback, or `--status-allow`), and the
//! counters of [`crate::metrics`] rendered for a person (HTML) or for Prometheus (OpenMetrics
//! text, `scoreboard/openmetrics.rs`). Pure: it reads a snapshot, never a socket.
//! May use: metrics, filecache, request, response, error, listing (its HTML escaping),
//! prometheus-client.

mod openmetrics;

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::HttpError;
use crate::filecache::FileCache;
use crate::listing;
use crate::metrics::{Metrics, Snapshot, State};
use crate::request::Request;
use crate::response::{Body, Response};

/// `--status PATH` with its allow list, and the counters it shows.
#[derive(Clone)]
pub struct StatusPage {
    /// The URL path it answers, compared verbatim with the request's path.
    pub path: String,
    /// Networks beyond loopback that may see it (`--status-allow`).
    pub allow: Vec<Cidr>,
    pub metrics: Arc<Metrics>,
}

impl fmt::Debug for StatusPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusPage")
            .field("path", &self.path)
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let bad = || {
            format!("--status-allow '{text}': expected an address block such as 10.0.0.0/8 or ::1")
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let written: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let net = canonical(written);
        // An IPv4-mapped block (`::ffff:10.0.0.0/104`) counts its prefix in IPv6 bits: it
        // is the IPv4 block of 96 bits fewer, and cannot reach past the mapped range.
        let (max, skip) = match (written, net) {
            (IpAddr::V6(_), IpAddr::V4(_)) => (128, 96),
            (_, IpAddr::V4(_)) => (32, 0),
            (_, IpAddr::V6(_)) => (128, 0),
        };
        let prefix = match prefix.map(str::trim) {
            Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse::<u8>(),
            Some(_) => return Err(bad()),
            None => Ok(max),
        }
        .map_err(|_| bad())?;
        if prefix > max || prefix < skip {
            return Err(bad());
        }
        let prefix = prefix - skip;
        Ok(Cidr { net, prefix })
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address counts as its IPv4 one) is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(u128::from(net), u128::from(ip), self.prefix)
            }
            _ => false,
        }
    }
}

fn same_prefix(a: u128, b: u128, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    a & mask == b & mask
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack listener sees IPv4
/// clients) as its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `--status-allow CIDR[,CIDR...]`.
pub fn parse_allow(list: &str) -> Result<Vec<Cidr>, String> {
    list.split(',').map(Cidr::parse).collect()
}

/// `--status PATH` (an absolute URL path, compared verbatim with request paths, as
/// `--health`'s) and `--status-allow`: the status page, with counters for `workers` workers.
pub fn from_flags(
    path: Option<String>,
    allow: Option<String>,
    workers: usize,
) -> Result<Option<StatusPage>, String> {
    let allow = allow.map(|list| parse_allow(&list)).transpose()?;
    let Some(path) = path else {
        return match allow {
            Some(_) => Err("--status-allow needs --status".into()),
            None => Ok(None),
        };
    };
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) || path.contains('?') {
        return Err(format!(
            "--status '{path}': expected a URL path such as /server-status"
        ));
    }
    Ok(Some(StatusPage {
        path,
        allow: allow.unwrap_or_default(),
        metrics: Arc::new(Metrics::new(workers)),
    }))
}

/// Loopback: 127.0.0.0/8, ::1, and ::ffff:127.x.y.z.
pub fn is_loopback(ip: IpAddr) -> bool {
    canonical(ip).is_loopback()
}

impl StatusPage {
    /// Whether a client at `client` may see the page (`None`: not known, so no).
    pub fn allows(&self, client: Option<IpAddr>) -> bool {
        client.is_some_and(|ip| is_loopback(ip) || self.allow.iter().any(|net| net.contains(ip)))
    }

    /// The page for a GET or HEAD of its path: HTML, or OpenMetrics text for
    /// `?format=prometheus` (or `format=openmetrics`) or an `Accept` naming
    /// `application/openmetrics-text` or `text/plain; version=0.0.4` ([`openmetrics::wanted`]).
    /// A client it does not allow gets 404, as if nothing were there.
    pub fn respond(
        &self,
        request: &Request,
        query: Option<&str>,
        client: Option<IpAddr>,
        cache: Option<&FileCache>,
    ) -> Result<Response, HttpError> {
        if !self.allows(client) {
            return Err(HttpError::NotFound);
        }
        let snap = self.metrics.snapshot();
        let lookups = cache.map(FileCache::lookups);
        let (body, content_type) = if openmetrics::wanted(query, request.fields.accept.as_deref()) {
            (
                openmetrics::render(&snap, lookups),
                openmetrics::CONTENT_TYPE,
            )
        } else {
            (html(&snap, lookups), "text/html; charset=utf-8")
        };
        let mut response = Response::new(200, Body::Bytes(body.into_bytes()));
        response.content_type = Some(content_type.into());
        // Live numbers: never from a cache.
        response.extra.push(("Cache-Control", "no-store".into()));
        response.extra.push(("Vary", "Accept".into()));
        Ok(response)
    }
}

/// A request's text for the page: HTML-escaped (paths come from clients), control
/// characters shown as U+FFFD.
fn escape(text: &str) -> String {
    listing::escape_html(&text.replace(char::is_control, "\u{fffd}"))
}

/// A duration as a person reads it: `3d 4h`, `2h 5m`, `1m 3s`, `4.2 s`, `350 ms`, `80 µs`.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 86_400 {
        format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600)
    } else if secs >= 3600 {
        format!("{}h {}m", secs / 3600, secs % 3600 / 60)
    } else if secs >= 60 {
        format!("{}m {}s", secs / 60, secs % 60)
    } else if secs >= 1 {
        format!("{:.1} s", d.as_secs_f64())
    } else if d.as_millis() >= 1 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} µs", d.as_micros())
    }
}

fn or_dash(value: Option<impl fmt::Display>) -> String {
    value.map_or_else(|| "–".into(), |v| v.to_string())
}

/// The page a person reads at a glance.
fn html(snap: &Snapshot, lookups: Option<(u64, u64)>) -> String {
    let mut page = String::with_capacity(4096);
    let [idle, reading, writing] = snap.worker_states();
    let requests: u64 = snap.classes.iter().sum();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>httpd status</title>\
         <style>body{{font-family:sans-serif;margin:1em 2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}\
         td.n{{text-align:right;font-variant-numeric:tabular-nums}}</style></head><body>\n\
         <h1>httpd status</h1>\n<p>Up <b id=\"uptime\">{}</b> ({} s). \
         Workers: {} idle, {} reading, {} writing.</p>\n",
        human(snap.uptime),
        snap.uptime.as_secs(),
        idle,
        reading,
        writing,
    );
    page.push_str("<h2>Connections</h2>\n<table>\n");
    let rows: [(&str, &str, String); 8] = [
        ("open", "open now, wherever they are", or_dash(snap.open)),
        (
            "queued",
            "ready for a worker, not yet taken",
            or_dash(snap.queued),
        ),
        (
            "parked_read",
            "parked, waiting for a request",
            snap.parked_read.to_string(),
        ),
        (
            "parked_write",
            "parked, waiting for the client to take a reply",
            snap.parked_write.to_string(),
        ),
        (
            "accepted",
            "accepted since start",
            snap.accepted.to_string(),
        ),
        (
            "refused",
            "refused with 503 (no room)",
            snap.refused.to_string(),
        ),
        (
            "evicted",
            "idle ones closed to make room",
            snap.evicted.to_string(),
        ),
        ("sent", "bytes sent, heads included", snap.sent.to_string()),
    ];
    for (id, what, value) in rows {
        let _ = writeln!(
            page,
            "<tr><th>{what}</th><td class=\"n\" id=\"{id}\">{value}</td></tr>"
        );
    }
    page.push_str("</table>\n<h2>Requests</h2>\n<table>\n");
    for (i, count) in snap.classes.iter().enumerate() {
        let _ = writeln!(
            page,
            "<tr><th>{}xx</th><td class=\"n\" id=\"status-{}xx\">{count}</td></tr>",
            i + 1,
            i + 1
        );
    }
    let mean = match requests {
        0 => "–".into(),
        n => human(snap.duration / u32::try_from(n).unwrap_or(u32::MAX)),
    };
    let _ = writeln!(
        page,
        "<tr><th>all</th><td class=\"n\" id=\"requests\">{requests}</td></tr>\n\
         <tr><th>mean time</th><td class=\"n\">{mean}</td></tr>\n</table>"
    );
    page.push_str("<h2>File cache</h2>\n");
    match lookups {
        Some((hits, misses)) => {
            let _ = writeln!(
                page,
                "<table><tr><th>hits</th><td class=\"n\" id=\"cache-hits\">{hits}</td></tr>\
                 <tr><th>misses</th><td class=\"n\" id=\"cache-misses\">{misses}</td></tr></table>"
            );
        }
        None => page.push_str("<p>off</p>\n"),
    }
    page.push_str(
        "<h2>Workers</h2>\n<table>\n<tr><th>#</th><th>state</th><th>for</th>\
         <th>request (now, or last)</th></tr>\n",
    );
    for worker in &snap.workers {
        let _ = writeln!(
            page,
            "<tr><td class=\"n\">{}</td><td class=\"state\">{}</td><td class=\"n\">{}</td>\
             <td><code>{}</code></td></tr>",
            worker.slot,
            worker.state.name(),
            human(worker.for_),
            escape(&worker.request),
        );
    }
    page.push_str("</table>\n<p>The same as Prometheus metrics: <a href=\"?format=prometheus\">?format=prometheus</a></p>\n</body></html>\n");
    page
}

/// Kept for the renderers: the states in the order of [`Snapshot::worker_states`].
const STATES: [State; 3] = [State::Idle, State::Reading, State::Writing];

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn loopback_in_every_form() {
        for yes in ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip(yes)), "{yes}");
        }
        for no in [
            "10.0.0.1",
            "128.0.0.1",
            "::2",
            "::ffff:10.0.0.1",
            "::",
            "0.0.0.0",
        ] {
            assert!(!is_loopback(ip(no)), "{no}");
        }
    }

    #[test]
    fn allow_lists_parse_and_match() {
        let allow = parse_allow("10.0.0.0/8, 192.168.1.5,2001:db8::/32").unwrap();
        let page = StatusPage {
            path: "/s".into(),
            allow,
            metrics: Arc::new(Metrics::new(1)),
        };
        for yes in [
            "10.1.2.3",
            "::ffff:10.9.9.9",
            "192.168.1.5",
            "2001:db8::7",
            "127.0.0.1",
            "::1",
        ] {
            assert!(page.allows(Some(ip(yes))), "{yes}");
        }
        for no in [
            "11.0.0.1",
            "192.168.1.6",
            "2001:db9::1",
            "::ffff:192.168.1.6",
        ] {
            assert!(!page.allows(Some(ip(no))), "{no}");
        }
        assert!(!page.allows(None));
        let all = parse_allow("0.0.0.0/0,::/0").unwrap();
        assert!(all[0].contains(IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8))));
        assert!(all[1].contains(IpAddr::V6(Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 1))));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "example.com",
            "10.0.0.0/x",
            "10.0.0.0/8,",
        ] {
            let err = parse_allow(bad).unwrap_err();
            assert!(err.contains("--status-allow"), "{bad}: {err}");
        }
    }

    #[test]
    fn ipv4_mapped_blocks_count_their_prefix_in_ipv6_bits() {
        let block = |text: &str| Cidr::parse(text).unwrap_or_else(|err| panic!("{text}: {err}"));
        assert!(block("::ffff:192.0.2.7/128").contains(ip("::ffff:192.0.2.7")));
        assert!(!block("::ffff:192.0.2.7/128").contains(ip("192.0.2.8")));
        assert!(block("::ffff:10.0.0.0/104").contains(ip("10.200.0.1")));
        assert!(!block("::ffff:0.0.0.0/96").contains(ip("2001:db8::1")));
        // Fewer than 96 bits would reach past the mapped range; a sign is not a digit.
        for bad in ["::ffff:10.0.0.0/8", "10.0.0.0/+8", "10.0.0.0/8 8"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_flags_make_a_page_or_say_what_is_wrong() {
        assert!(from_flags(None, None, 2).unwrap().is_none());
        let page = from_flags(Some("/s".into()), Some("10.0.0.0/8,::1".into()), 2)
            .unwrap()
            .unwrap();
        assert_eq!((page.path.as_str(), page.allow.len()), ("/s", 2));
        let config = crate::Config::from_command_line(&["-r", ".", "--status", "/server-status"]);
        assert_eq!(config.unwrap().site.status.unwrap().path, "/server-status");
        for (path, allow, said) in [
            (None, Some("10.0.0.0/8"), "--status-allow needs --status"),
            (
                Some("status"),
                None,
                "--status 'status': expected a URL path",
            ),
            (Some("/a b"), None, "--status '/a b'"),
            (Some("/s?x"), None, "--status '/s?x'"),
            (
                Some("/s"),
                Some("10.0.0.0/33"),
                "--status-allow '10.0.0.0/33'",
            ),
        ] {
            let err = from_flags(path.map(String::from), allow.map(String::from), 1).unwrap_err();
            assert!(err.contains(said), "{path:?} {allow:?}: {err}");
        }
    }

    #[test]
    fn the_page_escapes_what_clients_sent() {
        let metrics = Arc::new(Metrics::new(1));
        let board = metrics.worker_board().unwrap();
        board.request(&[b"GET /<script>&\"'"]);
        let page = html(&metrics.snapshot(), Some((3, 4)));
        assert!(
            page.contains("GET /&lt;script&gt;&amp;&quot;&#39;"),
            "{page}"
        );
        assert!(!page.contains("<script>"));
        assert!(page.contains("id=\"cache-hits\">3<"));
        assert_eq!(STATES.len(), 3);
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human(Duration::from_micros(80)), "80 µs");
        assert_eq!(human(Duration::from_millis(350)), "350 ms");
        assert_eq!(human(Duration::from_millis(4200)), "4.2 s");
        assert_eq!(human(Duration::from_secs(63)), "1m 3s");
        assert_eq!(human(Duration::from_secs(7500)), "2h 5m");
        assert_eq!(human(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d 4h");
    }
}
