//! Resident set sizes on Unix: one small read of `/proc/PID/statm` (Linux); `None` where
//! there is no `/proc`. Giving freed heap back to the kernel (glibc).

/// This process's resident set size in bytes.
pub(crate) fn own_rss() -> Option<u64> {
    statm_rss("/proc/self/statm")
}

/// The resident set size of process `pid` in bytes (cheap enough for a sampler running
/// many times a second); `None` when the process is gone or there is no `/proc`.
pub(crate) fn rss_of(pid: u32) -> Option<u64> {
    statm_rss(&format!("/proc/{pid}/statm"))
}

/// The most processes [`rss_of_tree`] counts (a tree larger than this is counted that
/// far): above a worker's default ceiling of tasks (`[limits] worker_tasks`), so that only
/// a worker allowed more could hide memory in processes past it. Its watcher reads a
/// large tree less often ([`TreeRss::processes`]), so a plugin that starts many programs
/// does not make the reads cost the host a core.
#[cfg(target_os = "linux")]
const MOST_IN_TREE: usize = 4096;

/// The resident set of a process and of the processes below it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TreeRss {
    /// Their resident set sizes, summed, in bytes.
    pub(crate) bytes: u64,
    /// How many processes were read.
    pub(crate) processes: usize,
}

/// The resident set size of process `pid` and of every process below it, in bytes: on
/// Linux, through each thread's `children` list; elsewhere, the process's own. When `pid`
/// is the child of its own PID namespace's init (a contained worker), the init's other
/// children count too: a program the worker's children left behind is adopted by that
/// init, and its memory is still the worker's.
pub(crate) fn rss_of_tree(pid: u32) -> Option<TreeRss> {
    let own = rss_of(pid)?;
    #[cfg(target_os = "linux")]
    {
        let mut total = own;
        let mut todo = children_of(pid);
        if let Some(init) = namespace_init_above(pid) {
            todo.extend(children_of(init).into_iter().filter(|child| *child != pid));
        }
        let mut counted = 1;
        while let Some(child) = todo.pop() {
            if counted >= MOST_IN_TREE {
                break;
            }
            counted += 1;
            total = total.saturating_add(rss_of(child).unwrap_or(0));
            todo.extend(children_of(child));
        }
        Some(TreeRss {
            bytes: total,
            processes: counted,
        })
    }
    #[cfg(not(target_os = "linux"))]
    Some(TreeRss {
        bytes: own,
        processes: 1,
    })
}

/// The parent of process `pid` when that parent is the init of a PID namespace nested in
/// this process's (its `NSpid` ends in 1 after at least one outer id), and not this
/// process itself (a host that is its container's init, its worker beside it).
#[cfg(target_os = "linux")]
fn namespace_init_above(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: the name may hold spaces and parentheses.
    let parent: u32 = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    if parent == super::contain::pid_for_host() {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{parent}/status")).ok()?;
    let ids: Vec<&str> = status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))?
        .split_whitespace()
        .collect();
    (ids.len() >= 2 && ids.last() == Some(&"1")).then_some(parent)
}

/// The children of process `pid` (of each of its threads), as `/proc` lists them.
#[cfg(target_os = "linux")]
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|child| child.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The resident pages (second field) of a `statm` file, in bytes.
fn statm_rss(path: &str) -> Option<u64> {
    let statm = std::fs::read_to_string(path).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(page_size()))
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    #[allow(unsafe_code)]
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}

/// Asks glibc to give free heap pages back to the kernel (`malloc_trim(0)`), so that RSS
/// really drops after an eviction. Plugins share the host's malloc, so their freed memory
/// is covered too. A no-op with other C libraries.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists under its own locks;
    // it has no preconditions and touches no memory the caller owns.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Has the allocator keep freed blocks of up to `bytes` for the next allocation rather
/// than give their pages back at once: a process that handles payloads of up to that size
/// one after another (a worker) then touches no new page per payload, which on a
/// virtual machine costs more than copying it. Its resident size may stay up to about
/// twice `bytes` above what it uses.
pub(crate) fn keep_freed_memory(bytes: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets the allocator's own thresholds; no preconditions.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
            libc::mallopt(libc::M_TRIM_THRESHOLD, bytes.saturating_mul(2));
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}

/// CPU time this thread has used, in nanoseconds (user and system).
#[allow(unsafe_code)]
pub(crate) fn thread_cpu_nanos() -> u64 {
    let mut now = std::mem::MaybeUninit::<libc::timespec>::uninit();
    // SAFETY: a valid clock id and a buffer clock_gettime fills on success.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, now.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: clock_gettime returned 0, so it filled the buffer.
    let now = unsafe { now.assume_init() };
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

/// The CPU clock of one thread, readable from any thread of the process while that thread
/// lives (a CPU budget's watcher reads a call's thread as it runs).
#[derive(Debug)]
pub(crate) struct ThreadClock(libc::clockid_t);

impl ThreadClock {
    /// The clock of the calling thread; `None` where the system has no such clock.
    #[allow(unsafe_code)]
    pub(crate) fn current() -> Option<Self> {
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
        {
            let mut clock: libc::clockid_t = 0;
            // SAFETY: this thread's own handle, and a clock id the call fills on success.
            let status =
                unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &raw mut clock) };
            (status == 0).then_some(Self(clock))
        }
        #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
        {
            None
        }
    }

    /// The CPU time the thread has used, in nanoseconds; `None` once it has ended.
    #[allow(unsafe_code)]
    pub(crate) fn nanos(&self) -> Option<u64> {
        let mut now = std::mem::MaybeUninit::<libc::timespec>::uninit();
        // SAFETY: a clock id pthread_getcpuclockid gave (an ended thread's is refused with
        // EINVAL), and a buffer clock_gettime fills on success.
        if unsafe { libc::clock_gettime(self.0, now.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: clock_gettime returned 0, so it filled the buffer.
        let now = unsafe { now.assume_init() };
        Some(u64::try_from(now.tv_sec).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec).ok()?)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// Every process below counts, past the 64 an earlier version stopped at (where a
    /// plugin could spread memory over more processes than were read).
    #[test]
    fn a_tree_of_more_than_64_processes_is_read_whole() {
        let mut children: Vec<std::process::Child> = (0..80)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("60")
                    .spawn()
                    .expect("sleep")
            })
            .collect();
        let tree = super::rss_of_tree(std::process::id()).expect("this process");
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(tree.processes > 80, "{tree:?}");
        assert!(tree.bytes > super::own_rss().unwrap_or(0), "{tree:?}");
    }
}
