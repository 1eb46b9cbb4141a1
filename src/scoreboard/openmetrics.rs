//! The counters as Prometheus reads them: OpenMetrics 1.0 text written by the official client
//! crate, `prometheus-client`, from one snapshot per scrape. Its own metric types keep their
//! values behind locks (a histogram's `observe` takes a mutex), so the hot path keeps its
//! atomics (`crate::metrics`) and this only builds the exposition, through a `Collector`.
//! Part of the status page. May use: metrics, prometheus-client.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::STATES;
use crate::metrics::{Snapshot, BUCKETS};

/// What `prometheus-client` writes: OpenMetrics text (counters' samples end in `_total`, the
/// exposition in `# EOF`), which Prometheus and promtool's parser read.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One scrape's numbers, handed to the registry.
#[derive(Debug)]
struct Scrape {
    snap: Snapshot,
    lookups: Option<(u64, u64)>,
}

/// The exposition for `snap` (and the file cache's hits and misses, if it is on).
pub fn render(snap: &Snapshot, lookups: Option<(u64, u64)>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        snap: snap.clone(),
        lookups,
    }));
    let mut out = String::with_capacity(4096);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// A counter, `NAME_total`.
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A gauge without labels.
fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A gauge family over one label.
fn gauges(
    e: &mut DescriptorEncoder,
    (name, help, label): (&str, &str, &str),
    values: &[(&str, i64)],
) -> std::fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for &(value_label, value) in values {
        let metric = ConstGauge::new(value);
        metric.encode(family.encode_family(&[(label, value_label)])?)?;
    }
    Ok(())
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let snap = &self.snap;
        let e = &mut e;
        gauge(
            e,
            "httpd_uptime_seconds",
            "Seconds since the server started.",
            signed(snap.uptime.as_secs()),
        )?;
        let started = ConstGauge::new(snap.started_at.as_secs_f64());
        started.encode(e.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
            None,
            MetricType::Gauge,
        )?)?;
        let states = snap.worker_states();
        let workers: Vec<(&str, i64)> = STATES
            .iter()
            .zip(states)
            .map(|(state, n)| (state.name(), signed(n as u64)))
            .collect();
        gauges(
            e,
            (
                "httpd_workers",
                "Worker threads by what they are doing.",
                "state",
            ),
            &workers,
        )?;
        let open = snap.open.map_or(0, |n| n as u64);
        gauges(
            e,
            (
                "httpd_connections",
                "Client connections: open (wherever they are), parked waiting for a request, parked waiting for the client to take a reply.",
                "state",
            ),
            &[
                ("open", signed(open)),
                ("parked_read", signed(snap.parked_read)),
                ("parked_write", signed(snap.parked_write)),
            ],
        )?;
        gauge(
            e,
            "httpd_queued_connections",
            "Connections ready for a worker and not yet taken.",
            signed(snap.queued.map_or(0, |n| n as u64)),
        )?;
        counter(e, "httpd_accepted", "Connections accepted.", snap.accepted)?;
        counter(
            e,
            "httpd_refused",
            "Connections answered 503 for want of room.",
            snap.refused,
        )?;
        counter(
            e,
            "httpd_evicted",
            "Idle connections closed to make room for a newcomer.",
            snap.evicted,
        )?;
        let mut requests = e.encode_descriptor(
            "httpd_requests",
            "Replies by status class (refusals and errors included).",
            None,
            MetricType::Counter,
        )?;
        for (i, &count) in snap.classes.iter().enumerate() {
            let code = ["1xx", "2xx", "3xx", "4xx", "5xx"][i];
            let metric = ConstCounter::new(count);
            metric.encode(requests.encode_family(&[("code", code)])?)?;
        }
        counter(
            e,
            "httpd_sent_bytes",
            "Bytes written to clients, response heads included.",
            snap.sent,
        )?;
        let mut histogram = e.encode_descriptor(
            "httpd_request_duration_seconds",
            "From a complete request head to the last byte of its reply handed to the kernel.",
            None,
            MetricType::Histogram,
        )?;
        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(snap.buckets)
            .collect();
        let count = snap.buckets.iter().sum();
        histogram.encode_histogram::<NoLabelSet>(
            snap.duration.as_secs_f64(),
            count,
            &buckets,
            None,
        )?;
        if let Some((hits, misses)) = self.lookups {
            counter(
                e,
                "httpd_file_cache_hits",
                "Lookups the file cache answered.",
                hits,
            )?;
            counter(
                e,
                "httpd_file_cache_misses",
                "Lookups the file cache could not answer.",
                misses,
            )?;
        }
        Ok(())
    }
}

