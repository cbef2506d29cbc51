//! Shared memory a large frame travels in beside the link, on Linux: a memfd, filled
//! through a mapping, then sealed (it can neither shrink, grow nor be written again) and
//! handed over as a descriptor. The receiver maps it read-only only once it has seen those
//! seals, so what it reads cannot change or vanish under it. Other Unixes have no memfd;
//! their frames stay on the link.

use std::{io, ops::Deref, os::fd::OwnedFd};

/// A region filled and sealed here, to be sent.
pub(crate) struct SealedRegion(pub(super) OwnedFd);

#[cfg(test)]
impl SealedRegion {
    /// Any descriptor, as a peer that does not keep the rules may send it.
    pub(crate) fn unchecked(fd: OwnedFd) -> Self {
        Self(fd)
    }
}

/// A region received from the other side, mapped read-only for as long as this lives.
pub(crate) struct MappedRegion {
    start: *const u8,
    len: usize,
}

impl Deref for MappedRegion {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `start` maps `len` readable bytes until `drop`; the seals checked before
        // mapping keep them from changing or being cut off.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(self.start, self.len)
        }
    }
}

impl Drop for MappedRegion {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map_received`, unmapped once.
        #[allow(unsafe_code)]
        unsafe {
            let _ = rustix::mm::munmap(self.start.cast_mut().cast(), self.len);
        }
    }
}

#[cfg(target_os = "linux")]
mod memfd {
    use std::{io, os::fd::OwnedFd};

    use rustix::{
        fs::{fcntl_add_seals, fcntl_get_seals, fstat, ftruncate, memfd_create, FileType},
        fs::{MemfdFlags, SealFlags},
        mm::{mmap, munmap, MapFlags, ProtFlags},
    };

    use super::{MappedRegion, SealedRegion};

    /// The seals a region must carry before it is mapped: no writes, no size change, and
    /// no seal taken off.
    fn required() -> SealFlags {
        SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL
    }

    fn invalid(message: String) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, message)
    }

    /// A memfd that can be sealed, never executable (kernels before 6.3 do not know the
    /// flag that says so, and refuse it).
    fn create() -> io::Result<OwnedFd> {
        let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        memfd_create("plugin-host-frame", flags | MemfdFlags::NOEXEC_SEAL)
            .or_else(|_| memfd_create("plugin-host-frame", flags))
            .map_err(io::Error::from)
    }

    /// Maps `len` bytes of `fd` (`len` > 0), with its pages in at once.
    fn map(fd: &OwnedFd, len: usize, prot: ProtFlags) -> io::Result<*mut u8> {
        // SAFETY: a new mapping (no address asked for) of a file this process holds; the
        // callers unmap it exactly once.
        #[allow(unsafe_code)]
        let start = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                prot,
                MapFlags::SHARED | MapFlags::POPULATE,
                fd,
                0,
            )?
        };
        Ok(start.cast())
    }

    pub(crate) fn share(
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> io::Result<()>,
    ) -> io::Result<Option<SealedRegion>> {
        let fd = create()?;
        ftruncate(&fd, len as u64)?;
        let start = map(&fd, len.max(1), ProtFlags::READ | ProtFlags::WRITE)?;
        // SAFETY: `start` maps `len` writable bytes of a file no one else has yet; the
        // slice ends before the mapping does.
        #[allow(unsafe_code)]
        let filled = fill(unsafe { std::slice::from_raw_parts_mut(start, len) });
        // SAFETY: the mapping just made, unmapped once (the write seal needs it gone).
        #[allow(unsafe_code)]
        unsafe {
            munmap(start.cast(), len.max(1))?;
        }
        filled?;
        fcntl_add_seals(&fd, required())?;
        Ok(Some(SealedRegion(fd)))
    }

    pub(crate) fn map_received(fd: &OwnedFd, max: usize) -> io::Result<MappedRegion> {
        let stat = fstat(fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(invalid(
                "a frame's shared memory is not a memory file".to_owned(),
            ));
        }
        let len = usize::try_from(stat.st_size).unwrap_or(usize::MAX);
        if len == 0 || len > max {
            return Err(invalid(format!(
                "a frame's shared memory holds {len} bytes; frames hold 1 to {max}"
            )));
        }
        let seals = fcntl_get_seals(fd).map_err(|_| {
            invalid("a frame's shared memory cannot be sealed (not a memfd)".to_owned())
        })?;
        if !seals.contains(required()) {
            return Err(invalid(format!(
                "a frame's shared memory is not sealed against change (seals {seals:?})"
            )));
        }
        let start = map(fd, len, ProtFlags::READ)?;
        Ok(MappedRegion { start, len })
    }
}

#[cfg(target_os = "linux")]
pub(crate) use self::memfd::share;

/// Where frames could travel in shared memory: nowhere on this Unix.
#[cfg(not(target_os = "linux"))]
#[allow(clippy::unnecessary_wraps)] // as on Linux, where it may fail
pub(crate) fn share(
    len: usize,
    fill: impl FnOnce(&mut [u8]) -> io::Result<()>,
) -> io::Result<Option<SealedRegion>> {
    let _ = (len, fill);
    Ok(None)
}

impl MappedRegion {
    /// Maps a region `fd` received from the other side, once it is known to be sealed
    /// memory of 1 to `max` bytes.
    pub(super) fn from_received(fd: &OwnedFd, max: usize) -> io::Result<Self> {
        #[cfg(target_os = "linux")]
        {
            memfd::map_received(fd, max)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (fd, max);
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "frames do not travel in shared memory on this system",
            ))
        }
    }
}
