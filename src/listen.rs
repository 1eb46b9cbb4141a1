//! Listening sockets: their options, one `SO_REUSEPORT` listener per CPU, and the
//! `SO_INCOMING_CPU` marks a stopping server clears to hand new connections to its successor;
//! or the sockets systemd handed over (socket activation).
//! May use: config, sys, listenfd, socket2.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, Type};

use crate::config::Dispatch;
use crate::sys;

/// The listen backlog (the kernel caps it at net.core.somaxconn).
const BACKLOG: i32 = 1024;
/// At most this many listeners (one per CPU).
const MAX_LISTENERS: usize = 64;

/// Listens on `addr` with `SO_REUSEPORT`, so a new httpd can start on the port of a running
/// one: start the new one, then SIGTERM the old (another program's listener, without the
/// option or of another user, still makes this fail).
///
/// One listener per CPU, each marked with `SO_INCOMING_CPU`: Linux (6.3+) hands a new
/// connection to a listener marked with the CPU it arrived on. On stop, the old httpd clears
/// its marks ([`unmark`]), so from that instant the kernel prefers the new one's listeners,
/// and the old one can empty its queues and close without resetting anyone (see
/// `accept::Acceptor::run`).
pub fn listen(
    addr: SocketAddr,
    dispatch: Dispatch,
    idle: Duration,
) -> io::Result<Vec<TcpListener>> {
    // Looked at before our bind, said only after it worked: a port another program holds
    // (without SO_REUSEPORT, or as another user) makes the bind fail, and the one error
    // about that is the caller's.
    let shared = addr.port() != 0 && port_has_listener(addr);
    let first = listen_one(addr, dispatch, idle)?;
    if shared {
        log::warn!("another listener holds {addr}: sharing the port with it (SO_REUSEPORT)");
    }
    let addr = first.local_addr()?;
    let marked = set_incoming_cpu(&first, 0).is_ok();
    let mut listeners = vec![first];
    if marked {
        let cpus = sys::cpus_configured().unwrap_or(1).clamp(1, MAX_LISTENERS);
        for cpu in 1..cpus {
            let listener = listen_one(addr, dispatch, idle)?;
            set_incoming_cpu(&listener, cpu as libc::c_int)?;
            listeners.push(listener);
        }
    } else {
        log::debug!(
            "SO_INCOMING_CPU unsupported: one listener; restarts may reset a few connections"
        );
    }
    Ok(listeners)
}

/// The listening sockets systemd (or `systemd-socket-activate`) handed this process, if it
/// was started by socket activation: `LISTEN_FDS` is set and `LISTEN_PID` is ours (listenfd
/// also takes a missing `LISTEN_PID`, as `systemfd --no-pid` sends). listenfd removes both
/// variables, so nothing this process starts inherits them; as it changes the environment,
/// call this before starting any thread.
///
/// Each socket is served as it is: its address, backlog, `SO_REUSEPORT` and IPv6-only
/// setting are the socket unit's (`ListenStream=`, `Backlog=`, `ReusePort=`,
/// `BindIPv6Only=`). Only what can change on a socket already listening is set here: it is
/// made non-blocking, and `--dispatch defer` sets `TCP_DEFER_ACCEPT`. No `SO_INCOMING_CPU`
/// marks: one socket per address, shared with systemd, which keeps it open across restarts
/// (so a restart drops nothing either). Anything but a listening TCP socket is an error that
/// names the descriptor.
pub fn inherited(dispatch: Dispatch, idle: Duration) -> io::Result<Option<Vec<TcpListener>>> {
    let mut handed = listenfd::ListenFd::from_env();
    if handed.len() == 0 {
        return Ok(None);
    }
    let unusable = |err: io::Error| {
        io::Error::new(
            err.kind(),
            format!(
                "socket activation: {err}: httpd serves only listening TCP sockets (ListenStream=)"
            ),
        )
    };
    let mut listeners = Vec::with_capacity(handed.len());
    for index in 0..handed.len() {
        let listener = handed
            .take_tcp_listener(index)
            .map_err(unusable)?
            .ok_or_else(|| unusable(io::Error::other(format!("socket {index} already taken"))))?;
        if !SockRef::from(&listener).is_listener()? {
            return Err(unusable(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "fd {} is a TCP socket that is not listening",
                    listener.as_fd().as_raw_fd()
                ),
            )));
        }
        listener.set_nonblocking(true)?;
        // Accepted sockets inherit it: no setsockopt per connection.
        SockRef::from(&listener).set_nodelay(true)?;
        if dispatch == Dispatch::Defer {
            defer_accept(listener.as_fd(), idle)?;
        }
        listeners.push(listener);
    }
    Ok(Some(listeners))
}

/// Stops `listener` being the kernel's first choice for any CPU's connections.
pub fn unmark(listener: &TcpListener) -> io::Result<()> {
    set_incoming_cpu(listener, -1)
}

fn listen_one(addr: SocketAddr, dispatch: Dispatch, idle: Duration) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Restarts must not wait for TIME_WAIT to clear.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    if dispatch == Dispatch::Defer {
        defer_accept(socket.as_fd(), idle)?;
    }
    // Accepted sockets inherit it: no setsockopt per connection.
    socket.set_nodelay(true)?;
    socket.listen(BACKLOG)?;
    let listener: TcpListener = socket.into();
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// `TCP_DEFER_ACCEPT` (`--dispatch defer`): `accept` completes only once the client has sent
/// data, or after `idle`.
fn defer_accept(socket: BorrowedFd<'_>, idle: Duration) -> io::Result<()> {
    let secs = libc::c_int::try_from(idle.as_secs()).unwrap_or(libc::c_int::MAX);
    sys::set_int_option(socket, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, secs)
}

/// Marks a listener as the kernel's choice for connections arriving on `cpu`; -1 unmarks.
fn set_incoming_cpu(listener: &TcpListener, cpu: libc::c_int) -> io::Result<()> {
    sys::set_int_option(
        listener.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_INCOMING_CPU,
        cpu,
    )
}

/// Whether some socket already listens on `addr`: a bind without `SO_REUSEPORT` fails then.
fn port_has_listener(addr: SocketAddr) -> bool {
    let Ok(probe) = Socket::new(Domain::for_address(addr), Type::STREAM, None) else {
        return false;
    };
    let _ = probe.set_reuse_address(true);
    if addr.is_ipv6() {
        let _ = probe.set_only_v6(true);
    }
    matches!(probe.bind(&addr.into()), Err(err) if err.kind() == io::ErrorKind::AddrInUse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_share_one_address_and_can_be_unmarked() {
        let listeners = listen(
            "127.0.0.1:0".parse().unwrap(),
            Dispatch::Defer,
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(!listeners.is_empty() && listeners.len() <= MAX_LISTENERS);
        let addr = listeners[0].local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        for listener in &listeners {
            assert_eq!(listener.local_addr().unwrap(), addr);
            if listeners.len() > 1 {
                assert!(unmark(listener).is_ok());
            }
        }
        assert!(port_has_listener(addr));
        // A second server may start on the same port (a restart).
        assert!(listen(addr, Dispatch::Direct, Duration::from_secs(5)).is_ok());
    }
}
