//! Property test: whatever a client sends as a path, anything it resolves to lies under the
//! root. Random and adversarial paths (encoded dots and slashes, backslashes, NULs,
//! symlinks out of the root) against a real directory tree, with both resolvers (openat2
//! and the component walk). What was opened is checked through /proc/self/fd.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use httpd::internals::files::{self, Resolution, Resolved, Root};
use httpd::internals::url;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Pieces that traversal attempts are made of, glued together at random.
fn adversarial() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(".."),
        Just("."),
        Just("/"),
        Just("//"),
        Just("%2e"),
        Just("%2E"),
        Just("%2f"),
        Just("%2F"),
        Just("%5c"),
        Just("\\\\"),
        Just("%00"),
        Just("%252e"),
        Just("%25"),
        Just("%"),
        Just("%zz"),
        Just(".well-known"),
        Just(".hidden"),
        Just("docs"),
        Just("index.html"),
        Just("in-link"),
        Just("out-link"),
        Just("etc-link"),
        Just("loop"),
        Just("a"),
        Just("~"),
        Just("http://h"),
        Just("?q"),
        Just("#f"),
    ];
    prop::collection::vec(piece, 0..14).prop_map(|parts| format!("/{}", parts.concat()))
}

/// The path of what `fd` refers to now, as the kernel names it.
fn opened(fd: &impl AsRawFd) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("readlink /proc fd")
}

#[test]
fn no_decoded_path_resolves_outside_the_root() {
    let base = common::TempDir::new("prop");
    base.write("outside/secret.txt", "secret");
    base.write("root/index.html", "home");
    base.write("root/docs/index.html", "docs");
    base.write("root/.hidden", "hidden");
    base.write("root/.well-known/x", "x");
    let root_dir = base.path().join("root");
    symlink(root_dir.join("index.html"), root_dir.join("in-link")).unwrap();
    symlink(base.path().join("outside"), root_dir.join("out-link")).unwrap();
    symlink("/etc", root_dir.join("etc-link")).unwrap();
    symlink("loop", root_dir.join("loop")).unwrap();
    let root_path = root_dir.canonicalize().unwrap();
    let openat2 = Root::open(&root_path).unwrap();
    let walk = Root::open_with(&root_path, Resolution::Walk).unwrap();

    let strategy = prop_oneof![adversarial(), "/\\\\PC{0,40}", any::<String>()];
    let mut runner = TestRunner::new(Config {
        cases: 4000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |target| {
            let Ok(split) = url::split_target(&target) else {
                return Ok(());
            };
            let Ok(path) = url::decode_path(split.path) else {
                return Ok(());
            };
            for root in [&openat2, &walk] {
                check(root, &root_path, &target, &path, split.query)?;
            }
            Ok(())
        })
        .unwrap();
}

fn check(
    root: &Root,
    root_path: &Path,
    target: &str,
    path: &url::SafePath,
    query: Option<&str>,
) -> Result<(), TestCaseError> {
    match files::resolve(root, path, query) {
        Ok(Resolved::File { file: fd, .. }) | Ok(Resolved::Directory { dir: fd, .. }) => {
            let real = opened(&fd);
            prop_assert!(
                real.starts_with(root_path),
                "{:?} {target:?} opened {real:?}",
                root.resolution()
            );
            let shown = real.to_string_lossy().into_owned();
            prop_assert!(!shown.contains("outside") && !shown.starts_with("/etc"));
        }
        Ok(Resolved::Redirect(location)) => {
            prop_assert!(location.starts_with('/') && !location.starts_with("//"));
        }
        Err(_) => {}
    }
    Ok(())
}
