//! Worker processes on Windows: each runs in a job object of its own, created with
//! kill-on-job-close, so that killing the job ends the worker and everything it started,
//! and a host that dies (its handles closed by the system) takes its workers with it.
//! The worker's end is learned from its process handle, which also keeps its pid from
//! being reused.

use std::{
    io,
    os::windows::{
        io::{AsHandle, AsRawHandle, FromRawHandle, OwnedHandle},
        process::{CommandExt, ExitStatusExt},
    },
    process::{Child, Command, ExitStatus},
};

use windows_sys::Win32::{
    Foundation::WAIT_FAILED,
    System::{
        JobObjects::{
            AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
            SetInformationJobObject, TerminateJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
            JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
        },
        Threading::{
            GetExitCodeProcess, TerminateProcess, WaitForSingleObject, CREATE_NO_WINDOW, INFINITE,
        },
    },
};

/// The exit code of a worker the host killed.
const KILLED: u32 = 0xC0DE_0009;

/// Starts `command` as a worker, without a console of its own (console events such as
/// Ctrl-C are the host's to handle; it stops its workers itself).
pub(crate) fn spawn_child(mut command: Command) -> io::Result<Child> {
    command.creation_flags(CREATE_NO_WINDOW);
    command.spawn()
}

/// A running worker in its job object: learn its end, kill it and what it started.
#[derive(Debug)]
pub(crate) struct ProcessWatch {
    process: OwnedHandle,
    job: OwnedHandle,
}

impl ProcessWatch {
    /// Puts the worker `child` in a new job object that kills its processes when its last
    /// handle (this one) closes, and watches it. The worker waits for the host's word
    /// before it does anything else, so it starts nothing outside the job.
    pub(crate) fn new(child: &Child) -> io::Result<Self> {
        let process = child.as_handle().try_clone_to_owned()?;
        // SAFETY: CreateJobObjectW returns a new handle this function owns, or null; the
        // limit struct is zeroed and filled in, and only read by the call.
        #[allow(unsafe_code)]
        let job = unsafe {
            let handle = CreateJobObjectW(std::ptr::null(), std::ptr::null());
            if handle.is_null() {
                return Err(io::Error::last_os_error());
            }
            let job = OwnedHandle::from_raw_handle(handle);
            let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = std::mem::zeroed();
            limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
            let size = u32::try_from(std::mem::size_of_val(&limits)).unwrap_or(u32::MAX);
            if SetInformationJobObject(
                job.as_raw_handle(),
                JobObjectExtendedLimitInformation,
                (&raw const limits).cast(),
                size,
            ) == 0
                || AssignProcessToJobObject(job.as_raw_handle(), process.as_raw_handle()) == 0
            {
                return Err(io::Error::last_os_error());
            }
            job
        };
        Ok(Self { process, job })
    }

    /// Blocks until the worker has ended; how it ended.
    pub(crate) fn wait(&self) -> io::Result<ExitStatus> {
        // SAFETY: the process handle is open for the calls; the code is written by the
        // second call only.
        #[allow(unsafe_code)]
        unsafe {
            if WaitForSingleObject(self.process.as_raw_handle(), INFINITE) == WAIT_FAILED {
                return Err(io::Error::last_os_error());
            }
            let mut code = 0u32;
            if GetExitCodeProcess(self.process.as_raw_handle(), &raw mut code) == 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(ExitStatus::from_raw(code))
        }
    }

    /// Kills the worker's job: the worker and every process it started.
    pub(crate) fn kill_group(&self) {
        // SAFETY: both handles are open for the calls, which have no memory effects.
        #[allow(unsafe_code)]
        unsafe {
            if TerminateJobObject(self.job.as_raw_handle(), KILLED) == 0 {
                TerminateProcess(self.process.as_raw_handle(), KILLED);
            }
        }
    }

    /// Nothing to reap on Windows: the handles close when this is dropped.
    pub(crate) fn reap(&self) {}
}

/// How a child process ended: its exit code, or what an NTSTATUS code says.
pub(crate) fn describe_status(status: ExitStatus) -> String {
    let Some(code) = status.code() else {
        return status.to_string();
    };
    let code = code as u32;
    let crash = match code {
        KILLED => return "killed by the host (TerminateJobObject)".to_owned(),
        0xC000_0005 => "an access violation",
        0xC000_001D => "an illegal instruction",
        0xC000_00FD => "a stack overflow",
        0xC000_0374 => "heap corruption",
        0xC000_0409 => "a fail-fast exit, as abort() makes",
        _ if code >= 0xC000_0000 => "a fatal error",
        _ => return format!("exit code {code}"),
    };
    format!("status 0x{code:08X}: {crash}")
}
