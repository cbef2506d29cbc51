//! A worker's link to its host on Windows: the worker's standard input and output,
//! anonymous pipes the host made; its standard error goes to the host's log. The worker
//! takes the pipes for itself and points everything else away from them, the process's
//! standard handles and the C runtime's descriptors 0 and 1 alike (output to standard
//! error, input to `NUL`), so plugin code (Rust or C) cannot write into the protocol or
//! read from it. It opens
//! the library by path: the host holds it open shared with readers only, so it cannot
//! change, and the worker checks its identity against what the host vetted.

use std::{
    fs::File,
    io::{self, Read, Write},
    os::windows::io::{FromRawHandle, OwnedHandle},
    path::Path,
    process::{Child, Command, Stdio},
};

use super::shared::{MappedRegion, SealedRegion};
use crate::platform::SetupError;
use windows_sys::Win32::{
    Foundation::{DuplicateHandle, DUPLICATE_SAME_ACCESS, HANDLE, INVALID_HANDLE_VALUE},
    System::{
        Console::{
            GetStdHandle, SetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
        },
        Threading::GetCurrentProcess,
    },
};

/// The byte the host sends once the worker is in its job object: the worker waits for it
/// before anything else.
const GO: u8 = 0x47;

/// What one side reads from the other.
pub(crate) struct LinkRead(File);

impl Read for LinkRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl LinkRead {
    /// What ends this link's reads and writes from another thread.
    #[allow(clippy::unnecessary_wraps)] // as on Unix, where it may fail
    pub(crate) fn stopper(&self) -> io::Result<LinkStop> {
        Ok(LinkStop)
    }

    /// The region that came with the bytes just read: none ever does on Windows.
    #[allow(clippy::unused_self)] // as on Unix, where regions arrive on the link
    pub(crate) fn take_region(&mut self, max: usize) -> io::Result<MappedRegion> {
        let _ = max;
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a frame in shared memory came on a link that carries none",
        ))
    }
}

/// Ends a link's reads and writes from another thread. Here it does nothing: when a worker
/// ends, the host ends its job object and every process in it, and with them the pipes.
pub(crate) struct LinkStop;

impl LinkStop {
    /// Nothing to do (see the type).
    pub(crate) fn stop(&self) {}
}

/// What one side writes to the other.
pub(crate) struct LinkWrite(Option<File>);

impl Write for LinkWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Some(pipe) => pipe.write(buf),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Some(pipe) => pipe.flush(),
            None => Ok(()),
        }
    }
}

impl LinkWrite {
    /// Nothing ends a pipe's write from another thread here but ending the worker's job.
    #[allow(clippy::unused_self)]
    pub(crate) fn stopper(&self) -> Option<LinkStop> {
        None
    }

    /// A pipe here has no write timeout: a write waits until the other side reads, or
    /// the host ends the worker's job (a call's timeout does).
    #[allow(clippy::unused_self, clippy::unnecessary_wraps)]
    pub(crate) fn give_up_after(&self, limit: std::time::Duration) -> io::Result<()> {
        let _ = limit;
        Ok(())
    }

    /// Closes the link for writing: the other side reads its end.
    pub(crate) fn close(&mut self) {
        self.0 = None;
    }

    /// Writes bytes with a region beside them: there are no regions on Windows.
    #[allow(clippy::unused_self)]
    pub(crate) fn write_with_region(
        &mut self,
        bytes: &[u8],
        region: SealedRegion,
    ) -> io::Result<()> {
        let _ = bytes;
        match region {}
    }
}

/// The host's side of a worker being started.
pub(crate) struct PendingLink;

impl PendingLink {
    /// Sets up `command` to start a worker linked to this host through its standard
    /// input and output. The library goes by path (see the module).
    pub(crate) fn prepare(command: &mut Command, library: &File) -> io::Result<Self> {
        let _ = library;
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(Self)
    }

    /// The link to the started worker `child`, once it is watched (in its job): the
    /// worker is told to go on.
    pub(crate) fn connect(self, child: &mut Child) -> io::Result<(LinkRead, LinkWrite)> {
        let missing = || io::Error::other("the worker's standard handles are not pipes");
        let input = child.stdin.take().ok_or_else(missing)?;
        let output = child.stdout.take().ok_or_else(missing)?;
        let mut write = File::from(OwnedHandle::from(input));
        let read = File::from(OwnedHandle::from(output));
        write.write_all(&[GO])?;
        Ok((LinkRead(read), LinkWrite(Some(write))))
    }
}

/// In a worker: the link to the host (its standard input and output, taken away from
/// the rest of the process) and the library file it vetted, opened by `library`.
pub(crate) fn worker_link(library: &Path) -> Result<(LinkRead, LinkWrite, File), SetupError> {
    // SAFETY: the standard handles are this process's; the link gets copies of its own
    // (so the C runtime closing its descriptors 0 and 1 below cannot close the link),
    // and the process's standard slots and those descriptors are pointed elsewhere.
    #[allow(unsafe_code)]
    let (mut read, write) = unsafe {
        let input = GetStdHandle(STD_INPUT_HANDLE);
        let output = GetStdHandle(STD_OUTPUT_HANDLE);
        let usable = |handle: HANDLE| !handle.is_null() && handle != INVALID_HANDLE_VALUE;
        if !usable(input) || !usable(output) {
            return Err(SetupError::NotFromHost(
                "standard input and output are not the host's pipes",
            ));
        }
        let (Some(input), Some(output)) = (duplicate(input), duplicate(output)) else {
            return Err(SetupError::last_os("cannot take the host's pipes"));
        };
        SetStdHandle(STD_INPUT_HANDLE, std::ptr::null_mut());
        SetStdHandle(STD_OUTPUT_HANDLE, GetStdHandle(STD_ERROR_HANDLE));
        let nul = libc::open(c"NUL".as_ptr(), libc::O_RDONLY);
        if nul >= 0 {
            libc::dup2(nul, 0);
            libc::close(nul);
        }
        libc::dup2(2, 1);
        (File::from(input), File::from(output))
    };
    let mut go = [0u8; 1];
    match read.read_exact(&mut go) {
        Ok(()) if go[0] == GO => {}
        _ => {
            return Err(SetupError::NotFromHost(
                "the host did not start this worker",
            ))
        }
    }
    let library = super::file::open_for_load(library).map_err(|error| SetupError::OpenLibrary {
        path: library.to_owned(),
        error,
    })?;
    Ok((LinkRead(read), LinkWrite(Some(write)), library))
}

/// A handle of this process's own to what `handle` names.
///
/// # Safety
///
/// `handle` must be open.
#[allow(unsafe_code)]
pub(super) unsafe fn duplicate(handle: HANDLE) -> Option<OwnedHandle> {
    let mut copy: HANDLE = std::ptr::null_mut();
    // SAFETY: `handle` is open (the caller's promise); the copy is written by the call and
    // owned by the returned value.
    unsafe {
        let process = GetCurrentProcess();
        if DuplicateHandle(
            process,
            handle,
            process,
            &raw mut copy,
            0,
            0,
            DUPLICATE_SAME_ACCESS,
        ) == 0
        {
            return None;
        }
        Some(OwnedHandle::from_raw_handle(copy))
    }
}
