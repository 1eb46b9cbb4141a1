//! The only unsafe: system calls behind safe functions (here and in `sys/epoll.rs`,
//! `sys/process.rs`). Each wrapper takes and returns owned or borrowed descriptors and byte
//! strings, turns -1 into `io::Error`, and says in a `// SAFETY:` comment why its call is
//! sound. Where `rustix` has a safe call (epoll, eventfd, accept4) it is used instead, and its
//! wrappers live here too, so that every system call stays in this one module.
//! May use: libc, rustix, std.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// Kept in files of their own so this one stays short; the lint above covers them too.
mod epoll;
mod inotify;
mod process;

pub use epoll::{Set, BATCH, RESERVED};
pub use inotify::{inotify_add_watch, inotify_drain, inotify_init, inotify_rm_watch, InotifyEvent};
pub use process::{coarse_nanos, cpus_configured, raise_open_file_limit};

// --- files ---

/// `openat2(2)` (Linux ≥ 5.6): opens `path` relative to `dir` with `flags` (`O_CLOEXEC` is
/// always added) under the `resolve` restrictions (`RESOLVE_BENEATH`, …). ENOSYS where the
/// kernel lacks the call, EPERM where a seccomp filter refuses it.
pub fn openat2(dir: BorrowedFd<'_>, path: &CStr, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    // SAFETY: `open_how` is three u64s (libc marks it non-exhaustive, so it cannot be built
    // with a literal); all zeroes is a valid value, and the kernel wants unused fields zero.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    // SAFETY: `path` is a NUL-terminated string and `how` a fully initialised `open_how`,
    // both alive for the call; the size passed is that struct's size. The kernel only reads
    // them. A non-negative result is a new descriptor nobody else owns.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nothing else. It fits an
    // i32: descriptors are ints in the kernel's ABI.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `openat(2)`: opens `path` relative to `dir` with `flags` (`O_CLOEXEC` is always added;
/// no `O_CREAT`, so no mode).
pub fn openat(dir: BorrowedFd<'_>, path: &CStr, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: `path` is NUL-terminated and alive for the call; without O_CREAT no mode
    // argument is read. A non-negative result is a new descriptor nobody else owns.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above, `fd` is fresh and ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `readlinkat(2)`: the target of the symlink `path` relative to `dir` (an empty `path`
/// reads the symlink `dir` itself refers to, opened with `O_PATH | O_NOFOLLOW`). EINVAL if
/// it is not a symlink.
pub fn readlinkat(dir: BorrowedFd<'_>, path: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `path` is NUL-terminated; `buf` is a writable buffer of exactly `buf.len()`
    // bytes, and readlinkat writes at most that many.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            path.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    if n >= buf.len() {
        // The target may have been cut short: refuse rather than follow a prefix of it.
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    buf.truncate(n);
    Ok(buf)
}

/// What `fstatat` says about a directory entry, the fields a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    pub size: u64,
    pub modified: Option<SystemTime>,
}

/// The type of a file, from `st_mode` or a directory entry's `d_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// FIFO, socket, device.
    Other,
    /// `DT_UNKNOWN`: the filesystem does not say in `readdir`; ask `fstatat`.
    Unknown,
}

/// `fstatat(2)` with `AT_SYMLINK_NOFOLLOW`: a symlink is described, not followed.
pub fn fstatat_nofollow(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated; `st` points to writable memory the size of a
    // `struct stat`, which fstatat fills in completely on success.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat returned 0, so it initialised the whole struct.
    let st = unsafe { st.assume_init() };
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => Kind::File,
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Symlink,
        _ => Kind::Other,
    };
    // Times before 1970 are negative seconds (with non-negative nanoseconds): they are real
    // mtimes too, shown clamped where they are rendered.
    let nanos = Duration::from_nanos(st.st_mtime_nsec.clamp(0, 999_999_999) as u64);
    let modified = match u64::try_from(st.st_mtime) {
        Ok(secs) => UNIX_EPOCH.checked_add(Duration::from_secs(secs) + nanos),
        Err(_) => UNIX_EPOCH
            .checked_sub(Duration::from_secs(st.st_mtime.unsigned_abs()))
            .and_then(|time| time.checked_add(nanos)),
    };
    Ok(Stat {
        kind,
        size: u64::try_from(st.st_size).unwrap_or(0),
        modified,
    })
}

/// One entry of a directory stream: its name (never `.` or `..`) and `d_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub kind: Kind,
}