/// Whether a request for the status page asks for this exposition: `?format=prometheus` (or
/// `format=openmetrics`) in the query, or an `Accept` with a media range
/// `application/openmetrics-text` or `text/plain; version=0.0.4` (Prometheus's) whose `q` is
/// not 0.
pub fn wanted(query: Option<&str>, accept: Option<&str>) -> bool {
    let asked = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair == "format=prometheus" || pair == "format=openmetrics")
    });
    asked || accept.is_some_and(|accept| accept.split(',').any(names_metrics))
}

/// One media range of an `Accept`, e.g. `text/plain;version=0.0.4;q=0.5`.
fn names_metrics(range: &str) -> bool {
    let mut parts = range.split(';').map(str::trim);
    let kind = parts.next().unwrap_or_default().to_ascii_lowercase();
    let (mut version, mut refused) = (false, false);
    for param in parts {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        let (name, value) = (name.trim(), value.trim().trim_matches('"'));
        if name.eq_ignore_ascii_case("q") {
            refused = value.parse::<f32>().is_ok_and(|q| q <= 0.0);
        } else if name.eq_ignore_ascii_case("version") {
            version = value == "0.0.4";
        }
    }
    !refused && (kind == "application/openmetrics-text" || (kind == "text/plain" && version))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn the_format_follows_the_query_or_accept() {
        assert!(wanted(Some("format=prometheus"), None));
        assert!(wanted(Some("a=1&format=openmetrics"), None));
        assert!(wanted(None, Some("text/plain; version=0.0.4")));
        assert!(wanted(None, Some("Application/OpenMetrics-Text")));
        // What Prometheus sends.
        assert!(wanted(None, Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")));
        for browser in [
            "text/html,application/xhtml+xml,*/*;q=0.8",
            "text/plain",
            // Refused (q=0), or the version on another range.
            "application/openmetrics-text;q=0, text/html",
            "text/plain; version=0.0.4; q=0.0",
            "text/html;version=0.0.4, text/plain",
        ] {
            assert!(!wanted(None, Some(browser)), "{browser}");
        }
        assert!(!wanted(Some("format=json"), Some("text/plain")));
    }

    #[test]
    fn the_exposition_has_every_metric() {
        let metrics = Arc::new(Metrics::new(2));
        let board = metrics.worker_board().unwrap();
        board.replied(200, 1000, Some(Duration::from_micros(300)));
        board.replied(404, 100, Some(Duration::from_secs(30)));
        let text = render(&metrics.snapshot(), Some((7, 2)));
        for line in [
            "# TYPE httpd_requests counter",
            "httpd_requests_total{code=\"2xx\"} 1",
            "httpd_requests_total{code=\"4xx\"} 1",
            "httpd_sent_bytes_total 1100",
            "# TYPE httpd_request_duration_seconds histogram",
            "httpd_request_duration_seconds_bucket{le=\"0.0005\"} 1",
            "httpd_request_duration_seconds_bucket{le=\"+Inf\"} 2",
            "httpd_request_duration_seconds_count 2",
            "httpd_workers{state=\"idle\"} 1",
            "httpd_connections{state=\"parked_write\"} 0",
            "httpd_file_cache_hits_total 7",
            "httpd_file_cache_misses_total 2",
            "httpd_accepted_total 0",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
