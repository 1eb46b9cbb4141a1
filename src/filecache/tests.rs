//! Unit tests for the file cache: hits, invalidation bookkeeping, the bounds.

use std::fs;
use std::path::PathBuf;

use super::*;
use crate::files::Resolution;
use crate::url::decode_path;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path =
            std::env::temp_dir().join(format!("httpd-filecache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Dir(fs::canonicalize(&path).unwrap())
    }
    fn write(&self, rel: &str, body: &str) {
        let path = self.0.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, body).unwrap();
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn open(dir: &Dir, bytes: u64) -> (Root, FileCache) {
    let root = Root::open_with(&dir.0, Resolution::Openat2).unwrap();
    let cache = FileCache::new(&root, bytes).unwrap();
    (root, cache)
}

/// The body served for `url` (`None` for a 404), through the cache.
fn get(cache: &FileCache, root: &Root, url: &str) -> Option<Vec<u8>> {
    let path = decode_path(url).unwrap();
    match resolve(Some(cache), (root, &Charset::default()), &path, None) {
        Ok(Lookup::File(found)) => {
            let rep = &found.reps[0];
            Some(match &rep.body {
                Some(body) => body.to_vec(),
                None => {
                    let mut bytes = vec![0; rep.meta.len() as usize];
                    rep.file.read_exact_at(&mut bytes, 0).unwrap();
                    bytes
                }
            })
        }
        Err(HttpError::NotFound) => None,
        other => panic!("{url}: {other:?}"),
    }
}

#[test]
fn a_second_lookup_is_a_hit_and_a_change_is_seen_at_once() {
    let dir = Dir::new("hit");
    dir.write("a/b.txt", "one");
    let (root, cache) = open(&dir, 1 << 20);
    assert_eq!(get(&cache, &root, "/a/b.txt").as_deref(), Some(&b"one"[..]));
    assert_eq!(cache.usage().entries, 1);
    let watches = cache.usage().watches;
    assert!(watches >= 3, "root, a and the file: {watches}");
    // Same size, same second: only the event tells.
    dir.write("a/b.txt", "two");
    assert_eq!(get(&cache, &root, "/a/b.txt").as_deref(), Some(&b"two"[..]));
    fs::remove_file(dir.0.join("a/b.txt")).unwrap();
    assert_eq!(get(&cache, &root, "/a/b.txt"), None);
    assert_eq!(get(&cache, &root, "/a/b.txt"), None);
    assert_eq!(cache.usage().entries, 1, "the 404 is cached");
    dir.write("a/b.txt", "three");
    assert_eq!(
        get(&cache, &root, "/a/b.txt").as_deref(),
        Some(&b"three"[..])
    );
    // A parent renamed away: the path is gone.
    fs::rename(dir.0.join("a"), dir.0.join("c")).unwrap();
    assert_eq!(get(&cache, &root, "/a/b.txt"), None);
    assert_eq!(
        get(&cache, &root, "/c/b.txt").as_deref(),
        Some(&b"three"[..])
    );
}

#[test]
fn an_event_drops_exactly_the_entries_that_depend_on_its_watch() {
    let dir = Dir::new("deps");
    dir.write("x/one.txt", "1");
    dir.write("y/two.txt", "2");
    let (root, cache) = open(&dir, 1 << 20);
    get(&cache, &root, "/x/one.txt");
    get(&cache, &root, "/y/two.txt");
    assert_eq!(cache.usage().entries, 2);
    dir.write("y/other.txt", "o");
    get(&cache, &root, "/x/one.txt");
    assert_eq!(cache.usage().entries, 1, "only y's entry went");
    // With every entry gone, so are their watches.
    dir.write("new.txt", "n");
    get(&cache, &root, "/nope/");
    let usage = cache.usage();
    assert_eq!(usage.entries, 1, "{usage:?}");
}

#[test]
fn paths_through_symlinks_are_not_cached() {
    let dir = Dir::new("links");
    dir.write("real/f.txt", "f");
    std::os::unix::fs::symlink("real", dir.0.join("link")).unwrap();
    let (root, cache) = open(&dir, 1 << 20);
    assert_eq!(
        get(&cache, &root, "/link/f.txt").as_deref(),
        Some(&b"f"[..])
    );
    assert_eq!(get(&cache, &root, "/link/missing"), None);
    assert_eq!(cache.usage().entries, 0);
    assert_eq!(cache.usage().watches, 0, "nothing left watched");
}

#[test]
fn bodies_and_open_files_stay_within_their_bounds() {
    let dir = Dir::new("bound");
    for i in 0..20 {
        dir.write(&format!("f{i}.txt"), &"x".repeat(100));
    }
    let (root, cache) = open(&dir, 1000);
    for i in 0..20 {
        get(&cache, &root, &format!("/f{i}.txt"));
        assert!(cache.usage().bytes <= 1000);
    }
    // 100 bytes of body and a short key held four times (map, queue, two watches) each.
    assert!(
        (7..=9).contains(&cache.usage().entries),
        "{:?}",
        cache.usage()
    );
    cache.set_max_files(4);
    assert!(cache.usage().files <= 4);
    for i in 0..20 {
        assert_eq!(
            get(&cache, &root, &format!("/f{i}.txt")).unwrap().len(),
            100
        );
        assert!(cache.usage().files <= 4);
    }
    // Evicted entries give their watches back: the root, and one file each.
    assert!(cache.usage().watches <= 5, "{:?}", cache.usage());
}

#[test]
fn variants_are_cached_with_the_file_and_their_changes_seen() {
    let dir = Dir::new("variants");
    dir.write("p.html", "plain");
    let (root, cache) = open(&dir, 1 << 20);
    let found = |cache: &FileCache| match resolve(
        Some(cache),
        (&root, &Charset::default()),
        &decode_path("/p.html").unwrap(),
        None,
    ) {
        Ok(Lookup::File(found)) => found.available.clone(),
        other => panic!("{other:?}"),
    };
    assert!(found(&cache).is_empty());
    dir.write("p.html.gz", "gz");
    assert_eq!(found(&cache), vec![Coding::Gzip]);
    assert_eq!(found(&cache), vec![Coding::Gzip]);
    fs::remove_file(dir.0.join("p.html.gz")).unwrap();
    assert!(found(&cache).is_empty());
}

#[test]
fn sizes_take_binary_suffixes() {
    assert_eq!(parse_size("0"), Ok(0));
    assert_eq!(parse_size("65536"), Ok(65536));
    assert_eq!(parse_size("512K"), Ok(512 << 10));
    assert_eq!(parse_size("64M"), Ok(64 << 20));
    assert_eq!(parse_size("1g"), Ok(1 << 30));
    for bad in ["", "M", "-1", "1.5M", "1T", "99999999999G"] {
        assert!(parse_size(bad).is_err(), "{bad}");
    }
}

#[test]
fn long_keys_deep_routes_and_many_watches_are_not_cached() {
    let dir = Dir::new("limits");
    let long = format!("/{}", "n".repeat(MAX_KEY + 10));
    let deep = format!("/{}x.txt", "d/".repeat(MAX_DEPTH));
    dir.write(&deep[1..], "deep");
    let (root, cache) = open(&dir, 1 << 20);
    // Served, never kept: a client asking for long or deep paths costs the cache nothing.
    assert_eq!(get(&cache, &root, &long), None);
    assert_eq!(get(&cache, &root, &deep).as_deref(), Some(&b"deep"[..]));
    assert_eq!(cache.usage().entries, 0, "{:?}", cache.usage());
    assert_eq!(cache.usage().watches, 0, "{:?}", cache.usage());
    // A short path at the top is kept, its key counted against the bound.
    assert_eq!(get(&cache, &root, "/missing"), None);
    assert_eq!(cache.usage().entries, 1);
    assert!(cache.usage().bytes >= "missing".len());
}

#[test]
fn etags_are_distinct_before_1970() {
    use std::time::{Duration, SystemTime};
    let path = std::env::temp_dir().join(format!("httpd-etag-{}", std::process::id()));
    std::fs::write(&path, "x").unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    let day = Duration::from_secs(86_400);
    let tag_at = |time: SystemTime| {
        file.set_modified(time).unwrap();
        etag(&file.metadata().unwrap(), Coding::Identity)
    };
    let tags = [
        tag_at(UNIX_EPOCH - 3653 * day),
        tag_at(UNIX_EPOCH - 3652 * day),
        tag_at(UNIX_EPOCH - Duration::from_secs(1)),
        tag_at(UNIX_EPOCH),
        tag_at(UNIX_EPOCH + Duration::from_secs(1)),
    ];
    // The same time gives the same tag.
    assert_eq!(tag_at(UNIX_EPOCH - 3653 * day), tags[0]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(&*tags[2], "\"-3b9aca00-1\"");
    assert_eq!(&*tags[4], "\"3b9aca00-1\"");
    for (i, a) in tags.iter().enumerate() {
        // A valid entity-tag: quoted etagc, no inner quote (RFC 9110 §8.8.3).
        let inner = &a[1..a.len() - 1];
        assert!(a.starts_with('"') && a.ends_with('"') && !inner.contains('"'));
        for b in &tags[i + 1..] {
            assert_ne!(a, b);
        }
    }
}