/// A directory read through a descriptor (`fdopendir(3)` on a duplicate, `readdir(3)`), so
/// the directory read is the one that was opened, not whatever its name means now.
pub struct DirStream {
    dir: NonNull<libc::DIR>,
    done: bool,
}

impl DirStream {
    /// Reads the directory open as `dir` (opened for reading, not `O_PATH`). The stream has
    /// its own duplicate descriptor; it shares the file offset with `dir`, so `dir` should
    /// be freshly opened.
    pub fn new(dir: BorrowedFd<'_>) -> io::Result<DirStream> {
        let raw = dir.try_clone_to_owned()?.into_raw_fd();
        // SAFETY: `raw` is a valid descriptor we own; on success fdopendir takes it over
        // (closedir in Drop closes it).
        let stream = unsafe { libc::fdopendir(raw) };
        match NonNull::new(stream) {
            Some(dir) => Ok(DirStream { dir, done: false }),
            None => {
                let err = io::Error::last_os_error();
                // SAFETY: fdopendir failed, so `raw` is still ours alone: close it.
                drop(unsafe { OwnedFd::from_raw_fd(raw) });
                Err(err)
            }
        }
    }
}

impl Iterator for DirStream {
    type Item = io::Result<DirEntry>;

    fn next(&mut self) -> Option<io::Result<DirEntry>> {
        while !self.done {
            // readdir reports an error only through errno, leaving it alone at the end of the
            // stream: clear it first to tell the two apart (readdir(3)).
            // SAFETY: __errno_location returns this thread's errno, valid to write.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: `self.dir` is an open stream owned by this value, used by one thread.
            let entry = unsafe { libc::readdir(self.dir.as_ptr()) };
            let Some(entry) = NonNull::new(entry) else {
                self.done = true;
                let err = io::Error::last_os_error();
                return (err.raw_os_error() != Some(0)).then_some(Err(err));
            };
            // SAFETY: readdir returned a valid dirent that stays valid until the next call on
            // this stream; its d_name is NUL-terminated. Both are copied out at once.
            let (name, d_type) = unsafe {
                let entry = entry.as_ref();
                (
                    CStr::from_ptr(entry.d_name.as_ptr()).to_bytes().to_vec(),
                    entry.d_type,
                )
            };
            if name == b"." || name == b".." {
                continue;
            }
            let kind = match d_type {
                libc::DT_REG => Kind::File,
                libc::DT_DIR => Kind::Dir,
                libc::DT_LNK => Kind::Symlink,
                libc::DT_UNKNOWN => Kind::Unknown,
                _ => Kind::Other,
            };
            return Some(Ok(DirEntry { name, kind }));
        }
        None
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: the stream is open and owned by this value; it is closed exactly once,
        // here, which also closes its descriptor.
        unsafe { libc::closedir(self.dir.as_ptr()) };
    }
}

// --- sockets ---

/// Accepts a connection from `listener` as a non-blocking, close-on-exec socket, in one
/// `accept4` (no `fcntl` after it). It inherits the listener's `TCP_NODELAY`.
pub fn accept_nonblocking(
    listener: &std::net::TcpListener,
) -> io::Result<(std::net::TcpStream, std::net::SocketAddr)> {
    use rustix::net::{acceptfrom_with, SocketFlags};
    let (fd, peer) = acceptfrom_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)?;
    let stream = std::net::TcpStream::from(fd);
    let peer = match peer.map(std::net::SocketAddr::try_from) {
        Some(Ok(peer)) => peer,
        _ => stream.peer_addr()?,
    };
    Ok((stream, peer))
}

/// How much [`recv_nonblocking`] reads at a time.
const READ_CHUNK: usize = 16 * 1024;

