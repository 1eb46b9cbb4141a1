//! Epoll registration that cannot outlive its source: the guard for `polling`'s `unsafe`
//! `Poller::add`.
//! May use: polling, std.

use std::io;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd};

/// A source registered in a [`polling::Poller`], which this guard keeps registered no longer
/// than the source is open. It owns the source (or, for a `&TcpListener`, a borrow the
/// borrow checker keeps from outliving the listener) and lets go of it only after deleting
/// it from the set: in [`Registered::into_inner`], or when dropped, so an early return, a
/// `?` or a panic cannot leave a registration behind a closed descriptor. That is the
/// contract `Poller::add` is `unsafe` for (I/O safety): the poller must not be left acting
/// on a descriptor number after its owner has closed it, once that number may be reused by
/// the next `accept` for someone else.
pub struct Registered<S: AsFd, P: Deref<Target = polling::Poller>> {
    /// Both taken out exactly once: by `into_inner` or by `drop`.
    inner: ManuallyDrop<(P, S)>,
}

impl<S: AsFd, P: Deref<Target = polling::Poller>> Registered<S, P> {
    /// Adds `source` to `poller` with `interest` (one-shot, `polling`'s default). On failure
    /// the source is handed back with the error.
    pub fn add(poller: P, source: S, interest: polling::Event) -> Result<Self, (io::Error, S)> {
        // SAFETY: the source moves into the guard returned below, which deletes it from this
        // poller before giving it up (`into_inner`, `Drop`); on failure nothing was added.
        // `get_mut` cannot close it early unless a caller replaces the whole source, which
        // its doc forbids; even then the delete uses the descriptor of the source in hand,
        // never a stale number.
        let added = unsafe { poller.add(source.as_fd().as_raw_fd(), interest) };
        match added {
            Ok(()) => Ok(Registered {
                inner: ManuallyDrop::new((poller, source)),
            }),
            Err(err) => Err((err, source)),
        }
    }

    /// Arms a one-shot registration again, with `interest`.
    pub fn rearm(&self, interest: polling::Event) -> io::Result<()> {
        let (poller, source) = &*self.inner;
        poller.modify(source.as_fd(), interest)
    }

    /// The source, for methods that change its state. Do not replace it (`mem::swap`,
    /// assignment): the old one would close while registered.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner.1
    }

    /// Deletes the registration, then gives the source back.
    pub fn into_inner(self) -> S {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped (ManuallyDrop), so `Drop::drop` will not take
        // `inner` a second time; this is the only take on this path.
        let (poller, source) = unsafe { ManuallyDrop::take(&mut this.inner) };
        let _ = poller.delete(source.as_fd());
        source
    }
}

impl<S: AsFd, P: Deref<Target = polling::Poller>> Deref for Registered<S, P> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.inner.1
    }
}

impl<S: AsFd, P: Deref<Target = polling::Poller>> Drop for Registered<S, P> {
    fn drop(&mut self) {
        // SAFETY: drop runs once, and `into_inner` (the only other take) never lets a value
        // it took from reach here; `inner` is not used after this.
        let (poller, source) = unsafe { ManuallyDrop::take(&mut self.inner) };
        // Deleted before `source` drops (and closes) at the end of this scope.
        let _ = poller.delete(source.as_fd());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_ends_with_its_guard_on_every_path() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let poller = polling::Poller::new().unwrap();
        let event = polling::Event::readable(7);
        let guard = Registered::add(&poller, &listener, event).unwrap();
        assert!(guard.rearm(event).is_ok());
        // Registered twice is refused, and the source comes back with the error.
        let (err, again) = Registered::add(&poller, &listener, event).err().unwrap();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
        drop(guard);
        // Dropping the guard deleted the registration, so adding it again works; so does
        // `into_inner`.
        let guard = Registered::add(&poller, again, event).unwrap();
        let back = guard.into_inner();
        let guard = Registered::add(&poller, back, event).unwrap();
        // An early return (a `?`) drops the guard too.
        let early = |guard: Registered<_, _>| -> io::Result<()> {
            let _guard = guard;
            Err(io::Error::other("early"))
        };
        assert!(early(guard).is_err());
        assert!(Registered::add(&poller, &listener, event).is_ok());
    }
}
