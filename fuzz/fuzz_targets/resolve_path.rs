//! Target splitting, percent-decoding and resolution on arbitrary strings, against a real
//! directory tree with a symlink out of the root, with both resolvers (openat2 and the
//! component walk): nothing opened lies outside the root (checked through /proc/self/fd).
#![no_main]

use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::OnceLock;

use httpd::internals::files::{self, Resolution, Resolved, Root};
use httpd::internals::url;
use libfuzzer_sys::fuzz_target;

/// The fuzzing root (made once per process under the temp dir; the fuzzer exits by itself
/// after `-max_total_time`, so the small tree is left for the OS's temp cleanup).
fn root_path() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("httpd-fuzz-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(root.join("index.html"), "home").unwrap();
        std::fs::write(root.join("docs/index.html"), "docs").unwrap();
        std::fs::write(base.join("outside/secret"), "secret").unwrap();
        let _ = symlink(base.join("outside"), root.join("out"));
        root.canonicalize().unwrap()
    })
}

/// The root opened with the kernel's resolver (where it exists) and with the walk.
fn roots() -> &'static [Root; 2] {
    static ROOTS: OnceLock<[Root; 2]> = OnceLock::new();
    ROOTS.get_or_init(|| {
        [
            Root::open(root_path()).unwrap(),
            Root::open_with(root_path(), Resolution::Walk).unwrap(),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(split) = url::split_target(target) else {
        return;
    };
    let Ok(path) = url::decode_path(split.path) else {
        return;
    };
    for segment in &path.segments {
        assert!(segment.as_slice() != b".." && !segment.contains(&b'/') && !segment.contains(&0));
    }
    let root_path = root_path();
    for root in roots() {
        match files::resolve(root, &path, split.query) {
            Ok(Resolved::File { file: fd, .. }) | Ok(Resolved::Directory { dir: fd, .. }) => {
                let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
                assert!(real.starts_with(root_path), "{target:?} -> {real:?}");
            }
            Ok(Resolved::Redirect(location)) => assert!(!location.starts_with("//")),
            Err(_) => {}
        }
    }
});
