//! The rig's clock: `CLOCK_MONOTONIC` in nanoseconds, the same in every process on the machine,
//! so the host's journal, the rig's timeline and the console reader can be laid side by side.

/// Nanoseconds on the system-wide monotonic clock.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
