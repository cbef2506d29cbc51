//! Resident set sizes on Windows: a process's working set. Freed heap needs no help to go
//! back: the Windows heap decommits free pages itself.

use std::os::windows::io::{FromRawHandle, OwnedHandle};

use windows_sys::Win32::{
    Foundation::HANDLE,
    System::{
        ProcessStatus::{K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS},
        Threading::{
            GetCurrentProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_VM_READ,
        },
    },
};

/// This process's working set in bytes.
pub(crate) fn own_rss() -> Option<u64> {
    // SAFETY: the pseudo-handle of this process needs no closing.
    #[allow(unsafe_code)]
    working_set(unsafe { GetCurrentProcess() })
}

/// The working set of process `pid` in bytes; `None` when it is gone or not readable.
pub(crate) fn rss_of(pid: u32) -> Option<u64> {
    // SAFETY: OpenProcess returns a handle this function owns (closed on drop) or null.
    #[allow(unsafe_code)]
    let process = unsafe {
        let handle = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_VM_READ, 0, pid);
        if handle.is_null() {
            return None;
        }
        OwnedHandle::from_raw_handle(handle)
    };
    use std::os::windows::io::AsRawHandle;
    working_set(process.as_raw_handle())
}

fn working_set(process: HANDLE) -> Option<u64> {
    let size = u32::try_from(std::mem::size_of::<PROCESS_MEMORY_COUNTERS>()).ok()?;
    // SAFETY: the handle is open for the call; the counters are written by it only.
    #[allow(unsafe_code)]
    unsafe {
        let mut counters: PROCESS_MEMORY_COUNTERS = std::mem::zeroed();
        counters.cb = size;
        if K32GetProcessMemoryInfo(process, &raw mut counters, size) == 0 {
            return None;
        }
        Some(counters.WorkingSetSize as u64)
    }
}

/// Nothing to do: the Windows heap gives free pages back to the system by itself.
pub(crate) fn release_free_memory() {}

/// Nothing to set: the Windows heap keeps freed blocks for reuse by itself.
pub(crate) fn keep_freed_memory(bytes: usize) {
    let _ = bytes;
}

/// CPU time this thread has used, in nanoseconds (user and kernel).
#[allow(unsafe_code)]
pub(crate) fn thread_cpu_nanos() -> u64 {
    use windows_sys::Win32::System::Threading::GetCurrentThread;
    // SAFETY: GetCurrentThread returns this thread's pseudo-handle; it has no
    // preconditions.
    let this = unsafe { GetCurrentThread() };
    thread_times(this).unwrap_or(0)
}

/// The user and kernel time of thread `handle`, in nanoseconds.
#[allow(unsafe_code)]
fn thread_times(handle: windows_sys::Win32::Foundation::HANDLE) -> Option<u64> {
    use windows_sys::Win32::{Foundation::FILETIME, System::Threading::GetThreadTimes};
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: a thread handle open for the call (or this thread's pseudo-handle) and four
    // FILETIMEs to fill.
    let ok = unsafe { GetThreadTimes(handle, &mut created, &mut exited, &mut kernel, &mut user) };
    if ok == 0 {
        return None;
    }
    let ticks = |t: FILETIME| (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime);
    // FILETIME counts 100 ns ticks.
    Some((ticks(kernel) + ticks(user)) * 100)
}

/// The CPU clock of one thread, readable from any thread of the process (a CPU budget's
/// watcher reads a call's thread as it runs): a real handle to it, closed on drop.
#[derive(Debug)]
pub(crate) struct ThreadClock(windows_sys::Win32::Foundation::HANDLE);

// SAFETY: a thread handle may be used and closed from any thread.
#[allow(unsafe_code)]
unsafe impl Send for ThreadClock {}
// SAFETY: GetThreadTimes on a shared handle is safe from several threads at once.
#[allow(unsafe_code)]
unsafe impl Sync for ThreadClock {}

impl ThreadClock {
    /// The clock of the calling thread; `None` if no handle to it could be opened.
    #[allow(unsafe_code)]
    pub(crate) fn current() -> Option<Self> {
        use windows_sys::Win32::System::Threading::{
            GetCurrentThreadId, OpenThread, THREAD_QUERY_LIMITED_INFORMATION,
        };
        // SAFETY: opens this thread by its id; a null handle is a refusal.
        let handle =
            unsafe { OpenThread(THREAD_QUERY_LIMITED_INFORMATION, 0, GetCurrentThreadId()) };
        (!handle.is_null()).then_some(Self(handle))
    }

    /// The CPU time the thread has used, in nanoseconds.
    pub(crate) fn nanos(&self) -> Option<u64> {
        thread_times(self.0)
    }
}

impl Drop for ThreadClock {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the handle OpenThread gave, closed once.
        unsafe {
            windows_sys::Win32::Foundation::CloseHandle(self.0);
        }
    }
}

/// The resident set of a process and of the processes below it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TreeRss {
    /// Their working sets, summed, in bytes.
    pub(crate) bytes: u64,
    /// How many processes were read.
    pub(crate) processes: usize,
}

/// The working set of process `pid`: the programs it started are not counted here.
pub(crate) fn rss_of_tree(pid: u32) -> Option<TreeRss> {
    rss_of(pid).map(|bytes| TreeRss {
        bytes,
        processes: 1,
    })
}
