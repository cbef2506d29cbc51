//! Opens plugin libraries: once per file, only when a component of theirs is needed.
//!
//! Opening goes through abi_stable's `lib_header_from_path` and `init_root_module`, which
//! check the plugin-api version and every type's layout before any plugin function is
//! called. `RootModule::load_from_file` is not used: it caches per root-module *type*, so it
//! would hand every plugin the first library's module. Libraries are never unloaded
//! (abi_stable leaks them on purpose); dropping a component frees its instance, not code.

mod c_plugin;
mod error;
mod file;
mod filecheck;
mod rust_plugin;
mod segments;

use std::{collections::HashMap, path::Path, path::PathBuf, sync::Arc};

use abi_stable::{
    library::{lib_header_from_path, LibraryError, RawLibrary},
    std_types::RStr,
};
use parking_lot::Mutex;
use plugin_api::ffi::{ComponentBox, HostBox, PluginRootRef};

pub(crate) use self::{
    c_plugin::{layout as c_layout, parse_description as parse_c_description},
    error::io_reason,
    file::OpenedFile,
    filecheck::{check as check_file, check_header},
    segments::mapped_ranges_in,
};
pub use self::{error::LoadError, file::FileIdentity};
use crate::manifest::PluginInfo;
use crate::trust::TrustPolicy;

/// A plugin library mapped into this process.
pub(crate) struct LoadedLibrary {
    path: PathBuf,
    root: Root,
    info: PluginInfo,
}

/// What a library's components are made with.
enum Root {
    /// plugin-api's root module.
    Rust(PluginRootRef),
    /// A C plugin's functions.
    C(c_plugin::CPlugin),
}

impl std::fmt::Debug for LoadedLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedLibrary")
            .field("path", &self.path)
            .field("plugin", &self.info.name)
            .finish()
    }
}

impl LoadedLibrary {
    /// Its manifest, as read from the loaded library.
    pub(crate) fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Calls the plugin's `create` for `component`. Never panics: the plugin's adapters
    /// catch panics and return them as errors.
    pub(crate) fn create(
        &self,
        component: &str,
        host: HostBox,
    ) -> Result<ComponentBox, plugin_api::PluginError> {
        match &self.root {
            Root::Rust(root) => (root.create())(RStr::from_str(component), host).into_result(),
            Root::C(plugin) => plugin.create(&self.info.name, component, host),
        }
    }
}

/// Opens the library in `opened` in this process and reads its manifest, checking
/// everything abi_stable can check first. The dynamic loader is handed the open file
/// itself, so what was checked is what is mapped. Used by the scanner process and by the
/// [`Loader`].
///
/// # Errors
///
/// A [`LoadError`] naming the file and the reason it cannot be used.
///
/// # Safety
///
/// Opening a library runs its initialisers (static constructors, the root module's
/// function): arbitrary native code, which can abort, hang or corrupt this process. Call it
/// only in a process that may die for it (the scanner), or on a file the scanner has
/// vetted and that cannot have changed since (the loader checks its identity first).
#[allow(unsafe_code)] // An unsafe contract, not unsafe code: see `# Safety`.
pub(crate) unsafe fn open_library(opened: &OpenedFile) -> Result<LoadedLibrary, LoadError> {
    // SAFETY: the same contract, passed on.
    unsafe { open_library_at(opened, Via::Link) }
}

/// How the dynamic loader is pointed at the vetted file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// A link of a name used once: safe where several libraries are mapped (the host).
    Link,
    /// The descriptor's own path: for a process that maps this library alone (a
    /// worker), and writes nothing to do so.
    Descriptor,
}

