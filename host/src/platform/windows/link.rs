//! A worker's link to its host on Windows: the worker's standard input and output,
//! anonymous pipes the host made; its standard error goes to the host's log. The worker
//! points its own standard handles away from the link (output to standard error, input
//! to nothing), so plugin code cannot write into the protocol or read from it. It opens
//! the library by path: the host holds it open shared with readers only, so it cannot
//! change, and the worker checks its identity against what the host vetted.

use std::{
    fs::File,
    io::{self, Read, Write},
    os::windows::io::{FromRawHandle, OwnedHandle},
    path::Path,
    process::{Child, Command, Stdio},
};

use windows_sys::Win32::{
    Foundation::INVALID_HANDLE_VALUE,
    System::Console::{
        GetStdHandle, SetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
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
    /// Closes the link for writing: the other side reads its end.
    pub(crate) fn close(&mut self) {
        self.0 = None;
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
pub(crate) fn worker_link(library: &Path) -> Result<(LinkRead, LinkWrite, File), String> {
    // SAFETY: the standard handles are this process's; each taken one is owned from here
    // on (the process's standard slots no longer name it), so it is closed once.
    #[allow(unsafe_code)]
    let (mut read, write) = unsafe {
        let input = GetStdHandle(STD_INPUT_HANDLE);
        let output = GetStdHandle(STD_OUTPUT_HANDLE);
        let usable =
            |handle: *mut core::ffi::c_void| !handle.is_null() && handle != INVALID_HANDLE_VALUE;
        if !usable(input) || !usable(output) {
            return Err("standard input and output are not the host's pipes".into());
        }
        SetStdHandle(STD_INPUT_HANDLE, std::ptr::null_mut());
        SetStdHandle(STD_OUTPUT_HANDLE, GetStdHandle(STD_ERROR_HANDLE));
        (File::from_raw_handle(input), File::from_raw_handle(output))
    };
    let mut go = [0u8; 1];
    match read.read_exact(&mut go) {
        Ok(()) if go[0] == GO => {}
        _ => return Err("the host did not start this worker".into()),
    }
    let library = super::file::open_for_load(library)
        .map_err(|err| format!("cannot open {}: {err}", library.display()))?;
    Ok((LinkRead(read), LinkWrite(Some(write)), library))
}
