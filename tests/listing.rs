//! Listings over real sockets: every sort order the query can ask for, in HTML and JSON, with
//! fallbacks for queries that ask for nothing we know, and an ETag per order.

mod common;

use std::fs::File;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Server, TempDir};

/// A directory whose name, size and date orders all differ: (name, size, seconds since 1970).
fn site() -> TempDir {
    let root = TempDir::new("listing-sort");
    let files: [(&str, usize, u64); 5] = [
        ("b.txt", 300, 1_600_000_000),
        ("a.txt", 300, 1_700_000_000),
        ("c.bin", 5000, 1_500_000_000),
        ("d.txt", 1, 1_650_000_000),
        ("e.txt", 2048, 1_750_000_000),
    ];
    for (name, size, secs) in files {
        let path = root.write(&format!("d/{name}"), vec![b'x'; size]);
        set_mtime(&path, secs);
    }
    for (dir, secs) in [("d/zdir", 1_400_000_000), ("d/adir", 1_800_000_000)] {
        root.write(&format!("{dir}/inner.txt"), "i");
        set_mtime(&root.path().join(dir), secs);
    }
    root
}

fn set_mtime(path: &std::path::Path, secs: u64) {
    File::open(path)
        .expect("open")
        .set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .expect("set mtime");
}

/// The entries of an HTML listing, in page order (from their links: not the parent's, not
/// the column headers').
fn html_names(page: &str) -> Vec<String> {
    page.split("<td class=\"n\"><a href=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').expect("closing quote")].to_string())
        .filter(|href| href != "../")
        .collect()
}

fn json_names(body: &[u8]) -> Vec<String> {
    let entries: serde_json::Value = serde_json::from_slice(body).expect("JSON");
    entries
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["href"].as_str().expect("href").to_string())
        .collect()
}

#[test]
fn listings_sort_by_each_column_both_ways() {
    let root = site();
    let server = Server::start(root.path(), &["--list"]);
    let by_name = [
        "adir/", "zdir/", "a.txt", "b.txt", "c.bin", "d.txt", "e.txt",
    ];
    let table: [(&str, [&str; 7]); 7] = [
        ("", by_name),
        ("?sort=name&order=asc", by_name),
        (
            "?sort=name&order=desc",
            [
                "zdir/", "adir/", "e.txt", "d.txt", "c.bin", "b.txt", "a.txt",
            ],
        ),
        // Ties (a.txt and b.txt are both 300 bytes) go by name, whatever the direction.
        (
            "?sort=size",
            [
                "adir/", "zdir/", "d.txt", "a.txt", "b.txt", "e.txt", "c.bin",
            ],
        ),
        (
            "?sort=size&order=desc",
            [
                "adir/", "zdir/", "c.bin", "e.txt", "a.txt", "b.txt", "d.txt",
            ],
        ),
        (
            "?sort=date&order=asc",
            [
                "zdir/", "adir/", "c.bin", "b.txt", "d.txt", "a.txt", "e.txt",
            ],
        ),
        (
            "?order=desc&sort=date",
            [
                "adir/", "zdir/", "e.txt", "a.txt", "d.txt", "b.txt", "c.bin",
            ],
        ),
    ];
    let mut tags = Vec::new();
    for (query, expected) in table {
        let page = server.get(&format!("/d/{query}"));
        assert_eq!(page.status, 200, "{query}");
        assert_eq!(html_names(&page.text()), expected, "{query}");
        let json_query = if query.is_empty() {
            "?format=json".to_string()
        } else {
            format!("{query}&format=json")
        };
        let json = server.get(&format!("/d/{json_query}"));
        assert_eq!(json.header("Content-Type"), Some("application/json"));
        assert_eq!(json_names(&json.body), expected, "{json_query}");
        // The same order by `Accept`, too.
        let accept = [("Accept", "application/json")];
        let json = server.ask("GET", &format!("/d/{query}"), &accept);
        assert_eq!(json_names(&json.body), expected, "{query} by Accept");
        tags.push(page.header("ETag").expect("ETag").to_string());
    }
    // The default and its explicit spelling are one page; every other order has its own tag.
    assert_eq!(tags[0], tags[1]);
    for (i, a) in tags.iter().enumerate().skip(1) {
        for b in &tags[i + 1..] {
            assert_ne!(a, b, "{tags:?}");
        }
    }
    // Where the entries come out the same in every order, the pages still differ (their
    // header links do), and so do their tags.
    let one = server.get("/d/adir/");
    let one_by_size = server.get("/d/adir/?sort=size");
    assert_eq!(html_names(&one.text()), html_names(&one_by_size.text()));
    assert_ne!(one.body, one_by_size.body);
    assert_ne!(one.header("ETag"), one_by_size.header("ETag"));
    // A tag from one order does not revalidate another.
    let size_tag = &tags[3];
    let reply = server.ask("GET", "/d/?sort=size", &[("If-None-Match", size_tag)]);
    assert_eq!(reply.status, 304);
    let reply = server.ask("GET", "/d/", &[("If-None-Match", size_tag)]);
    assert_eq!(reply.status, 200);
}

