//! A worker's link to its host on Unix: two socket pairs, one for each direction. The
//! worker gets the end it reads as descriptor 3, the vetted library file, already open, as
//! descriptor 4 and the end it writes as descriptor 5; its stdout and stderr are pipes the
//! host copies into its log.
//!
//! One pair per direction, not one for both: a thread waiting to read a socket is woken
//! whenever its peer reads what that socket wrote (the kernel signals write space on the
//! same queue readers sleep on), so with one pair every message woke the sender's reader
//! for nothing, a wake-up per message on each side.

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

/// The descriptor the socket a worker reads arrives on.
const READ_FD: i32 = 3;

/// The descriptor the library file arrives on in a worker.
const LIBRARY_FD: i32 = 4;

/// The descriptor the socket a worker writes arrives on.
const WRITE_FD: i32 = 5;

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

/// The host's side of a worker being started: each pair's host end and worker end.
pub(crate) struct PendingLink {
    to_worker: (UnixStream, UnixStream),
    from_worker: (UnixStream, UnixStream),
}

impl PendingLink {
    /// Sets up `command` to start a worker linked to this host, handing it `library`.
    pub(crate) fn prepare(command: &mut Command, library: &File) -> io::Result<Self> {
        let to_worker = UnixStream::pair()?;
        let from_worker = UnixStream::pair()?;
        let read = to_worker.1.as_raw_fd();
        let write = from_worker.1.as_raw_fd();
        let library = library.as_raw_fd();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: between fork and exec only async-signal-safe calls are made (fcntl,
        // dup2) on descriptors this process owns. All are first copied above the targets
        // (close-on-exec), so none can overwrite another.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || {
                for (fd, target) in [(read, READ_FD), (library, LIBRARY_FD), (write, WRITE_FD)]
                    .map(|(fd, target)| (libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10), target))
                {
                    if fd < 0 || libc::dup2(fd, target) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok(Self {
            to_worker,
            from_worker,
        })
    }

    /// The link to the started worker `child` (watched already).
    pub(crate) fn connect(self, child: &mut Child) -> io::Result<(LinkRead, LinkWrite)> {
        let _ = child;
        drop((self.to_worker.1, self.from_worker.1));
        Ok((LinkRead(self.from_worker.0), LinkWrite(self.to_worker.0)))
    }
}

/// In a worker: the link to the host and the library file it vetted (`library` names it,
/// for messages), as the host handed them over.
pub(crate) fn worker_link(library: &Path) -> Result<(LinkRead, LinkWrite, File), SetupError> {
    let _ = library;
    if !descriptor_is_socket(READ_FD) || !descriptor_is_socket(WRITE_FD) {
        return Err(SetupError::NotFromHost(
            "descriptors 3 and 5 are not the host's sockets",
        ));
    }
    // SAFETY: the host hands this process its sockets as descriptors 3 and 5 and the
    // library as descriptor 4 (dup2 before exec); nothing else in this process owns them.
    #[allow(unsafe_code)]
    let (read, write, library) = unsafe {
        (
            UnixStream::from_raw_fd(READ_FD),
            UnixStream::from_raw_fd(WRITE_FD),
            File::from_raw_fd(LIBRARY_FD),
        )
    };
    Ok((LinkRead(read), LinkWrite(write), library))
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
