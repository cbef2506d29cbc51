//! The Unix implementation of each concern (see the parent module).

pub(crate) mod contain;
pub(crate) mod descriptors;
pub(crate) mod file;
pub(crate) mod link;
pub(crate) mod memory;
pub(crate) mod privileges;
pub(crate) mod process;
pub(crate) mod shared;
#[cfg(target_os = "linux")]
pub(crate) mod tasks;
pub(crate) mod trust;