/// A query the listing does not understand is the default order, never an error.
#[test]
fn unknown_sort_queries_fall_back_to_names() {
    let root = site();
    let server = Server::start(root.path(), &["--list"]);
    let default = server.get("/d/");
    let tag = default.header("ETag").expect("ETag");
    for query in [
        "?sort=bogus",
        "?order=sideways",
        "?sort=",
        "?sort=%73ize",
        "?sort=size;order=desc",
        "?C=S;O=D",
        "?sort=size&sort=nope&order=up&sort=name",
        "?&&=&",
        "?",
    ] {
        let page = server.get(&format!("/d/{query}"));
        assert_eq!(page.status, 200, "{query}");
        assert_eq!(page.body, default.body, "{query}");
        assert_eq!(page.header("ETag"), Some(tag), "{query}");
    }
}

/// The page's column headers link to the orders they name, and each link gives that order.
#[test]
fn header_links_lead_to_their_order() {
    let root = site();
    let server = Server::start(root.path(), &["--list"]);
    let page = server.get("/d/?sort=size&order=desc").text();
    let links: Vec<String> = page
        .split("<th ")
        .skip(1)
        .map(|th| {
            let rest = &th[th.find("href=\"").expect("a header link") + 6..];
            rest[..rest.find('"').expect("closing quote")].replace("&amp;", "&")
        })
        .collect();
    assert_eq!(
        links,
        [
            "?sort=name&order=asc",
            "?sort=size&order=asc",
            "?sort=date&order=asc"
        ]
    );
    let ascending = server.get(&format!("/d/{}", links[1])).text();
    assert_eq!(
        html_names(&ascending),
        ["adir/", "zdir/", "d.txt", "a.txt", "b.txt", "e.txt", "c.bin"]
    );
    assert!(
        ascending.contains("aria-sort=\"ascending\"><a href=\"?sort=size&amp;order=desc\""),
        "{ascending}"
    );
    // Sizes for people, exact bytes in the title; dates to the minute, seconds in the title.
    assert!(
        page.contains("<td class=\"s\" title=\"2048 bytes\">2.0 KiB</td>"),
        "{page}"
    );
    assert!(page.contains("<td class=\"s\">-</td>"), "{page}");
    assert!(
        page.contains(
            "<time datetime=\"2025-06-15T15:06:40Z\" title=\"2025-06-15 15:06:40 UTC\">\
             2025-06-15 15:06</time>"
        ),
        "{page}"
    );
}

/// Times in the future show as now, and sort as what they show: two such files tie, and go
/// by name.
#[test]
fn future_times_sort_as_shown() {
    let root = TempDir::new("listing-future");
    let day = Duration::from_secs(86_400);
    for (name, ahead) in [("x.txt", 2 * day), ("y.txt", day)] {
        let path = root.write(name, "f");
        File::open(&path)
            .expect("open")
            .set_modified(SystemTime::now() + ahead)
            .expect("set mtime");
    }
    let server = Server::start(root.path(), &["--list"]);
    for query in ["?sort=date", "?sort=date&order=desc"] {
        let page = server.get(&format!("/{query}")).text();
        assert_eq!(html_names(&page), ["x.txt", "y.txt"], "{query}: {page}");
    }
}
