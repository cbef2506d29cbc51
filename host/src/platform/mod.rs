//! What differs between operating systems, behind one small interface per concern; the
//! logic above it has no `cfg`. Today only Unix is implemented.

#[cfg(unix)]
mod unix;

#[cfg(unix)]
pub(crate) use self::unix::{end_group_when_host_dies, spawn_worker, ProcessWatch};
