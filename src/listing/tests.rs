//! The listing's tables: dates, orders, sizes, escaping in every context (text, links,
//! titles), clamped times and JSON.

use super::*;
use std::time::Duration;

fn entry(name: &[u8], is_dir: bool, size: u64) -> Entry {
    Entry {
        name: name.to_vec(),
        is_dir,
        size,
        modified: Some(UNIX_EPOCH + Duration::from_secs(784_111_777)),
    }
}

#[test]
fn dates() {
    let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
    assert_eq!(utc(t, 'T'), "1994-11-06T08:49:37Z");
    assert_eq!(utc(UNIX_EPOCH, 'T'), "1970-01-01T00:00:00Z");
    assert_eq!(
        utc(UNIX_EPOCH + Duration::from_secs(951_782_400), 'T'),
        "2000-02-29T00:00:00Z"
    );
    assert_eq!(
        utc(UNIX_EPOCH + Duration::from_secs(4_102_444_799), ' '),
        "2099-12-31 23:59:59"
    );
}

#[test]
fn sorted_dirs_first_then_names() {
    let mut entries = vec![
        entry(b"b.txt", false, 1),
        entry(b"z", true, 0),
        entry(b"a.txt", false, 2),
        entry(b"a", true, 0),
    ];
    Order::default().sort(&mut entries);
    let names: Vec<&[u8]> = entries.iter().map(|e| e.name.as_slice()).collect();
    assert_eq!(names, [&b"a"[..], b"z", b"a.txt", b"b.txt"]);
}

fn names(entries: &[Entry]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| std::str::from_utf8(&e.name).unwrap())
        .collect()
}

/// Every order the query can ask for: directories first in each, ties by name ascending
/// whatever the direction, a missing time oldest.
#[test]
fn sort_orders() {
    let at = |secs: u64| Some(UNIX_EPOCH + Duration::from_secs(secs));
    let mut entries = vec![
        entry(b"b.txt", false, 300),
        entry(b"docs", true, 0),
        entry(b"a.txt", false, 300),
        entry(b"c.bin", false, 5_000_000),
        entry(b"assets", true, 0),
        entry(b"d.txt", false, 1),
        entry(b"e.txt", false, 1),
    ];
    let times = [at(200), at(100), at(200), at(50), at(300), None, at(400)];
    for (entry, time) in entries.iter_mut().zip(times) {
        entry.modified = time;
    }
    let table: [(&str, [&str; 7]); 7] = [
        (
            "",
            [
                "assets", "docs", "a.txt", "b.txt", "c.bin", "d.txt", "e.txt",
            ],
        ),
        (
            "sort=name&order=desc",
            [
                "docs", "assets", "e.txt", "d.txt", "c.bin", "b.txt", "a.txt",
            ],
        ),
        (
            "sort=size",
            [
                "assets", "docs", "d.txt", "e.txt", "a.txt", "b.txt", "c.bin",
            ],
        ),
        (
            "sort=size&order=desc",
            [
                "assets", "docs", "c.bin", "a.txt", "b.txt", "d.txt", "e.txt",
            ],
        ),
        (
            "sort=date&order=asc",
            [
                "docs", "assets", "d.txt", "c.bin", "a.txt", "b.txt", "e.txt",
            ],
        ),
        (
            "order=desc&sort=date",
            [
                "assets", "docs", "e.txt", "a.txt", "b.txt", "c.bin", "d.txt",
            ],
        ),
        // Unknown values and parameters are ignored; the last valid one wins.
        (
            "sort=bogus&order=up&x=1&format=json&sort=size&sort=SIZE&&=",
            [
                "assets", "docs", "d.txt", "e.txt", "a.txt", "b.txt", "c.bin",
            ],
        ),
    ];
    for (query, expected) in table {
        let order = Order::from_query(Some(query));
        // Whatever order the entries come in, the result is the same (a total order).
        for rotation in 0..entries.len() {
            let mut sorted = entries.clone();
            sorted.rotate_left(rotation);
            sorted.reverse();
            order.sort(&mut sorted);
            assert_eq!(names(&sorted), expected, "{query:?}");
        }
    }
}

#[test]
fn queries_fall_back_to_names_ascending() {
    let default = Order::default();
    assert_eq!((default.key, default.descending), (Key::Name, false));
    for query in [
        None,
        Some(""),
        Some("sort="),
        Some("sort=size;order=desc"),
        Some("sort=%73ize"),
        Some("Sort=size"),
        Some("sort=size "),
        Some("sort=sizes&order=descending"),
        Some("format=json"),
        Some("\u{0}&&&===&?sort=date"),
    ] {
        assert_eq!(Order::from_query(query), default, "{query:?}");
    }
    // Each query the page links to reads back as the order it was made from.
    for key in Key::ALL {
        for descending in [false, true] {
            let order = Order { key, descending };
            assert_eq!(Order::from_query(Some(&order.query())), order);
        }
    }
}

