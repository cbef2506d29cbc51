//! Shared memory for large frames: not yet on Windows (a file mapping handed to the worker
//! would serve); frames stay on the link.

use std::{io, ops::Deref};

/// A region filled and sealed here, to be sent: none on Windows.
pub(crate) enum SealedRegion {}

/// A region received from the other side: none on Windows.
pub(crate) enum MappedRegion {}

impl Deref for MappedRegion {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match *self {}
    }
}

/// Where frames could travel in shared memory: nowhere here.
#[allow(clippy::unnecessary_wraps)] // as on Linux, where it may fail
pub(crate) fn share(
    len: usize,
    fill: impl FnOnce(&mut [u8]) -> io::Result<()>,
) -> io::Result<Option<SealedRegion>> {
    let _ = (len, fill);
    Ok(None)
}
