//! A worker's link to its host on Unix: a socket pair. The worker gets its end as
//! descriptor 3 and the vetted library file, already open, as descriptor 4; its stdout and
//! stderr are pipes the host copies into its log.

use std::{
    fs::File,
    io::{self, Read, Write},
    os::{
        fd::{AsRawFd, FromRawFd},
        unix::{net::UnixStream, process::CommandExt},
    },
    path::Path,
    process::{Child, Command, Stdio},
};

use crate::platform::SetupError;

/// The descriptor the socket arrives on in a worker.
const SOCKET_FD: i32 = 3;

/// The descriptor the library file arrives on in a worker.
const LIBRARY_FD: i32 = 4;

/// What one side reads from the other.
pub(crate) struct LinkRead(UnixStream);

impl Read for LinkRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl LinkRead {
    /// What ends this link's reads and writes from another thread.
    pub(crate) fn stopper(&self) -> io::Result<LinkStop> {
        self.0.try_clone().map(LinkStop)
    }
}

/// Ends a link's reads and writes, even those waiting in other threads (a process the
/// worker left behind may hold its end open for ever).
pub(crate) struct LinkStop(UnixStream);

impl LinkStop {
    /// Reads see the end; writes fail.
    pub(crate) fn stop(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// What one side writes to the other.
pub(crate) struct LinkWrite(UnixStream);

impl Write for LinkWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl LinkWrite {
    /// Closes the link for writing: the other side reads its end.
    pub(crate) fn close(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Write);
    }
}

/// The host's side of a worker being started.
pub(crate) struct PendingLink {
    host: UnixStream,
    worker: UnixStream,
}

impl PendingLink {
    /// Sets up `command` to start a worker linked to this host, handing it `library`.
    pub(crate) fn prepare(command: &mut Command, library: &File) -> io::Result<Self> {
        let (host, worker) = UnixStream::pair()?;
        let socket = worker.as_raw_fd();
        let library = library.as_raw_fd();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: between fork and exec only async-signal-safe calls are made (fcntl,
        // dup2) on descriptors this process owns. Both are first copied above the targets
        // (close-on-exec), so neither can overwrite the other.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || {
                let high_socket = libc::fcntl(socket, libc::F_DUPFD_CLOEXEC, 10);
                let high_library = libc::fcntl(library, libc::F_DUPFD_CLOEXEC, 10);
                if high_socket < 0
                    || high_library < 0
                    || libc::dup2(high_socket, SOCKET_FD) < 0
                    || libc::dup2(high_library, LIBRARY_FD) < 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(Self { host, worker })
    }

    /// The link to the started worker `child` (watched already).
    pub(crate) fn connect(self, child: &mut Child) -> io::Result<(LinkRead, LinkWrite)> {
        let _ = child;
        drop(self.worker);
        let read = self.host.try_clone()?;
        Ok((LinkRead(read), LinkWrite(self.host)))
    }
}

/// In a worker: the link to the host and the library file it vetted (`library` names it,
/// for messages), as the host handed them over.
pub(crate) fn worker_link(library: &Path) -> Result<(LinkRead, LinkWrite, File), SetupError> {
    let _ = library;
    if !descriptor_is_socket(SOCKET_FD) {
        return Err(SetupError::NotFromHost(
            "descriptor 3 is not the host's socket",
        ));
    }
    // SAFETY: the host hands this process the socket as descriptor 3 and the library as
    // descriptor 4 (dup2 before exec); nothing else in this process owns them.
    #[allow(unsafe_code)]
    let (stream, library) = unsafe {
        (
            UnixStream::from_raw_fd(SOCKET_FD),
            File::from_raw_fd(LIBRARY_FD),
        )
    };
    let read = stream
        .try_clone()
        .map_err(SetupError::os("cannot share the host's socket"))?;
    Ok((LinkRead(read), LinkWrite(stream), library))
}

/// Whether descriptor `fd` is open and a socket.
fn descriptor_is_socket(fd: i32) -> bool {
    // SAFETY: fstat writes into the zeroed struct it is given and reads nothing else.
    #[allow(unsafe_code)]
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &raw mut stat) == 0 && (stat.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    }
}
