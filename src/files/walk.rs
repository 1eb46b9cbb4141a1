//! The component walk ([`Resolution::Walk`](super::Resolution::Walk)): resolving a path
//! beneath the root one component at a time where `openat2` is missing or filtered, with the
//! kernel's rules for symlinks applied here.
//! May use: sys.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::MAX_LINKS;
use crate::sys;

/// Resolves `rel` one component at a time from `root`, holding a descriptor for each
/// directory on the way. Every component is opened with `O_NOFOLLOW`, so a symlink is never
/// followed by the kernel: its target is read (`readlinkat`) and its parts take its place. An
/// absolute target, or a `..` with nothing left to climb, is EXDEV (what RESOLVE_BENEATH
/// answers); more than [`MAX_LINKS`] symlinks is ELOOP. `..` pops our own stack of
/// descriptors, never asks the filesystem, so the walk never leaves the root.
pub(super) fn walk(root: BorrowedFd<'_>, rel: &[u8], flags: i32) -> io::Result<OwnedFd> {
    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    push_components(&mut pending, rel);
    let mut dirs: Vec<OwnedFd> = Vec::new();
    let mut links = 0;
    loop {
        let here = dirs.last().map_or(root, |fd| fd.as_fd());
        let Some(name) = pending.pop_front() else {
            // Nothing left after `.` or `..`: the path names the directory we are in.
            return sys::openat(here, c".", flags);
        };
        match name.as_slice() {
            b"." => continue,
            b".." => {
                if dirs.pop().is_none() {
                    return Err(io::Error::from_raw_os_error(libc::EXDEV));
                }
                continue;
            }
            _ => {}
        }
        let last = pending.is_empty();
        let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let target = if last && flags & libc::O_PATH == 0 {
            // The final open is the real one, still O_NOFOLLOW: ELOOP means the entry is a
            // symlink (or just became one), to be resolved here like any other.
            match sys::openat(here, &cname, flags | libc::O_NOFOLLOW) {
                Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
                    match sys::readlinkat(here, &cname) {
                        Ok(target) => target,
                        // No longer a symlink: look again (counted, so a flapping entry ends).
                        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                            follow(&mut links)?;
                            pending.push_front(cname.into_bytes());
                            continue;
                        }
                        Err(err) => return Err(err),
                    }
                }
                result => return result,
            }
        } else {
            // O_PATH opens nothing (no FIFO can block, no device is touched); fstat says what
            // the entry is, and readlinkat on the same descriptor reads that very symlink.
            let entry = File::from(sys::openat(here, &cname, libc::O_PATH | libc::O_NOFOLLOW)?);
            let kind = entry.metadata()?.file_type();
            if kind.is_symlink() {
                sys::readlinkat(entry.as_fd(), c"")?
            } else if last {
                return Ok(entry.into());
            } else if kind.is_dir() {
                dirs.push(entry.into());
                continue;
            } else {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
        };
        follow(&mut links)?;
        if target.starts_with(b"/") {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        if target.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        // The target's parts come next, resolved from the directory holding the symlink.
        let mut parts = VecDeque::new();
        push_components(&mut parts, &target);
        parts.append(&mut pending);
        pending = parts;
    }
}

/// Counts one more symlink followed; past [`MAX_LINKS`] the lookup is ELOOP.
fn follow(links: &mut usize) -> io::Result<()> {
    *links += 1;
    if *links > MAX_LINKS {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    Ok(())
}

/// Appends the components of `path` to `out`: empty ones dropped, and a trailing `/` kept as
/// a final `.` so the name before it must be a directory.
fn push_components(out: &mut VecDeque<Vec<u8>>, path: &[u8]) {
    out.extend(
        path.split(|&b| b == b'/')
            .filter(|part| !part.is_empty())
            .map(<[u8]>::to_vec),
    );
    if path.ends_with(b"/") {
        out.push_back(b".".to_vec());
    }
}