/// One read of what has arrived on `socket` into the spare capacity of `buf` (grown by up to
/// [`READ_CHUNK`] first), never waiting: `MSG_DONTWAIT` gives `WouldBlock` when nothing has.
pub fn recv_nonblocking(socket: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.reserve(READ_CHUNK);
    let spare = buf.spare_capacity_mut();
    // SAFETY: recv writes at most `spare.len()` bytes into the spare capacity, which is
    // valid, writable memory owned by `buf` for the call.
    let n = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            spare.as_mut_ptr().cast(),
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised the first `n` spare bytes (n <= spare.len()).
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// The most one sendfile(2) call moves (the kernel's own cap, just under 2 GiB).
const SENDFILE_MAX: u64 = 0x7fff_f000;

/// Sends up to `len` bytes of `file` from `offset` to `socket` with one sendfile(2) call:
/// page cache to socket, never through user space, at any 64-bit offset and without moving
/// the file position. On a non-blocking socket this returns `WouldBlock` when it is full and
/// a short count when it takes only part; `Ok(0)` means the file ended early.
///
/// Called directly because `std::io::copy` deliberately does not use sendfile from a regular
/// file to a socket (std's `kernel_copy.rs`, `safe_kernel_copy`: a file changed mid-send
/// could show through). A static server accepts that, as nginx does.
pub fn sendfile(
    socket: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: u64,
    len: u64,
) -> io::Result<u64> {
    let chunk = len.min(SENDFILE_MAX) as usize;
    let mut position = libc::off64_t::try_from(offset)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: both descriptors are borrowed, so open for the duration of the call, and
    // `position` is a valid, exclusively borrowed off64_t.
    let n = unsafe { libc::sendfile64(socket.as_raw_fd(), file.as_raw_fd(), &mut position, chunk) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as u64)
}

/// Bytes that have arrived on `socket` and wait to be read (`FIONREAD`); 0 if the kernel
/// will not say.
pub fn unread_bytes(socket: BorrowedFd<'_>) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points at a local of that
    // type; the descriptor is borrowed, so open.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc == 0 {
        usize::try_from(n).unwrap_or(0)
    } else {
        0
    }
}

/// Bytes in `socket`'s send queue that the peer has not acknowledged yet (`SIOCOUTQ`,
/// tcp(7)); `None` if the kernel will not say.
pub fn unsent_bytes(socket: BorrowedFd<'_>) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one c_int through the pointer, which points at a
    // local of that type; the descriptor is borrowed, so open.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if rc == 0 {
        usize::try_from(n).ok()
    } else {
        None
    }
}

/// setsockopt(2) for an int-valued option, such as `TCP_DEFER_ACCEPT` and `SO_INCOMING_CPU`,
/// which socket2 has no setters for.
pub fn set_int_option(
    socket: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the descriptor is borrowed, so open; the pointer is to a local c_int, alive for
    // the call, and the length passed is that type's size. The kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// mkfifo(3), for tests that need a file that is neither regular nor a directory.
#[cfg(test)]
pub fn mkfifo(path: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated and alive for the call; the kernel only reads it.
    if unsafe { libc::mkfifo(path.as_ptr(), mode) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// pipe2(2) with `O_CLOEXEC`: (read end, write end), for tests of writers to a pipe.
#[cfg(test)]
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: `fds` is an array of two ints, alive for the call, which the kernel fills.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success both are new descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::fd::AsFd;

    #[test]
    fn wrappers_report_errors_and_read_directories() {
        let dir = std::env::temp_dir().join(format!("httpd-sys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.txt"), "abc").unwrap();
        std::os::unix::fs::symlink("a.txt", dir.join("link")).unwrap();
        let root = File::open(&dir).unwrap();

        let link = readlinkat(root.as_fd(), c"link").unwrap();
        assert_eq!(link, b"a.txt");
        let not_link = readlinkat(root.as_fd(), c"a.txt").unwrap_err();
        assert_eq!(not_link.raw_os_error(), Some(libc::EINVAL));

        let stat = fstatat_nofollow(root.as_fd(), c"a.txt").unwrap();
        assert_eq!((stat.kind, stat.size), (Kind::File, 3));
        assert!(stat.modified.is_some());
        assert_eq!(
            fstatat_nofollow(root.as_fd(), c"link").unwrap().kind,
            Kind::Symlink
        );
        assert_eq!(
            openat(root.as_fd(), c"missing", libc::O_RDONLY)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENOENT)
        );
        assert!(openat(root.as_fd(), c"a.txt", libc::O_RDONLY).is_ok());

        let mut names: Vec<(Vec<u8>, Kind)> = DirStream::new(root.as_fd())
            .unwrap()
            .map(|entry| entry.map(|e| (e.name, e.kind)))
            .collect::<io::Result<_>>()
            .unwrap();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let kinds: Vec<Kind> = names.iter().map(|(_, k)| *k).collect();
        let names: Vec<&[u8]> = names.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(names, [&b"a.txt"[..], b"link", b"sub"]);
        // Some filesystems answer DT_UNKNOWN; the rest must be right.
        for (kind, expected) in kinds
            .into_iter()
            .zip([Kind::File, Kind::Symlink, Kind::Dir])
        {
            assert!(kind == expected || kind == Kind::Unknown, "{kind:?}");
        }
        // A regular file is not a directory stream.
        let file = File::open(dir.join("a.txt")).unwrap();
        assert!(DirStream::new(file.as_fd()).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
