//! Process-wide facts and limits: CPUs configured, the open-file limit, a coarse clock.
//! May use: libc, std.

/// CPUs the kernel may process packets on (configured, not just the ones we may run on);
/// `None` if it will not say.
pub fn cpus_configured() -> Option<usize> {
    // SAFETY: sysconf only reads a system value; it has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

/// Raises the soft open-file limit (`RLIMIT_NOFILE`) to its hard maximum, as far as the
/// kernel allows, and returns the soft limit now in force (0 if the kernel will not say;
/// `u64::MAX` for unlimited).
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer to a local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit through a valid pointer to a local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    limit.rlim_cur
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: the time of the last timer tick (a few
/// milliseconds' resolution), read without asking the hardware, so several times cheaper
/// than `Instant::now()`. For timestamps shown to a person, never for deadlines.
pub fn coarse_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer to a local; a failure
    // leaves it zero.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_limits() {
        assert!(cpus_configured().is_some_and(|n| n >= 1));
        let limit = raise_open_file_limit();
        assert!(limit > 0);
        assert_eq!(
            raise_open_file_limit(),
            limit,
            "already at the hard maximum"
        );
    }
}
