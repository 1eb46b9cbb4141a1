//! Target splitting, percent-decoding and resolution on arbitrary strings, against a real
//! directory tree with a symlink out of the root: nothing resolves outside the root.
#![no_main]

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::OnceLock;

use httpd::files::{self, Resolved};
use libfuzzer_sys::fuzz_target;

/// The fuzzing root (made once per process under the temp dir; the fuzzer exits by itself
/// after `-max_total_time`, so the small tree is left for the OS's temp cleanup).
fn root() -> &'static PathBuf {
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

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(split) = files::split_target(target) else {
        return;
    };
    let Ok(path) = files::decode_path(split.path) else {
        return;
    };
    for segment in &path.segments {
        assert!(segment.as_slice() != b".." && !segment.contains(&b'/') && !segment.contains(&0));
    }
    let root = root();
    match files::resolve(root, &path, split.query) {
        Ok(Resolved::File { real, .. }) | Ok(Resolved::Directory { real, .. }) => {
            assert!(real.starts_with(root), "{target:?} -> {real:?}");
        }
        Ok(Resolved::Redirect(location)) => assert!(!location.starts_with("//")),
        Err(_) => {}
    }
});
