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

/// CPU time this thread has used, in nanoseconds (user and kernel).
#[allow(unsafe_code)]
pub(crate) fn thread_cpu_nanos() -> u64 {
    use windows_sys::Win32::{
        Foundation::FILETIME,
        System::Threading::{GetCurrentThread, GetThreadTimes},
    };
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: the pseudo-handle of this thread and four FILETIMEs to fill.
    let ok = unsafe {
        GetThreadTimes(
            GetCurrentThread(),
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    };
    if ok == 0 {
        return 0;
    }
    let ticks = |t: FILETIME| (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime);
    // FILETIME counts 100 ns ticks.
    (ticks(kernel) + ticks(user)) * 100
}
