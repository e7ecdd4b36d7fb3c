//! What this machine has to give: facts about the host a job sizes itself by.

/// `MemAvailable` of /proc/meminfo, in bytes (`None` where there is none).
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// How much lower than its spawner a [`background`] thread runs (nice steps).
pub const BACKGROUND_NICE: i32 = 10;

/// Run the calling thread at a lower CPU priority ([`BACKGROUND_NICE`] steps nicer, at
/// most 19): for bulk work (compression, hashing walks) that can take the time the
/// member leaves idle. A backup often shares a host with the member it streams from,
/// and that member needs about a core and a half to send a snapshot; work at the same
/// priority slows its sending (and its clients) more than it gains. The thread that
/// receives the stream keeps its priority, so flow control never waits on a nice thread
/// for long. Linux only (elsewhere the call would renice the whole process); failures are
/// ignored: priority is an optimisation, never a reason to fail.
pub fn background() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        // On Linux, "process" 0 is the calling thread.
        let now = getpriority_process(None).unwrap_or(0);
        let _ = setpriority_process(None, (now + BACKGROUND_NICE).min(19));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn a_background_thread_is_nicer_and_its_spawner_is_not() {
        use rustix::process::getpriority_process;
        let before = getpriority_process(None).unwrap();
        let inside = std::thread::spawn(|| {
            let was = getpriority_process(None).unwrap();
            super::background();
            (was, getpriority_process(None).unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(inside.1, (inside.0 + super::BACKGROUND_NICE).min(19));
        assert_eq!(getpriority_process(None).unwrap(), before);
    }
}
