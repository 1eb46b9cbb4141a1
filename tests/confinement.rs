//! Confinement to the root over real sockets: rename races that used to serve files from
//! outside (a directory or a file swapped with a symlink leading out), symlinks inside the
//! root, index files, listings and precompressed variants, all resolved beneath the root's
//! descriptor.

mod common;
mod race;

use std::os::unix::fs::symlink;
use std::time::Duration;

use common::{Server, TempDir};

/// How long each race runs.
const RACE: Duration = Duration::from_secs(3);

#[test]
fn a_directory_swapped_with_a_symlink_out_never_serves_the_outside() {
    let (root, _outside) = race::fixture();
    let server = Server::start(root.path(), &[]);
    let tally = race::run(
        &server,
        &root.path().join("racedir"),
        &root.path().join("racedir_link"),
        "/racedir/secret.txt",
        2,
        RACE,
    );
    tally.check("directory swap");
}

#[test]
fn a_file_swapped_with_a_symlink_out_never_serves_the_outside() {
    let (root, _outside) = race::fixture();
    let server = Server::start(root.path(), &[]);
    let tally = race::run(
        &server,
        &root.path().join("racefile.txt"),
        &root.path().join("racefile_link"),
        "/racefile.txt",
        2,
        RACE,
    );
    tally.check("file swap");
}

/// A site with symlinks that stay inside the root and ones that lead out.
fn linked_site() -> (TempDir, TempDir) {
    let root = common::site();
    let outside = TempDir::new("outside");
    outside.write("secret.txt", "OUTSIDE-SECRET");
    outside.write("dir/index.html", "OUTSIDE-INDEX");
    let r = root.path();
    root.write("files/a.txt", "a");
    root.write("files/sub/b.txt", "b");
    root.write("linked-index/placeholder", "");
    for (target, name) in [
        ("../style.css", "files/style-link.css"),
        ("../docs", "files/docs-link"),
        ("../docs/page.html", "linked-index/index.html"),
        ("style.css", "style-link.css"),
        ("docs", "docs-link"),
        ("../../../../../../../../etc", "files/etc-link"),
        ("nowhere", "files/dangling"),
    ] {
        symlink(target, r.join(name)).unwrap();
    }
    symlink(outside.path().join("secret.txt"), r.join("files/out-file")).unwrap();
    symlink(outside.path().join("dir"), r.join("files/out-dir")).unwrap();
    symlink(outside.path(), r.join("out-root")).unwrap();
    (root, outside)
}

#[test]
fn symlinks_inside_the_root_work_and_ones_leading_out_are_404() {
    let (root, _outside) = linked_site();
    let server = Server::start(root.path(), &[]);
    let css = server.get("/style-link.css");
    assert_eq!(
        (css.status, css.text().as_str()),
        (200, "body { color: red }")
    );
    assert_eq!(css.header("Content-Type"), Some("text/css"));
    assert_eq!(server.get("/files/style-link.css").status, 200);
    assert_eq!(
        server.get("/docs-link/page.html").text(),
        "<title>page</title>"
    );
    assert_eq!(server.get("/files/docs-link/page.html").status, 200);
    // The index of a directory reached through a symlink, and an index that is itself a
    // symlink elsewhere in the root.
    assert_eq!(server.get("/docs-link/").text(), "<title>docs</title>");
    assert_eq!(server.get("/linked-index/").text(), "<title>page</title>");
    let moved = server.get("/docs-link");
    assert_eq!(
        (moved.status, moved.header("Location")),
        (301, Some("/docs-link/"))
    );
    for path in [
        "/files/out-file",
        "/files/out-dir/",
        "/files/out-dir/index.html",
        "/out-root/secret.txt",
        "/files/etc-link/passwd",
        "/files/dangling",
    ] {
        let reply = server.get(path);
        assert_eq!(reply.status, 404, "{path}");
        assert!(!reply.text().contains("OUTSIDE"), "{path}");
    }
}

#[test]
fn directories_index_or_404_and_listings_hide_symlinks_out() {
    let (root, _outside) = linked_site();
    let server = Server::start(root.path(), &[]);
    assert_eq!(server.get("/docs/").text(), "<title>docs</title>");
    assert_eq!(server.get("/files/").status, 404);
    assert_eq!(server.get("/empty-dir/").status, 404);
    drop(server);

    let server = Server::start(root.path(), &["--list"]);
    let page = server.get("/files/?format=json");
    assert_eq!(page.status, 200, "{}", page.head);
    let listed: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
    let mut names: Vec<String> = listed
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|entry| entry["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["a.txt", "docs-link", "style-link.css", "sub"],
        "{}",
        page.text()
    );
    let html = server.get("/files/");
    assert!(html.text().contains("style-link.css"));
    assert!(!html.text().contains("out-file") && !html.text().contains("etc-link"));
    // The index still wins over a listing.
    assert_eq!(server.get("/docs/").text(), "<title>docs</title>");
}

#[test]
fn precompressed_variants_are_found_beside_the_name_asked_for() {
    let (root, outside) = linked_site();
    root.write("app.js.gz", "gzip bytes");
    root.write("app.js.br", "brotli bytes");
    outside.write("page.html.gz", "OUTSIDE-GZIP");
    // A variant that leads out does not count.
    symlink(
        outside.path().join("page.html.gz"),
        root.path().join("docs/page.html.gz"),
    )
    .unwrap();
    let server = Server::start(root.path(), &[]);
    let get = |path: &str, accept: &str| {
        let raw = format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {accept}\r\nConnection: close\r\n\r\n"
        );
        let bytes = server.exchange(raw.as_bytes());
        common::Reply::read(&mut std::io::BufReader::new(&bytes[..]), false).unwrap()
    };
    let br = get("/app.js", "gzip, br");
    assert_eq!(br.text(), "brotli bytes");
    assert_eq!(br.header("Content-Encoding"), Some("br"));
    assert_eq!(br.header("Vary"), Some("Accept-Encoding"));
    let gz = get("/app.js", "gzip");
    assert_eq!(
        (gz.text().as_str(), gz.header("Content-Encoding")),
        ("gzip bytes", Some("gzip"))
    );
    let plain = get("/app.js", "identity");
    assert_eq!(plain.text(), "console.log(1)");
    assert_eq!(plain.header("Vary"), Some("Accept-Encoding"));
    let page = get("/docs/page.html", "gzip");
    assert_eq!(page.text(), "<title>page</title>");
    assert_eq!(page.header("Content-Encoding"), None);
    assert_eq!(page.header("Vary"), None);
}
