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
    collections::VecDeque,
    fs::File,
    io::{self, IoSlice, IoSliceMut, Read, Write},
    mem::MaybeUninit,
    os::{
        fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
        unix::{net::UnixStream, process::CommandExt},
    },
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

use super::shared::{MappedRegion, SealedRegion};
use crate::platform::SetupError;

/// The descriptor the socket a worker reads arrives on.
const READ_FD: i32 = 3;

/// The descriptor the library file arrives on in a worker.
const LIBRARY_FD: i32 = 4;

/// The descriptor the socket a worker writes arrives on.
const WRITE_FD: i32 = 5;

/// The descriptors one read takes at most: a frame's region comes with the four bytes
/// that announce it, so one is the most that honest peer ever sends at once.
const DESCRIPTORS_PER_READ: usize = 2;

/// Regions received and not yet taken: more means the peer sends descriptors no frame
/// announces.
const MAX_RECEIVED: usize = 8;

/// The send buffer asked for on each socket a side writes.
const SEND_BUFFER: usize = 1 << 20;

/// What one side reads from the other: bytes, and the descriptors of shared memory regions
/// that came with them.
pub(crate) struct LinkRead {
    stream: UnixStream,
    received: VecDeque<OwnedFd>,
}

impl Read for LinkRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut space =
            [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(DESCRIPTORS_PER_READ))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let message = loop {
            match recvmsg(
                &self.stream,
                &mut [IoSliceMut::new(buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Err(rustix::io::Errno::INTR) => {}
                other => break other?,
            }
        };
        for received in control.drain() {
            if let RecvAncillaryMessage::ScmRights(descriptors) = received {
                self.received.extend(descriptors);
            }
        }
        if message.flags.contains(ReturnFlags::CTRUNC) {
            return Err(invalid(
                "more descriptors came with the link's bytes than it takes",
            ));
        }
        if self.received.len() > MAX_RECEIVED {
            return Err(invalid(
                "descriptors came on the link that no frame announced",
            ));
        }
        Ok(message.bytes)
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl LinkRead {
    fn new(stream: UnixStream) -> Self {
        Self {
            stream,
            received: VecDeque::new(),
        }
    }

    /// What ends this link's reads and writes from another thread.
    pub(crate) fn stopper(&self) -> io::Result<LinkStop> {
        self.stream.try_clone().map(LinkStop)
    }

    /// The region that came with the bytes just read, mapped, once it is known to be
    /// sealed memory of 1 to `max` bytes.
    pub(crate) fn take_region(&mut self, max: usize) -> io::Result<MappedRegion> {
        let fd = self
            .received
            .pop_front()
            .ok_or_else(|| invalid("a frame in shared memory came without its region"))?;
        MappedRegion::from_received(&fd, max)
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
    /// What makes a write under way fail, from another thread.
    pub(crate) fn stopper(&self) -> Option<LinkStop> {
        self.0.try_clone().ok().map(LinkStop)
    }

    /// A write that cannot go on for `limit` (the other side reads nothing) fails with
    /// `WouldBlock`, part of it maybe written, rather than waiting for ever.
    pub(crate) fn give_up_after(&self, limit: Duration) -> io::Result<()> {
        self.0.set_write_timeout(Some(limit))
    }

    /// Closes the link for writing: the other side reads its end.
    pub(crate) fn close(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Write);
    }

    /// Writes `bytes` with `region` handed over beside their first byte.
    pub(crate) fn write_with_region(
        &mut self,
        bytes: &[u8],
        region: SealedRegion,
    ) -> io::Result<()> {
        let fds = [region.0.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        let sent = loop {
            match sendmsg(
                &self.0,
                &[IoSlice::new(bytes)],
                &mut control,
                SendFlags::NOSIGNAL,
            ) {
                Err(rustix::io::Errno::INTR) => {}
                other => break other?,
            }
        };
        self.0.write_all(&bytes[sent..])
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
        for writer in [&to_worker.0, &from_worker.1] {
            // A large frame in one write, not in many woken by reads: the system may cap it.
            rustix::net::sockopt::set_socket_send_buffer_size(writer, SEND_BUFFER)?;
        }
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
        Ok((
            LinkRead::new(self.from_worker.0),
            LinkWrite(self.to_worker.0),
        ))
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
    Ok((LinkRead::new(read), LinkWrite(write), library))
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

/// Two ends of a link, for tests of what travels on it.
#[cfg(test)]
pub(crate) fn link_pair() -> io::Result<(LinkWrite, LinkRead)> {
    let (write, read) = UnixStream::pair()?;
    Ok((LinkWrite(write), LinkRead::new(read)))
}