/// The header links: the sorted column flips its direction, the others start ascending;
/// the sorted column says so in `aria-sort` and an arrow.
#[test]
fn header_links_toggle() {
    let by_size_desc = Order::from_query(Some("sort=size&order=desc"));
    let page = String::from_utf8(html(&[], &[], by_size_desc, false)).unwrap();
    assert!(
        page.contains(
            "<tr><th class=\"n\"><a href=\"?sort=name&amp;order=asc\">Name</a> </th>\
             <th class=\"s\" aria-sort=\"descending\"><a href=\"?sort=size&amp;order=asc\">Size</a> \u{25bc}</th>\
             <th class=\"d\"><a href=\"?sort=date&amp;order=asc\">Modified (UTC)</a> </th></tr>"
        ),
        "{page}"
    );
    let page = String::from_utf8(html(&[], &[], Order::default(), false)).unwrap();
    assert!(
        page.contains(
            "<th class=\"n\" aria-sort=\"ascending\"><a href=\"?sort=name&amp;order=desc\">Name</a> \u{25b2}</th>"
        ),
        "{page}"
    );
    assert_eq!(page.matches("aria-sort").count(), 1, "{page}");
    // The page can be read on a phone, and sizes and dates do not wrap.
    assert!(
        page.contains("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">")
    );
    assert!(page.contains(".s,.d{white-space:nowrap"), "{page}");
    assert!(page.contains("table-layout:fixed") && page.contains("overflow-wrap:anywhere"));
}

#[test]
fn human_sizes() {
    let table: [(u64, &str); 17] = [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1075, "1.0 KiB"),
        (1076, "1.1 KiB"),
        (1229, "1.2 KiB"),
        (10 * 1024 - 1, "10.0 KiB"),
        // 1023.95 KiB would round to 1024.0 KiB: shown as the next unit.
        (1024 * 1024 - 52, "1023.9 KiB"),
        (1024 * 1024 - 51, "1.0 MiB"),
        (1024 * 1024, "1.0 MiB"),
        (3_565_158, "3.4 MiB"),
        (1 << 30, "1.0 GiB"),
        (5 * (1 << 40) + (1 << 39), "5.5 TiB"),
        (1 << 50, "1.0 PiB"),
        (1 << 60, "1.0 EiB"),
        (u64::MAX, "16.0 EiB"),
    ];
    for (bytes, shown) in table {
        assert_eq!(human_size(bytes), shown, "{bytes}");
    }
    // In the page: the short form shown, the exact count in the title; a directory is `-`.
    let entries = [
        entry(b"big", false, u64::MAX),
        entry(b"one", false, 1),
        entry(b"sub", true, 4096),
    ];
    let page = String::from_utf8(html(&[], &entries, Order::default(), false)).unwrap();
    assert!(
        page.contains("<td class=\"s\" title=\"18446744073709551615 bytes\">16.0 EiB</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td class=\"s\" title=\"1 byte\">1 B</td>"),
        "{page}"
    );
    assert!(
        page.contains("title=\"sub/\">sub/</a></td><td class=\"s\">-</td>"),
        "{page}"
    );
}

#[test]
fn html_escapes_names_and_encodes_links() {
    let entries = [
        entry(b"<b>&\"x'.txt", false, 5),
        entry(b"caf\xc3\xa9 dir", true, 0),
    ];
    let page =
        String::from_utf8(html(&[b"d<ir".to_vec()], &entries, Order::default(), false)).unwrap();
    assert!(page.contains("<title>Index of /d&lt;ir/</title>"), "{page}");
    assert!(page.contains("<a href=\"../\">../</a>"), "{page}");
    // The full name is in the title too, escaped the same way.
    assert!(
        page.contains(
            "<a href=\"%3Cb%3E%26%22x%27.txt\" title=\"&lt;b&gt;&amp;&quot;x&#39;.txt\">\
             &lt;b&gt;&amp;&quot;x&#39;.txt</a>"
        ),
        "{page}"
    );
    assert!(
        page.contains("<a href=\"caf%C3%A9%20dir/\" title=\"café dir/\">café dir/</a>"),
        "{page}"
    );
    assert!(
        page.contains(
            "<td class=\"s\" title=\"5 bytes\">5 B</td><td class=\"d\">\
             <time datetime=\"1994-11-06T08:49:37Z\" title=\"1994-11-06 08:49:37 UTC\">\
             1994-11-06 08:49</time></td>"
        ),
        "{page}"
    );
    assert!(page.contains("<td class=\"s\">-</td>"), "{page}");
    assert!(!page.contains("<b>"), "{page}");
    let root = String::from_utf8(html(&[], &[], Order::default(), true)).unwrap();
    assert!(!root.contains("../") && root.contains("Only the first entries"));
}

/// The hrefs of a page, in order (the page escapes them, so a `"` ends one).
fn hrefs(page: &str) -> Vec<&str> {
    page.split("href=\"")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect()
}

