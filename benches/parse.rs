//! Request parsing, path decoding and response-head encoding: the per-request CPU work that
//! is ours rather than the kernel's. `cargo bench` runs them.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use httpd::internals::request::{self, Parsed};
use httpd::internals::response::{Body, Date, Modified, Response};
use httpd::internals::url;

/// ApacheBench 2.3's exact requests, without and with `-k`.
const AB: &[u8] =
    b"GET /index.html HTTP/1.0\r\nHost: 127.0.0.1:8080\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n";
const AB_KEEPALIVE: &[u8] = b"GET /index.html HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: 127.0.0.1:8080\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n";
/// What a current desktop browser sends for a stylesheet on a revisit.
const BROWSER: &[u8] = b"GET /assets/css/site.min.css?v=2024.11.3 HTTP/1.1\r\n\
Host: www.example.test\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0\r\n\
Accept: text/css,*/*;q=0.1\r\n\
Accept-Language: en-GB,en;q=0.8,de;q=0.5,fr;q=0.3\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.test/blog/2024/11/a-rather-long-article-title-for-realism/\r\n\
Connection: keep-alive\r\n\
Cookie: session=4f1c2a9b8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5; theme=dark; consent=necessary,analytics\r\n\
Sec-Fetch-Dest: style\r\n\
Sec-Fetch-Mode: no-cors\r\n\
Sec-Fetch-Site: same-origin\r\n\
If-Modified-Since: Tue, 12 Nov 2024 09:14:07 GMT\r\n\
If-None-Match: \"18ea4edbe9b81a7c-1f3a\"\r\n\
Priority: u=2\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\r\n";

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (name, input) in [
        ("ab", AB),
        ("ab-keepalive", AB_KEEPALIVE),
        ("browser", BROWSER),
    ] {
        assert!(matches!(request::parse(input), Ok(Parsed::Complete(..))));
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(name, |b| b.iter(|| request::parse(black_box(input))));
    }
    group.finish();
}

fn decode_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_path");
    for (name, path) in [
        ("plain", "/index.html"),
        ("nested", "/assets/css/site.min.css"),
        ("encoded", "/docs/%E2%9C%93%20caf%C3%A9%20menu.html"),
    ] {
        group.throughput(Throughput::Bytes(path.len() as u64));
        group.bench_function(name, |b| b.iter(|| url::decode_path(black_box(path))));
    }
    group.finish();
}

fn encode_head(c: &mut Criterion) {
    let mut response = Response::new(200, Body::Static(&[b'x'; 1024]));
    response.content_type = Some("text/html".into());
    response.last_modified = Some(Modified::new(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_732_000_000),
    ));
    response.etag = Some("\"18ea4edbe9b81a7c-400\"".into());
    response.accept_ranges = true;
    let Some(date) = Date::parse("Sun, 22 Nov 2026 07:55:53 GMT") else {
        unreachable!("an IMF-fixdate")
    };
    let mut out = Vec::with_capacity(1024);
    response.encode_head(date, true, &mut out);
    let mut group = c.benchmark_group("encode_head");
    group.throughput(Throughput::Bytes(out.len() as u64));
    group.bench_function("file-200", |b| {
        b.iter(|| black_box(&response).encode_head(black_box(date), true, &mut out))
    });
    let not_found = httpd::internals::error::HttpError::NotFound.response();
    group.bench_function("error-404", |b| {
        b.iter(|| black_box(&not_found).encode_head(black_box(date), false, &mut out))
    });
    group.finish();
}

criterion_group!(benches, parse, decode_path, encode_head);
criterion_main!(benches);
