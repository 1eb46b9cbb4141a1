//! The resolution tables: both resolvers (openat2 and the component walk) against a real tree
//! with symlinks inside and out of the root, `resolve`'s answers, and media types.

use super::*;
use crate::url::decode_path;

#[test]
fn content_types() {
    let table = [
        ("a.html", "text/html"),
        ("a.htm", "text/html"),
        ("a.css", "text/css"),
        ("a.jpg", "image/jpeg"),
        ("a.jpeg", "image/jpeg"),
        ("a.JPG", "image/jpeg"),
        ("a.png", "image/png"),
        ("a.gif", "image/gif"),
        ("a.swf", "application/x-shockwave-flash"),
        ("a.txt", "text/plain"),
        ("a.unknownext", "application/octet-stream"),
        ("noext", "application/octet-stream"),
    ];
    for (name, expected) in table {
        assert_eq!(content_type(Path::new(name)), expected, "{name}");
    }
    let js = content_type(Path::new("a.js"));
    assert!(
        js == "text/javascript" || js == "application/javascript",
        "{js}"
    );
}

/// A temporary tree: `root/` with symlinks that stay inside and ones that lead out to
/// `outside/`. Removed on drop.
struct Tree(PathBuf);

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tree(tag: &str) -> Tree {
    use std::os::unix::fs::symlink;
    let base = std::env::temp_dir().join(format!("httpd-files-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let root = base.join("root");
    for dir in ["outside/dir", "root/dir/sub"] {
        std::fs::create_dir_all(base.join(dir)).unwrap();
    }
    for (file, text) in [
        ("outside/secret.txt", "OUTSIDE"),
        ("root/a.txt", "A"),
        ("root/dir/b.txt", "B"),
        ("root/dir/sub/c.txt", "C"),
    ] {
        std::fs::write(base.join(file), text).unwrap();
    }
    let outside = base.join("outside");
    let links: &[(&str, &Path)] = &[
        ("link-file", Path::new("a.txt")),
        ("link-dir", Path::new("dir")),
        ("link-dir-slash", Path::new("dir/")),
        ("chain1", Path::new("chain2")),
        ("chain2", Path::new("link-dir")),
        ("dir/up-file", Path::new("../a.txt")),
        ("dir/sub/up2", Path::new("../../link-file")),
        ("dir/sub/round", Path::new("../sub/../../dir/b.txt")),
        ("file-slash", Path::new("a.txt/")),
        ("out-rel", Path::new("../outside/secret.txt")),
        ("out-dir", Path::new("../outside")),
        ("dir/out-chain", Path::new("../../outside/secret.txt")),
        ("dir/deep", Path::new("../dir/../../outside")),
        ("dir/via-in", Path::new("../out-dir/secret.txt")),
        ("loop-a", Path::new("loop-b")),
        ("loop-b", Path::new("loop-a")),
        ("self", Path::new("self")),
        ("etc", Path::new("/etc")),
        ("dangling", Path::new("nowhere")),
    ];
    for (name, target) in links {
        symlink(target, root.join(name)).unwrap();
    }
    symlink(outside.join("secret.txt"), root.join("out-abs")).unwrap();
    // Absolute, though it names a file inside: RESOLVE_BENEATH refuses every absolute
    // target, and so does the walk.
    symlink(root.join("a.txt"), root.join("abs-in")).unwrap();
    Tree(base)
}

/// What one lookup gave: the file's contents, `dir`, or the errno.
fn lookup(root: &Root, rel: &str) -> Result<String, i32> {
    let rel = RelPath::from_segments(
        &rel.split('/')
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let (mut file, meta) = root
        .open_file(&rel)
        .map_err(|err| err.raw_os_error().unwrap_or(-1))?;
    if meta.is_dir() {
        return Ok("dir".into());
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).unwrap();
    Ok(text)
}

#[test]
fn both_resolvers_keep_every_lookup_beneath_the_root() {
    let tree = tree("resolvers");
    let (exdev, eloop) = (libc::EXDEV, libc::ELOOP);
    let table: &[(&str, Result<&str, i32>)] = &[
        ("", Ok("dir")),
        ("a.txt", Ok("A")),
        ("dir", Ok("dir")),
        ("dir/sub/c.txt", Ok("C")),
        ("link-file", Ok("A")),
        ("link-dir", Ok("dir")),
        ("link-dir/b.txt", Ok("B")),
        ("link-dir-slash/b.txt", Ok("B")),
        ("chain1/sub/c.txt", Ok("C")),
        ("dir/up-file", Ok("A")),
        ("dir/sub/up2", Ok("A")),
        ("dir/sub/round", Ok("B")),
        ("link-dir/sub/up2", Ok("A")),
        ("missing", Err(libc::ENOENT)),
        ("dangling", Err(libc::ENOENT)),
        ("a.txt/x", Err(libc::ENOTDIR)),
        ("file-slash", Err(libc::ENOTDIR)),
        ("out-rel", Err(exdev)),
        ("out-abs", Err(exdev)),
        ("abs-in", Err(exdev)),
        ("etc", Err(exdev)),
        ("etc/passwd", Err(exdev)),
        ("out-dir", Err(exdev)),
        ("out-dir/secret.txt", Err(exdev)),
        ("dir/out-chain", Err(exdev)),
        ("dir/deep/secret.txt", Err(exdev)),
        ("dir/via-in", Err(exdev)),
        ("link-dir/out-chain", Err(exdev)),
        ("loop-a", Err(eloop)),
        ("self", Err(eloop)),
        ("self/x", Err(eloop)),
    ];
    let mut resolutions = vec![Resolution::Walk];
    let probe_root = Root::open(&tree.0.join("root")).unwrap();
    if probe_root.resolution() == Resolution::Openat2 {
        resolutions.push(Resolution::Openat2);
    } else {
        eprintln!("openat2 unavailable here: only the component walk is checked");
    }
    for resolution in resolutions {
        let root = Root::open_with(&tree.0.join("root"), resolution).unwrap();
        for (rel, expected) in table {
            let got = lookup(&root, rel);
            assert_eq!(got.as_deref(), expected.as_deref(), "{resolution:?} {rel}");
        }
        // O_PATH lookups (listing entries) follow the same rules.
        for (rel, ok) in [("link-dir", true), ("link-file", true), ("out-dir", false)] {
            let rel = RelPath::from_segments(&[rel.as_bytes().to_vec()]).unwrap();
            assert_eq!(root.open_beneath(&rel, libc::O_PATH).is_ok(), ok, "{rel}");
        }
    }
}

#[test]
fn the_walk_follows_at_most_max_links() {
    use std::os::unix::fs::symlink;
    let tree = tree("links");
    let root_dir = tree.0.join("root");
    // hop0 -> hop1 -> ... -> hopN -> a.txt: N + 1 links.
    let hops = |n: usize| {
        for i in 0..n {
            symlink(
                format!("hop{}-{n}", i + 1),
                root_dir.join(format!("hop{i}-{n}")),
            )
            .unwrap();
        }
        symlink("a.txt", root_dir.join(format!("hop{n}-{n}"))).unwrap();
    };
    hops(MAX_LINKS - 1);
    hops(MAX_LINKS);
    let root = Root::open_with(&root_dir, Resolution::Walk).unwrap();
    assert_eq!(
        lookup(&root, &format!("hop0-{}", MAX_LINKS - 1)),
        Ok("A".into())
    );
    assert_eq!(
        lookup(&root, &format!("hop0-{MAX_LINKS}")),
        Err(libc::ELOOP)
    );
}

#[test]
fn resolve_opens_only_what_it_describes() {
    let tree = tree("resolve");
    let root_dir = tree.0.join("root");
    std::fs::write(root_dir.join("dir/index.html"), "I").unwrap();
    let fifo = CString::new(root_dir.join("fifo").as_os_str().as_bytes()).unwrap();
    assert!(crate::sys::mkfifo(&fifo, 0o644).is_ok());
    for resolution in [
        Resolution::Walk,
        Root::open(&root_dir).unwrap().resolution(),
    ] {
        let root = Root::open_with(&root_dir, resolution).unwrap();
        let get = |path: &str| resolve(&root, &decode_path(path).unwrap(), Some("q=1"));
        match get("/dir") {
            Ok(Resolved::Redirect(location)) => assert_eq!(location, "/dir/?q=1"),
            other => panic!("{other:?}"),
        }
        match get("/link-dir/") {
            Ok(Resolved::File {
                rel, content_type, ..
            }) => {
                assert_eq!(
                    (rel.as_bytes(), content_type),
                    (&b"link-dir/index.html"[..], "text/html")
                );
            }
            other => panic!("{other:?}"),
        }
        match get("/dir/sub/") {
            Ok(Resolved::Directory { rel, meta, .. }) => {
                assert_eq!(rel.as_bytes(), b"dir/sub");
                assert!(meta.is_dir());
            }
            other => panic!("{other:?}"),
        }
        let status = |path: &str| get(path).map(|_| 200).map_err(HttpError::status);
        assert_eq!(status("/fifo"), Err(403), "{resolution:?}");
        assert_eq!(status("/a.txt/"), Err(404));
        assert_eq!(status("/out-dir/secret.txt"), Err(404));
        assert_eq!(status("/loop-a"), Err(404));
    }
    let hand_made = SafePath {
        segments: vec![b"..".to_vec(), b"outside".to_vec()],
        trailing_slash: false,
    };
    let root = Root::open(&root_dir).unwrap();
    assert_eq!(
        resolve(&root, &hand_made, None)
            .map(|_| ())
            .map_err(HttpError::status),
        Err(400)
    );
}
