//! Epoll: [`Set`], the one set every worker waits on (leader/followers) and the accept
//! loop's set of listeners, over `rustix`'s safe epoll and eventfd calls.
//! May use: rustix, std.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags, Timespec};

/// The key of [`Set::wake_one`]'s eventfd.
pub const WAKE: u64 = u64::MAX;
/// The key of [`Set::stop`]'s eventfd.
pub const STOP: u64 = u64::MAX - 1;
/// The first key that is not a connection's: keys below it are the caller's.
pub const RESERVED: u64 = STOP;
/// The most events one [`Set::wait_some`] takes.
pub const BATCH: usize = 16;

/// One epoll set that many threads may wait on at once, one event each (leader/followers).
/// Connections are registered one-shot (`EPOLLONESHOT`): an event disarms its connection, so
/// exactly one waiter gets it, and the owner re-arms it ([`Set::arm`]) when it parks it
/// again. A connection leaves the set when its socket closes (the kernel drops the
/// registration with the last descriptor of the socket; none is ever duplicated here), so
/// no registration outlives its source and a key never names a closed socket's successor.
/// Two eventfds sit in the set too: one edge-triggered, each write of which wakes one
/// waiter (work was queued outside the set), and one level-triggered that, once written,
/// wakes every waiter for good (the set is closing).
pub struct Set {
    epoll: OwnedFd,
    wake: OwnedFd,
    stop: OwnedFd,
}

impl Set {
    pub fn new() -> io::Result<Set> {
        let epoll = epoll::create(CreateFlags::CLOEXEC)?;
        let flags = EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK;
        let wake = eventfd(0, flags)?;
        let stop = eventfd(0, flags)?;
        epoll::add(
            &epoll,
            &wake,
            EventData::new_u64(WAKE),
            EventFlags::IN | EventFlags::ET,
        )?;
        epoll::add(&epoll, &stop, EventData::new_u64(STOP), EventFlags::IN)?;
        Ok(Set { epoll, wake, stop })
    }

    /// Arms `fd` for one event under `key` (below [`RESERVED`]): writable if `write`, else
    /// readable (or hung up). `first` adds it to the set; later parks only modify it.
    pub fn arm(&self, fd: BorrowedFd<'_>, key: u64, write: bool, first: bool) -> io::Result<()> {
        debug_assert!(key < RESERVED);
        let interest = if write {
            EventFlags::OUT
        } else {
            EventFlags::IN | EventFlags::RDHUP
        };
        let flags = interest | EventFlags::ONESHOT;
        let data = EventData::new_u64(key);
        if first {
            epoll::add(&self.epoll, fd, data, flags)?;
        } else {
            epoll::modify(&self.epoll, fd, data, flags)?;
        }
        Ok(())
    }

    /// Waits for events and puts their keys in `keys` (at most [`BATCH`] of them): at once
    /// (none if nothing is ready) unless `block`, in which case until one comes. Returns how
    /// many; an interrupted wait gives none.
    pub fn wait_some(&self, keys: &mut [u64; BATCH], block: bool) -> io::Result<usize> {
        let mut events = [Event {
            flags: EventFlags::empty(),
            data: EventData::new_u64(0),
        }; BATCH];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let timeout = if block { None } else { Some(&now) };
        match epoll::wait(&self.epoll, &mut events, timeout) {
            Ok(n) => {
                for (key, event) in keys.iter_mut().zip(&events[..n]) {
                    *key = event.data.u64();
                }
                Ok(n)
            }
            Err(rustix::io::Errno::INTR) => Ok(0),
            Err(err) => Err(err.into()),
        }
    }

    /// Waits until `timeout` (`None`: until an event comes) for events, and puts their keys
    /// in `keys` (emptied first; at most 64). An interrupted wait gives none.
    pub fn wait(&self, keys: &mut Vec<u64>, timeout: Option<Duration>) -> io::Result<()> {
        keys.clear();
        let mut events = [Event {
            flags: EventFlags::empty(),
            data: EventData::new_u64(0),
        }; 64];
        let timeout = timeout.map(|t| Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        match epoll::wait(&self.epoll, &mut events, timeout.as_ref()) {
            Ok(n) => {
                keys.extend(events[..n].iter().map(|event| event.data.u64()));
                Ok(())
            }
            Err(rustix::io::Errno::INTR) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Wakes one waiter (it gets the key [`WAKE`]).
    pub fn wake_one(&self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    /// Wakes every waiter, now and from now on (they get the key [`STOP`]).
    pub fn stop(&self) {
        let _ = rustix::io::write(&self.stop, &1u64.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one key a wait gives, if any.
    fn one(set: &Set, block: bool) -> Option<u64> {
        let mut keys = [0; BATCH];
        let n = set.wait_some(&mut keys, block).unwrap();
        assert!(n <= 1, "one event at most here: {:?}", &keys[..n]);
        (n == 1).then_some(keys[0])
    }

    #[test]
    fn a_one_shot_event_goes_to_one_waiter_and_needs_rearming() {
        use std::io::Write;
        use std::os::fd::AsFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let set = Set::new().unwrap();
        set.arm(server.as_fd(), 7, false, true).unwrap();
        assert_eq!(one(&set, false), None, "nothing to read yet");
        client.write_all(b"x").unwrap();
        assert_eq!(one(&set, true), Some(7));
        assert_eq!(one(&set, false), None, "disarmed by its event");
        set.arm(server.as_fd(), 8, false, false).unwrap();
        assert_eq!(one(&set, false), Some(8), "re-armed, under its new key");
        set.arm(server.as_fd(), 9, true, false).unwrap();
        assert_eq!(one(&set, false), Some(9), "writable");
        set.wake_one();
        assert_eq!(one(&set, false), Some(WAKE));
        assert_eq!(one(&set, false), None, "a wake is one event");
        set.stop();
        assert_eq!(one(&set, false), Some(STOP));
        assert_eq!(one(&set, false), Some(STOP), "a stop stays");
        // A closed socket leaves the set: only the two eventfds are left to report.
        drop(server);
        set.wake_one();
        let mut keys = [0; BATCH];
        let n = set.wait_some(&mut keys, false).unwrap();
        let mut got = keys[..n].to_vec();
        got.sort_unstable();
        assert_eq!(got, [STOP, WAKE]);
    }
}
