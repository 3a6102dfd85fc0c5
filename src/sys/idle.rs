//! A long-lived waiter's memory: the heap's free pages and the code its setup ran go back to the
//! kernel right before it blocks, through system calls made in line (per architecture).
#![allow(unsafe_code)]

/// Returns the heap's free pages to the kernel (`malloc_trim(3)`): glibc otherwise keeps what a
/// long-lived waiter freed after its setup.
pub fn release_free_heap() {
    // SAFETY: malloc_trim only releases memory the allocator holds free; no pointer changes.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Drops the page-table entries of the file mappings `ranges` and then blocks in `poll(2)`:
/// the release is the last thing before the wait, so what faults back before the process sleeps
/// is this function's code and libc's `syscall`, not everything its caller ran. A long-lived
/// waiter's resident set is then its data, and the code it runs again after waking.
#[inline(never)]
pub fn release_then_poll(
    ranges: &[(usize, usize)],
    fds: &mut [nix::poll::PollFd],
    timeout: nix::poll::PollTimeout,
) -> nix::Result<i32> {
    for &(addr, len) in ranges {
        // SAFETY: each range is a whole mapping listed in /proc/self/smaps just before, backed by
        // a file, not writable and without anonymous (copy-on-write) pages: its content is the
        // file's, so MADV_DONTNEED only discards page-table entries and the next access faults
        // the same bytes back from the page cache. The memory stays mapped and unchanged, so no
        // Rust reference is invalidated. Errors only leave pages resident.
        unsafe {
            raw_syscall5(libc::SYS_madvise, [addr, len, libc::MADV_DONTNEED as usize, 0, 0]);
        }
    }
    let ms = i32::from(timeout);
    let mut ts =
        libc::timespec { tv_sec: (ms / 1000) as libc::time_t, tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long };
    // The raw ppoll writes the time left back into the timespec.
    let tsp: *mut libc::timespec = if ms < 0 { std::ptr::null_mut() } else { &mut ts };
    // SAFETY: nix's PollFd is `repr(transparent)` over `libc::pollfd` (nix's own `poll` passes
    // the slice the same way); the slice and `ts` outlive the call; no signal mask is passed.
    let r = unsafe { raw_syscall5(libc::SYS_ppoll, [fds.as_mut_ptr() as usize, fds.len(), tsp as usize, 0, 8]) };
    match r {
        r if r < 0 => Err(nix::errno::Errno::from_raw(-r as i32)),
        r => Ok(r as i32),
    }
}

/// A system call made in line, without libc's `syscall` wrapper (whose page would come back
/// right after [`release_then_poll`] released it): the raw kernel result, `-errno` on failure.
///
/// # Safety
/// The caller upholds the system call's own contract for `nr` and `args`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn raw_syscall5(nr: libc::c_long, args: [usize; 5]) -> isize {
    let ret: isize;
    // SAFETY: the x86-64 system call convention: number in rax, arguments in rdi, rsi, rdx,
    // r10, r8; the kernel clobbers rcx and r11 and returns in rax. No stack is used.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") args[0], in("rsi") args[1], in("rdx") args[2], in("r10") args[3], in("r8") args[4],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// See the x86-64 version.
///
/// # Safety
/// The caller upholds the system call's own contract for `nr` and `args`.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn raw_syscall5(nr: libc::c_long, args: [usize; 5]) -> isize {
    let ret: isize;
    // SAFETY: the arm64 system call convention: number in x8, arguments in x0..x4, result in x0.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") args[0] as isize => ret,
            in("x1") args[1], in("x2") args[2], in("x3") args[3], in("x4") args[4],
            options(nostack),
        );
    }
    ret
}

/// Elsewhere, libc's wrapper (its page may stay resident).
///
/// # Safety
/// The caller upholds the system call's own contract for `nr` and `args`.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn raw_syscall5(nr: libc::c_long, args: [usize; 5]) -> isize {
    // SAFETY: as the caller's contract.
    let r = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4]) };
    match r {
        -1 => -(nix::errno::Errno::last_raw() as isize),
        r => r as isize,
    }
}
