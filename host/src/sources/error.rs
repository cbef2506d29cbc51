//! Why a source could not be pulled or served.

use std::path::PathBuf;

/// Why one pull of a source failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The source's `oci` is not a reference (validation refuses this before a start).
    #[error("{oci:?} is not a reference: {error}")]
    Reference {
        /// The source's `oci` key.
        oci: String,
        /// Why it does not parse.
        error: plugin_host_oci::ReferenceError,
    },
    /// The registry or layout refused the artifact, or could not be reached.
    #[error(transparent)]
    Fetch(#[from] plugin_host_oci::FetchError),
    /// The verified library could not be placed in the sources' plugins directory.
    #[error("cannot place {file} in {}: {error}", .dir.display())]
    Place {
        /// The library's file name.
        file: String,
        /// The sources' plugins directory.
        dir: PathBuf,
        /// What the file system said.
        error: std::io::Error,
    },
    /// What was pulled could not be recorded.
    #[error("cannot record the pull in {}: {error}", .dir.display())]
    Record {
        /// The records' directory.
        dir: PathBuf,
        /// What the file system said.
        error: std::io::Error,
    },
}

/// Why a source serves nothing new: its pull failed, with what it serves instead.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The pull failed; an earlier pull keeps serving.
    #[error("source {name}: {error}; still serving the previous pull ({digest} of {reference}, pulled {pulled})")]
    StillServing {
        /// The source.
        name: String,
        /// Why the pull failed.
        error: PullError,
        /// The digest served instead.
        digest: String,
        /// What it was pulled from.
        reference: String,
        /// When, in words.
        pulled: String,
    },
    /// The pull failed and nothing of the source is served.
    #[error("source {name}: {error}; nothing of it is served")]
    NothingServed {
        /// The source.
        name: String,
        /// Why the pull failed.
        error: PullError,
    },
    /// The pull's task ended before it did (the runtime is stopping, or it panicked).
    #[error("sources: the pull stopped: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}
