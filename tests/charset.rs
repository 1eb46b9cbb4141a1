//! `--charset` over real sockets: off (the default), every `Content-Type` is exactly what it
//! was without the flag; on, `text/*`, JavaScript and JSON replies name the charset —
//! files from the cache and without it, error pages (built-in and the site's own), the
//! redirect page and the health check — while other types do not, and the generated
//! listings name the charset they are written in, UTF-8.

mod common;

use common::{site, Server};

/// One request: (target, extra request headers, status, Content-Type without the flag,
/// with `--charset iso-8859-1`).
type Row = (
    &'static str,
    &'static [(&'static str, &'static str)],
    u16,
    &'static str,
    &'static str,
);

const TABLE: &[Row] = &[
    ("/", &[], 200, "text/html", "text/html; charset=iso-8859-1"),
    (
        "/index.html",
        &[],
        200,
        "text/html",
        "text/html; charset=iso-8859-1",
    ),
    (
        "/style.css",
        &[],
        200,
        "text/css",
        "text/css; charset=iso-8859-1",
    ),
    (
        "/notes.txt",
        &[],
        200,
        "text/plain",
        "text/plain; charset=iso-8859-1",
    ),
    (
        "/data.json",
        &[],
        200,
        "application/json",
        "application/json; charset=iso-8859-1",
    ),
    // A range keeps the representation's type.
    (
        "/notes.txt",
        &[("Range", "bytes=0-1")],
        206,
        "text/plain",
        "text/plain; charset=iso-8859-1",
    ),
    // A precompressed variant has its file's type.
    (
        "/style.css",
        &[("Accept-Encoding", "gzip")],
        200,
        "text/css",
        "text/css; charset=iso-8859-1",
    ),
    ("/photo.jpg", &[], 200, "image/jpeg", "image/jpeg"),
    ("/image.png", &[], 200, "image/png", "image/png"),
    (
        "/blob.unknownext",
        &[],
        200,
        "application/octet-stream",
        "application/octet-stream",
    ),
    // The site's own 404.html, and built-in pages.
    (
        "/missing",
        &[],
        404,
        "text/html",
        "text/html; charset=iso-8859-1",
    ),
    (
        "/style.css",
        &[("If-Match", "\"nope\"")],
        412,
        "text/html",
        "text/html; charset=iso-8859-1",
    ),
    (
        "/docs",
        &[],
        301,
        "text/html",
        "text/html; charset=iso-8859-1",
    ),
    (
        "/healthz",
        &[],
        200,
        "text/plain",
        "text/plain; charset=iso-8859-1",
    ),
    // Listings are generated in UTF-8: the page always says so, the JSON when a charset is
    // asked for.
    (
        "/empty-dir/",
        &[],
        200,
        "text/html; charset=utf-8",
        "text/html; charset=utf-8",
    ),
    (
        "/empty-dir/?format=json",
        &[],
        200,
        "application/json",
        "application/json; charset=utf-8",
    ),
];

fn check(server: &Server, charset: bool, what: &str) {
    for (target, headers, status, without, with) in TABLE {
        let expected = if charset { with } else { without };
        // Twice: the second is a hit when the cache is on.
        for round in 0..2 {
            let reply = server.ask("GET", target, headers);
            assert_eq!(reply.status, *status, "{what}: {target}: {}", reply.head);
            assert_eq!(
                reply.header("Content-Type"),
                Some(*expected),
                "{what}: {target} {headers:?} (round {round}): {}",
                reply.head
            );
        }
    }
    // A 304 carries no Content-Type either way.
    let etag = server.get("/index.html").header("ETag").map(str::to_owned);
    let etag = etag.expect("an ETag");
    let reply = server.ask("GET", "/index.html", &[("If-None-Match", &etag)]);
    assert_eq!(reply.status, 304, "{what}: {}", reply.head);
    assert_eq!(reply.header("Content-Type"), None, "{what}: {}", reply.head);
}

#[test]
fn content_types_name_the_charset_only_when_asked() {
    let root = site();
    root.write("data.json", "{\"a\": 1}");
    root.write("style.css.gz", "GZ");
    root.write("404.html", "<title>gone</title>");
    for cache in ["64M", "0"] {
        let base = ["--list", "--health", "/healthz", "--file-cache", cache];
        let server = Server::start(root.path(), &base);
        check(&server, false, &format!("--file-cache {cache}"));
        drop(server);
        let mut flags = base.to_vec();
        flags.extend(["--charset", "iso-8859-1"]);
        let server = Server::start(root.path(), &flags);
        check(
            &server,
            true,
            &format!("--file-cache {cache} --charset iso-8859-1"),
        );
    }
}
