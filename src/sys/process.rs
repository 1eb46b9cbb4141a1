//! Process-wide facts and limits: CPUs configured, the open-file limit.
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