/// [`open_library`], pointing the loader at the file `via` a link or the descriptor.
///
/// # Errors
///
/// As [`open_library`].
///
/// # Safety
///
/// As [`open_library`].
#[allow(unsafe_code)] // An unsafe contract, not unsafe code: see `# Safety`.
pub(crate) unsafe fn open_library_at(
    opened: &OpenedFile,
    via: Via,
) -> Result<LoadedLibrary, LoadError> {
    let path = opened.path();
    filecheck::check(opened)?;
    let host_api = plugin_api::API_VERSION.to_owned();
    let load = |at: &Path| {
        // A library the loader cannot open is reported by abi_stable's path below, but
        // for one this process may not read (the loader says so only in words).
        let mut library = RawLibrary::load_at(at).ok();
        if library.is_none()
            && std::fs::File::open(at)
                .is_err_and(|err| err.kind() == std::io::ErrorKind::PermissionDenied)
        {
            return Opened::Unreadable;
        }
        if let Some(opened) = library.take() {
            // SAFETY: the caller's contract.
            match unsafe { c_plugin::open(opened, path) } {
                c_plugin::Probe::C(c) => return Opened::C(c),
                c_plugin::Probe::NotC(opened) => library = Some(opened),
            }
        }
        // The same file, already mapped by the line above (kept mapped while abi_stable
        // opens it too): `library` hands out its symbols.
        let header = lib_header_from_path(at);
        let library = library.filter(|_| header.is_ok());
        Opened::Rust(header, library)
    };
    let opened = match via {
        Via::Link => opened.with_loader_path(load)?,
        Via::Descriptor => opened.with_descriptor_path(load),
    };
    let (root, info) = match opened {
        Opened::C(c) => open_c(path, c?)?,
        Opened::Unreadable => {
            return Err(LoadError::Unreadable {
                path: path.to_owned(),
            })
        }
        Opened::Rust(header, library) => rust_plugin::open_rust(path, header, library)?,
    };
    tracing::debug!(path = %path.display(), plugin = %info.name, abi = %info.abi, host_api, "plugin library opened");
    Ok(LoadedLibrary {
        path: path.to_owned(),
        root,
        info,
    })
}

/// What the dynamic loader opened: a C plugin, or (perhaps) an abi_stable library; or
/// nothing, for this process may not read the file.
enum Opened {
    Unreadable,
    C(Result<c_plugin::Opened, LoadError>),
    Rust(
        Result<&'static abi_stable::library::LibHeader, LibraryError>,
        Option<RawLibrary>,
    ),
}

/// A C plugin's description read and checked against this host.
fn open_c(path: &Path, opened: c_plugin::Opened) -> Result<(Root, PluginInfo), LoadError> {
    let described = c_plugin::parse_description(&opened.description, opened.plugin.abi()).map_err(
        |reason| LoadError::CPlugin {
            path: path.to_owned(),
            reason: reason.to_string(),
        },
    )?;
    refuse_missing(
        path,
        &described.info,
        &described.requires,
        described.info.api_version.clone(),
    )?;
    Ok((Root::C(opened.plugin), described.info))
}

/// Which plugin-api versions this host loads plugins of: every release of its plugin-api
/// line (`0.1.0 to 0.1.x`), later ones unless they need a feature it lacks.
pub fn loadable_plugin_api() -> String {
    let line: Vec<&str> = plugin_api::API_VERSION.splitn(3, '.').take(2).collect();
    let line = line.join(".");
    format!("{line}.0 to {line}.x")
}

/// Which C ABI versions (`plugin_host.h`) this host loads C plugins of.
pub fn loadable_c_abi() -> String {
    match c_plugin::ABI {
        1 => "C ABI 1".to_owned(),
        newest => format!("C ABI 1 to {newest}"),
    }
}

/// What plugin-api features this host has, by the names plugins use in
/// [`plugin_api::describe::Description::requires`].
pub(crate) const HOST_FEATURES: &[&str] = &[];

/// Refuses a plugin (built against `built_against`) that `requires` a feature this host
/// lacks, naming both versions.
fn refuse_missing(
    path: &Path,
    info: &PluginInfo,
    requires: &[String],
    built_against: String,
) -> Result<(), LoadError> {
    let missing: Vec<String> = requires
        .iter()
        .filter(|feature| !HOST_FEATURES.contains(&feature.as_str()))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(LoadError::NeedsNewerHost {
        path: path.to_owned(),
        plugin: info.name.clone(),
        plugin_api: built_against,
        host_api: plugin_api::API_VERSION.to_owned(),
        missing,
    })
}

