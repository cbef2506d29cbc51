//! Reads resident set sizes: this process's and worker processes' as the platform layer
//! gives them (`/proc/PID/statm` on Linux, the process's working set on Windows), else
//! with sysinfo refreshing only this one pid.

use parking_lot::Mutex;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// Reads RSS. A read costs tens of microseconds (it parses `/proc/self/stat*`), so it is
/// done at admission and by the sampler, never on the call path.
pub struct RssReader {
    system: Mutex<Option<System>>,
    pid: Option<Pid>,
}

impl std::fmt::Debug for RssReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RssReader").field("pid", &self.pid).finish()
    }
}

impl Default for RssReader {
    fn default() -> Self {
        Self::new()
    }
}

impl RssReader {
    /// A reader for the current process. Where the platform gives no reading, says so
    /// in the log once: admission then sees an RSS of 0 and enforces estimates only.
    pub fn new() -> Self {
        let system = System::new()
            .map_err(|err| {
                tracing::error!(error = %err, "cannot read this process's RSS; memory admission falls back to declared estimates");
            })
            .ok();
        let pid = sysinfo::get_current_pid()
            .map_err(|err| {
                tracing::error!(error = %err, "cannot find this process's pid; memory admission falls back to declared estimates");
            })
            .ok();
        Self {
            system: Mutex::new(system),
            pid,
        }
    }

    /// The current RSS in bytes; 0 where the platform gives no reading. On Linux one small
    /// read of `/proc/self/statm` (a few microseconds, cheap enough to run around every
    /// initialisation); elsewhere sysinfo's refresh of this one process.
    pub fn read(&self) -> u64 {
        if let Some(rss) = crate::platform::own_rss() {
            return rss;
        }
        let (Some(pid), mut guard) = (self.pid, self.system.lock()) else {
            return 0;
        };
        let Some(system) = guard.as_mut() else {
            return 0;
        };
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            false,
            ProcessRefreshKind::nothing().with_memory(),
        );
        system.process(pid).map_or(0, sysinfo::Process::memory)
    }

    /// Physical memory of the machine in bytes; 0 if unknown.
    pub fn total_memory(&self) -> u64 {
        let mut guard = self.system.lock();
        let Some(system) = guard.as_mut() else {
            return 0;
        };
        system.refresh_memory();
        system.total_memory()
    }
}

/// The resident set size of worker process `pid` in bytes, with the programs it started
/// (on Linux: its descendants'; cheap enough for a sampler running many times a second);
/// `None` when the process is gone or the platform cannot say.
pub(crate) fn rss_of(pid: u32) -> Option<u64> {
    crate::platform::rss_of_tree(pid).map(|tree| tree.bytes)
}
