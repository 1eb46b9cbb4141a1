//! Behaviour that needs a fault injected, run only with `--features fault-injection` (see
//! Cargo.toml; `.ci/run` runs it): a panicking request costs one request, not a worker; and
//! with openat2 made "unavailable", the component walk keeps the rename races and symlinks
//! out as well as the kernel does.

mod common;
mod race;

use std::io::{BufReader, Write};
use std::time::Duration;

use common::{site, Reply, Server};

#[test]
fn a_panicking_request_costs_one_request_not_a_worker() {
    let root = site();
    let server = Server::start_with_env(
        root.path(),
        &["-w", "2"],
        &[("HTTPD_DEBUG_PANIC_PATH", "/boom")],
    );
    // Five times as many panics as workers: if a panic cost a worker, nothing would be left.
    for _ in 0..10 {
        let reply = server.get("/boom");
        assert_eq!(reply.status, 500);
        assert_eq!(reply.header("Connection"), Some("close"));
    }
    // Both workers still serve: two downloads in flight at once, then more requests.
    let mut a = server.connect();
    let mut b = server.connect();
    for stream in [&mut a, &mut b] {
        stream
            .write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    for stream in [&mut a, &mut b] {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        assert_eq!(Reply::read(&mut reader, false).unwrap().status, 200);
    }
    for _ in 0..20 {
        assert_eq!(server.get("/style.css").status, 200);
    }
}

/// Starts the server with openat2 disabled, so every lookup goes by the component walk.
fn walk_server(root: &std::path::Path) -> Server {
    Server::start_with_env(root, &[], &[("HTTPD_FAULT_NO_OPENAT2", "1")])
}

#[test]
fn the_component_walk_survives_both_swap_races() {
    let (root, _outside) = race::fixture();
    let server = walk_server(root.path());
    let race = Duration::from_secs(2);
    race::run(
        &server,
        &root.path().join("racedir"),
        &root.path().join("racedir_link"),
        "/racedir/secret.txt",
        2,
        race,
    )
    .check("walk, directory swap");
    race::run(
        &server,
        &root.path().join("racefile.txt"),
        &root.path().join("racefile_link"),
        "/racefile.txt",
        2,
        race,
    )
    .check("walk, file swap");
}

#[test]
fn the_component_walk_follows_inside_symlinks_only() {
    let (root, _outside) = race::fixture();
    let r = root.path();
    root.write("docs/index.html", "docs");
    std::os::unix::fs::symlink("docs", r.join("docs-link")).unwrap();
    std::os::unix::fs::symlink("racedir/../racefile.txt", r.join("round-trip")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc", r.join("etc-link")).unwrap();
    let server = walk_server(r);
    assert_eq!(server.get("/docs-link/").text(), "docs");
    assert_eq!(server.get("/round-trip").text(), "INSIDE");
    assert_eq!(server.get("/racedir/secret.txt").text(), "INSIDE");
    for path in [
        "/racedir_link/secret.txt",
        "/racefile_link",
        "/etc-link/passwd",
    ] {
        assert_eq!(server.get(path).status, 404, "{path}");
    }
}