/// A relative reference is read as a scheme if its first segment has a `:` before any
/// `/`, `?` or `#` (RFC 3986 §4.2): no listing link may ever look like that.
#[test]
fn hrefs_are_never_schemes_or_off_site() {
    // (A file name cannot hold `/`, so `//host` cannot arise; `/` is escaped anyway.)
    let names: [&[u8]; 8] = [
        b"javascript:alert(document.domain)",
        b"https:evil.example",
        b"JAVASCRIPT:x",
        b"data:text,x",
        b"a:b:c",
        b"x'y(z)\"<w>&v",
        b"plain.txt",
        // Not mistaken for (or able to pose as) a column header's link.
        b"?sort=size&order=desc",
    ];
    let entries: Vec<Entry> = names.iter().map(|n| entry(n, false, 1)).collect();
    let page =
        String::from_utf8(html(&[b"d".to_vec()], &entries, Order::default(), false)).unwrap();
    let json: Vec<String> = String::from_utf8(json(&entries))
        .unwrap()
        .split("\"href\":\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_string())
        .collect();
    // The three column headers link to a fixed query; every other link is an entry's.
    let (headers, html_hrefs): (Vec<&str>, Vec<&str>) = hrefs(&page)
        .into_iter()
        .partition(|href| href.starts_with('?'));
    assert_eq!(
        headers,
        [
            "?sort=name&amp;order=desc",
            "?sort=size&amp;order=asc",
            "?sort=date&amp;order=asc"
        ]
    );
    assert_eq!(html_hrefs.len(), names.len() + 1, "{page}"); // and `../`
    assert_eq!(json.len(), names.len());
    for href in html_hrefs
        .iter()
        .copied()
        .chain(json.iter().map(String::as_str))
    {
        let first = href.split(['/', '?', '#']).next().unwrap_or("");
        assert!(!first.contains(':'), "scheme-like href {href:?}");
        assert!(!href.starts_with("//") && !href.contains('\\'), "{href:?}");
        assert!(
            !href.contains(['"', '\'', '<', '>', '&', '(', ')', ' ']),
            "{href:?}"
        );
    }
    assert!(page.contains("href=\"javascript%3Aalert%28document.domain%29\""));
    assert!(page.contains("href=\"https%3Aevil.example\""));
    assert_eq!(json[0], "javascript%3Aalert%28document.domain%29");
    assert_eq!(json[5], "x%27y%28z%29%22%3Cw%3E%26v");
    // Each href decodes back to its name, so the link still leads to the file.
    for (href, name) in json.iter().zip(names) {
        let path = crate::url::decode_path(&format!("/{href}")).unwrap();
        assert_eq!(path.segments, [name.to_vec()], "{href}");
    }
}

#[test]
fn times_are_clamped_to_1970_and_now() {
    let day = Duration::from_secs(86_400);
    let now = UNIX_EPOCH + Duration::from_millis(784_111_777_700);
    let mut entries = [
        entry(b"old", false, 1),
        entry(b"future", false, 1),
        entry(b"now", false, 1),
        entry(b"none", false, 1),
    ];
    entries[0].modified = Some(UNIX_EPOCH - 3653 * day);
    entries[1].modified = Some(UNIX_EPOCH + 47_482 * day); // 2100
    entries[3].modified = None;
    clamp_times(&mut entries, now);
    let second = UNIX_EPOCH + Duration::from_secs(784_111_777);
    assert_eq!(entries[0].modified, Some(UNIX_EPOCH));
    assert_eq!(entries[1].modified, Some(second));
    assert_eq!(entries[2].modified, Some(second));
    assert_eq!(entries[3].modified, None);
    let text = String::from_utf8(json(&entries)).unwrap();
    assert!(
        text.contains("\"mtime\":\"1970-01-01T00:00:00Z\""),
        "{text}"
    );
    assert!(
        text.contains("\"mtime\":\"1994-11-06T08:49:37Z\""),
        "{text}"
    );
    assert!(text.contains("\"mtime\":null"), "{text}");
    let page = String::from_utf8(html(&[], &entries, Order::default(), false)).unwrap();
    assert!(page.contains(">1970-01-01 00:00</time>"), "{page}");
    assert!(!page.contains("2100"), "{page}");
    // Unclamped, a time before 1970 still renders as the epoch rather than failing.
    assert_eq!(utc(UNIX_EPOCH - day, 'T'), "1970-01-01T00:00:00Z");
}

#[test]
fn json_is_escaped() {
    let entries = [entry(b"q\"\\\n.txt", false, 3), entry(b"sub", true, 0)];
    let text = String::from_utf8(json(&entries)).unwrap();
    assert_eq!(
        text,
        "[{\"name\":\"q\\\"\\\\\\u000a.txt\",\"type\":\"file\",\"size\":3,\"mtime\":\"1994-11-06T08:49:37Z\",\"href\":\"q%22%5C%0A.txt\"},\
         {\"name\":\"sub\",\"type\":\"dir\",\"size\":0,\"mtime\":\"1994-11-06T08:49:37Z\",\"href\":\"sub/\"}]\n"
    );
    assert_eq!(json(&[]), b"[]\n");
}