/// Opens each library at most once and hands out the same [`LoadedLibrary`] afterwards.
///
/// Opening a library runs its initialisers, which may take long or hang. Each path has a
/// lock of its own, so two libraries open concurrently and a hanging one blocks only the
/// callers of that library; the table of loaded libraries is never locked across an open.
#[derive(Default)]
pub(crate) struct Loader {
    loaded: Mutex<HashMap<PathBuf, Arc<LoadedLibrary>>>,
    /// One lock per path being (or once) opened: serialises opens of the same file.
    opening: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    trust: TrustPolicy,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("loaded", &self.loaded())
            .finish()
    }
}

/// What discovery vetted of a file: its identity, and its hash if the policy took one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vetted<'a> {
    pub(crate) identity: FileIdentity,
    pub(crate) sha256: Option<&'a str>,
}

impl Loader {
    /// A loader with nothing loaded, checking files against `trust`.
    pub(crate) fn new(trust: TrustPolicy) -> Self {
        Self {
            trust,
            ..Self::default()
        }
    }

    /// Returns the library at `path`, opening it on first use: the file must still be
    /// the one `vetted` describes, and pass the trust policy, checked through the same
    /// descriptor the dynamic loader then opens. Blocking: call it from a plugin thread.
    /// Failures are not cached, so a fixed file can be loaded later.
    ///
    /// # Errors
    ///
    /// [`LoadError::Changed`] if the file is not the vetted one, else as
    /// [`open_library`].
    pub(crate) fn load(
        &self,
        path: &Path,
        vetted: Vetted<'_>,
    ) -> Result<Arc<LoadedLibrary>, LoadError> {
        if let Some(library) = self.loaded.lock().get(path) {
            return Ok(Arc::clone(library));
        }
        let gate = Arc::clone(self.opening.lock().entry(path.to_owned()).or_default());
        let _opening = gate.lock();
        // Someone else may have opened it while this caller waited.
        if let Some(library) = self.loaded.lock().get(path) {
            return Ok(Arc::clone(library));
        }
        let opened = self.vet(path, vetted)?.into_private_copy()?;
        // SAFETY: the scanner vetted this very file (same device, inode, size and times)
        // and the trust policy passed on the open descriptor, and what is mapped is a
        // sealed copy of it where the platform makes one; the per-path gate opens each
        // file at most once.
        #[allow(unsafe_code)]
        let library = Arc::new(unsafe { open_library(&opened) }?);
        tracing::info!(path = %path.display(), plugin = %library.info.name, "plugin library loaded");
        self.loaded
            .lock()
            .insert(path.to_owned(), Arc::clone(&library));
        Ok(library)
    }

    /// Opens `path` and checks that it is the very file vetted and that it passes the
    /// trust policy, on the open descriptor, without mapping it.
    pub(crate) fn vet(&self, path: &Path, vetted: Vetted<'_>) -> Result<OpenedFile, LoadError> {
        let opened = OpenedFile::open(path)?;
        opened.expect_identity(vetted.identity)?;
        self.check_trust(&opened, vetted.sha256)?;
        Ok(opened)
    }

    fn check_trust(&self, opened: &OpenedFile, sha256: Option<&str>) -> Result<(), LoadError> {
        let path = opened.path();
        let untrusted = |refusal: crate::trust::Refusal| LoadError::Untrusted {
            path: path.to_owned(),
            reason: refusal.to_string(),
        };
        if let Some(dir) = path.parent() {
            self.trust.check_dir(dir).map_err(untrusted)?;
        }
        self.trust
            .check_file(path, opened.metadata(), || match sha256 {
                Some(hash) => Ok(hash.to_owned()),
                None => crate::trust::sha256_hex(opened.file()),
            })
            .map_err(untrusted)
    }

    /// Whether the library at `path` is loaded.
    pub(crate) fn is_loaded(&self, path: &Path) -> bool {
        self.loaded.lock().contains_key(path)
    }

    /// The paths of the libraries loaded so far.
    pub(crate) fn loaded(&self) -> Vec<PathBuf> {
        self.loaded.lock().keys().cloned().collect()
    }
}
