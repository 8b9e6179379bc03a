//! CPU time of the whole process (user + system, every thread), or of a child's. On a shared
//! machine the time other tenants take does not count, where wall-clock time would.

#[allow(dead_code)] // Not every benchmark measures itself.
pub struct Cpu(f64);

#[allow(dead_code)]
impl Cpu {
    pub fn now() -> Cpu {
        // SAFETY: getrusage(2) fills the struct it is given and touches nothing else.
        let usage = unsafe {
            let mut usage = std::mem::zeroed::<libc::rusage>();
            libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            usage
        };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Cpu(secs(usage.ru_utime) + secs(usage.ru_stime))
    }

    pub fn elapsed(&self) -> f64 {
        Cpu::now().0 - self.0
    }
}

/// Waits for child `pid`; returns whether it succeeded, its peak RSS (kB) and CPU seconds.
#[allow(dead_code)] // Not every benchmark runs children.
pub fn wait_with_usage(pid: i32) -> (bool, i64, f64) {
    let mut status = 0;
    // SAFETY: wait4(2) fills the two values it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::wait4(pid, &mut status, 0, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (
        ok,
        usage.ru_maxrss,
        secs(usage.ru_utime) + secs(usage.ru_stime),
    )
}
