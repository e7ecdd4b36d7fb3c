//! Keeping a long-running daemon's memory flat under glibc's allocator.
//!
//! Each slot allocates and frees tens of MiB on many threads (compression frames, S3 part
//! buffers, the 1 MiB blocks of read-back), and glibc keeps what was freed: its mmap
//! threshold rises after the first large free (so later large buffers land in per-thread
//! arenas and fragment them), and each thread that allocates may get an arena of its own.
//! RSS then climbs slot after slot. The daemon pins the threshold (large buffers are always
//! mapped and unmapped), caps the arenas, and hands freed memory back after every slot.
//! Other allocators and platforms: nothing to do.

/// Before the first slot: a fixed mmap threshold and few arenas.
pub(super) fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)] // glibc only; see DESIGN.md, "Unsafe code"
    // SAFETY: mallopt only changes allocator parameters; it is called before the daemon
    // starts its threads, with constants glibc documents.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// After a slot: return the free memory of every arena to the system.
pub(super) fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)] // glibc only; see DESIGN.md, "Unsafe code"
    // SAFETY: malloc_trim is thread-safe and only releases memory that is free.
    unsafe {
        libc::malloc_trim(0);
    }
}
