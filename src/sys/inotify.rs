//! inotify behind safe functions: the file cache's invalidation (an instance, watches, and
//! reading the queued events without waiting).
//! May use: libc, std.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `inotify_init1(IN_NONBLOCK | IN_CLOEXEC)`: a new inotify instance whose reads never wait.
pub fn inotify_init() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; a non-negative result is a new descriptor nobody else owns.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `inotify_add_watch(2)`: watches `path` with `mask`; the watch descriptor (the same one
/// again for an inode already watched by this instance).
pub fn inotify_add_watch(fd: BorrowedFd<'_>, path: &CStr, mask: u32) -> io::Result<i32> {
    // SAFETY: `path` is NUL-terminated and alive for the call; the kernel only reads it.
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) };
    if wd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(wd)
}

/// `inotify_rm_watch(2)`: stops watch `wd` (an `IN_IGNORED` event follows).
pub fn inotify_rm_watch(fd: BorrowedFd<'_>, wd: i32) -> io::Result<()> {
    // SAFETY: plain integers; an unknown `wd` is EINVAL, nothing else.
    if unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One inotify event as read: its watch, mask and whether it names an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InotifyEvent {
    pub wd: i32,
    pub mask: u32,
}

/// Reads the events queued on the non-blocking inotify `fd` into `out` (names skipped), until
/// read(2) says the queue is empty (EAGAIN): one read when nothing happened.
pub fn inotify_drain(fd: BorrowedFd<'_>, out: &mut Vec<InotifyEvent>) -> io::Result<()> {
    // Aligned for `inotify_event`, and larger than one event with the longest name.
    #[repr(C, align(8))]
    struct Buf([u8; 8192]);
    let mut buf = Buf([0; 8192]);
    loop {
        // SAFETY: the buffer is valid for writes of its length for the call.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.0.as_mut_ptr().cast(), buf.0.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock => Ok(()),
                io::ErrorKind::Interrupted => continue,
                _ => Err(err),
            };
        }
        let n = n as usize;
        let head = std::mem::size_of::<libc::inotify_event>();
        let mut at = 0;
        while at + head <= n {
            // SAFETY: the kernel wrote whole events up to `n`; `read_unaligned` needs no
            // alignment and `inotify_event` is plain integers.
            let event: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf.0[at..].as_ptr().cast()) };
            out.push(InotifyEvent {
                wd: event.wd,
                mask: event.mask,
            });
            at += head + event.len as usize;
        }
        // Events were queued: read again until the queue answers EAGAIN (an empty queue
        // costs the one read).
    }
}
