//! The sandbox settings: `[host] sandbox` and `[components.NAME] sandbox`, and what a
//! component's sandbox grants (`[components.NAME.sandbox_grants]`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::units::{flag_or_word, FlagOrWord};

/// Whether an isolated component's worker runs in a sandbox: `[host] sandbox` or
/// `[components.NAME] sandbox`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SandboxMode {
    /// `false`: no sandbox.
    #[default]
    Off,
    /// `true`: no_new_privs, a Landlock ruleset and a seccomp filter, before the library's
    /// first instruction; where the kernel lacks Landlock, the component does not start.
    On,
    /// `"best-effort"`: as `true`, with a warning naming what this kernel cannot enforce.
    BestEffort,
}

impl SandboxMode {
    /// As in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::On => "on",
            Self::BestEffort => "best-effort",
        }
    }
}

impl Serialize for SandboxMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Off => s.serialize_bool(false),
            Self::On => s.serialize_bool(true),
            Self::BestEffort => s.serialize_str("best-effort"),
        }
    }
}

impl<'de> Deserialize<'de> for SandboxMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match flag_or_word(d, "best-effort")? {
            FlagOrWord::True => Self::On,
            FlagOrWord::False => Self::Off,
            FlagOrWord::Word => Self::BestEffort,
        })
    }
}

/// `[components.NAME.sandbox_grants]`: what the sandbox grants a component's code; each
/// key set replaces what the plugin declares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxGrants {
    /// Paths it may read (files, or directories and what is beneath).
    pub read: Option<Vec<PathBuf>>,
    /// Paths it may read and write.
    pub write: Option<Vec<PathBuf>>,
    /// Which network connections it may open: `true` (anywhere), `false` (none), or a
    /// list of TCP ports (`[5432, 443]`, at any address).
    pub connect: Option<ConnectGrant>,
    /// Whether it may start programs.
    pub spawn: Option<bool>,
}

/// `connect` in `[components.NAME.sandbox_grants]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ConnectGrant {
    /// `true`: TCP to any port and UDP (name resolution); `false`: no connection.
    Anywhere(bool),
    /// TCP to these ports only, at any address.
    Ports(Vec<u16>),
}
