//! Opening a plugin-api (abi_stable) library: its root module after abi_stable's version
//! and layout checks (and the check the other way round that lets older plugins in), its
//! manifest and description, and every way abi_stable can refuse it, in words.

use std::path::Path;

use abi_stable::library::{LibraryError, RawLibrary};
use plugin_api::ffi::PluginRootRef;

use super::{refuse_missing, LoadError, Root};
use crate::manifest::PluginInfo;

/// An abi_stable library's root module and manifest, after every check abi_stable has.
pub(super) fn open_rust(
    path: &Path,
    header: Result<&'static abi_stable::library::LibHeader, LibraryError>,
    library: Option<RawLibrary>,
) -> Result<(Root, PluginInfo), LoadError> {
    let header = header.map_err(|err| classify(path, err, None))?;
    refuse_foreign(path, header)?;
    let plugin_api_version = header.version_strings().version.as_str().to_owned();
    let root =
        init_root_module(header).map_err(|err| classify(path, err, Some(&plugin_api_version)))?;
    let manifest = (root.manifest())()
        .into_result()
        .map_err(|err| LoadError::Manifest {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
    let mut info =
        PluginInfo::from_ffi(manifest, plugin_api_version).map_err(|err| LoadError::Manifest {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
    if let Some(description) = check_description(path, library, &info)? {
        info.mark_streams(&description.streams);
        info.sandbox = description.sandbox;
    }
    Ok((Root::Rust(root), info))
}

/// The root module of `header`'s library, after abi_stable's version and layout checks.
///
/// abi_stable accepts a library whose prefix types (the root module, the vtables of the
/// `sabi_trait`s) have *at least* the fields of the loading side's: a host may be older
/// than its plugins, not newer. A plugin built against an earlier plugin-api 0.1.z has
/// fewer fields, which is safe for prefix types (the accessors of later fields say
/// `None`, the trait methods added later fall back to their default bodies). So a layout
/// refused that way is checked again the other way round, the library's layout as the
/// expected one: where only prefix types differ, and only in their number of fields,
/// that passes, and every other difference still refuses the library.
fn init_root_module(
    header: &'static abi_stable::library::LibHeader,
) -> Result<PluginRootRef, LibraryError> {
    use abi_stable::{abi_stability::abi_checking::check_layout_compatibility, StableAbi};
    match header.init_root_module::<PluginRootRef>() {
        Err(LibraryError::AbiInstability(refused)) => {
            let older = header.layout().is_some_and(|library| {
                check_layout_compatibility(library, <PluginRootRef as StableAbi>::LAYOUT).is_ok()
            });
            if !older {
                return Err(LibraryError::AbiInstability(refused));
            }
            // SAFETY: the layouts were just checked, with the library's as the expected
            // one: they differ at most in how many fields their prefix types have, which
            // the prefix types' accessors check at run time.
            #[allow(unsafe_code)]
            unsafe {
                header.init_root_module_with_unchecked_layout::<PluginRootRef>()
            }
        }
        loaded => loaded,
    }
}

/// Reads the description a plugin built against plugin-api 0.1.1 or later gives (one
/// built against 0.1.0 has none) and refuses it if it needs a feature this host lacks.
fn check_description(
    path: &Path,
    library: Option<RawLibrary>,
    info: &PluginInfo,
) -> Result<Option<plugin_api::describe::Description>, LoadError> {
    let Some(text) = library.and_then(|library| read_description(&library)) else {
        return Ok(None);
    };
    let description =
        plugin_api::describe::Description::from_json(&text).map_err(|err| LoadError::Manifest {
            path: path.to_owned(),
            reason: format!("its description is not readable: {err}"),
        })?;
    refuse_missing(
        path,
        info,
        &description.requires,
        description.api_version.clone(),
    )?;
    Ok(Some(description))
}

/// The description document `library` exports through
/// [`plugin_api::ffi::DESCRIBE_SYMBOL`], if it has the symbol.
fn read_description(library: &RawLibrary) -> Option<String> {
    type Describe = unsafe extern "C" fn(*mut u8, usize) -> usize;
    /// Longer than any description; a plugin claiming more is not believed.
    const MOST: usize = 1 << 20;
    let symbol = format!("{}\0", plugin_api::ffi::DESCRIBE_SYMBOL);
    // SAFETY: a symbol of this name is plugin-api's describe function, of this type
    // (`export_plugin!` defines it so); the library stays mapped for good.
    #[allow(unsafe_code)]
    let describe: Describe = *unsafe { library.get::<Describe>(symbol.as_bytes()) }.ok()?;
    let mut buffer = vec![0u8; 4096];
    for _ in 0..2 {
        // SAFETY: the buffer has `len` writable bytes.
        #[allow(unsafe_code)]
        let needed = unsafe { describe(buffer.as_mut_ptr(), buffer.len()) };
        if needed <= buffer.len() {
            buffer.truncate(needed);
            return String::from_utf8(buffer).ok();
        }
        if needed > MOST {
            return None;
        }
        buffer.resize(needed, 0);
    }
    None
}

/// Refuses an abi_stable library whose root module is not plugin-api's (another
/// application's plugin), naming what it does export, before any version or layout is
/// compared: its version is not a plugin-api version.
fn refuse_foreign(path: &Path, header: &abi_stable::library::LibHeader) -> Result<(), LoadError> {
    use abi_stable::library::RootModule;
    let consts = header.root_mod_consts();
    if consts.name().as_str() == <PluginRootRef as RootModule>::NAME {
        return Ok(());
    }
    let (root_type, package) = header.layout().map(application_type).map_or_else(
        || ("unknown".to_owned(), "unknown".to_owned()),
        |layout| {
            (
                layout.name().trim_end_matches("_Prefix").to_owned(),
                format!("`{}` {}", layout.package(), layout.package_version()),
            )
        },
    );
    Err(LoadError::Foreign {
        path: path.to_owned(),
        root_module: consts.name().as_str().to_owned(),
        root_type,
        package,
    })
}

/// The application's own type behind a root module's layout: a root module is
/// abi_stable's `PrefixRef` of the application's prefix struct, so look through
/// abi_stable's wrappers (breadth first, a few levels) for the first type of another
/// package.
fn application_type(
    root: &'static abi_stable::type_layout::TypeLayout,
) -> &'static abi_stable::type_layout::TypeLayout {
    let mut level = vec![root];
    for _ in 0..3 {
        if let Some(found) = level.iter().find(|l| l.package().as_str() != "abi_stable") {
            return found;
        }
        level = level
            .iter()
            .flat_map(|l| l.shared_vars().type_layouts().iter().map(|f| f()))
            .collect();
    }
    root
}

fn classify(path: &Path, err: LibraryError, plugin_api: Option<&str>) -> LoadError {
    let path = path.to_owned();
    let host_api = plugin_api::API_VERSION.to_owned();
    match err {
        LibraryError::OpenError { err, .. } => {
            // The loader saw /proc/self/fd/N; people know the file by its path.
            let reason = strip_fd_path(&err.to_string(), &path);
            if reason.contains("position-independent executable") {
                // A program is an ELF shared object too: only the loader tells them apart.
                return LoadError::NotALibrary {
                    path,
                    detail: "it is a program, a position-independent executable".into(),
                };
            }
            LoadError::Open { reason, path }
        }
        LibraryError::GetSymbolError { .. } => LoadError::NoRootModule { path },
        LibraryError::InvalidAbiHeader(header) => LoadError::AbiHeader {
            path,
            detail: format!("abi_stable ABI {}.{}", header.abi_major, header.abi_minor),
            host_api,
        },
        LibraryError::InvalidCAbi { expected, found } => LoadError::AbiHeader {
            path,
            detail: format!("C ABI differs: expected {expected}, found {found}"),
            host_api,
        },
        LibraryError::ParseVersionError(err) => LoadError::AbiHeader {
            path,
            detail: format!("unreadable version: {err}"),
            host_api,
        },
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => {
            LoadError::IncompatibleVersion {
                path,
                plugin_api: actual_version.to_string(),
                host_api,
            }
        }
        LibraryError::AbiInstability(report) => {
            let report = report.to_string();
            LoadError::AbiMismatch {
                path,
                plugin_api: plugin_api.unwrap_or("unknown").to_owned(),
                host_api,
                first_mismatch: first_mismatch(&report),
                report,
            }
        }
        LibraryError::RootModule { err, .. } => LoadError::RootModule {
            path,
            reason: err.to_string().trim().to_owned(),
        },
        LibraryError::Many(errors) => match errors.into_iter().next() {
            Some(first) => classify(&path, first, plugin_api),
            None => LoadError::Open {
                path,
                reason: "abi_stable reported an empty error list".into(),
            },
        },
    }
}

/// The dynamic loader's message with the path it was given (the descriptor's link, see
/// [`OpenedFile::with_loader_path`]) replaced by the file's own.
fn strip_fd_path(message: &str, path: &Path) -> String {
    message
        .split(' ')
        .map(|word| {
            if word.contains("plugin-host-load-") || word.contains("/proc/self/fd/") {
                let tail = word.trim_start_matches(|c: char| c != ':').to_owned();
                let rest = if word.starts_with('/') {
                    tail
                } else {
                    String::new()
                };
                format!("{}{rest}", path.display())
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Picks the first concrete mismatch out of abi_stable's (very long) layout report: its
/// `Error:` line and the `Expected:` / `Found:` values after it.
fn first_mismatch(report: &str) -> String {
    let lines: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let Some(start) = lines.iter().position(|line| line.starts_with("Error:")) else {
        return "abi_stable reported a layout mismatch".into();
    };
    let what = lines[start].trim_start_matches("Error:").trim();
    let value_after = |label: &str| {
        lines[start..]
            .iter()
            .position(|line| *line == label)
            .and_then(|at| lines.get(start + at + 1))
            .map(|value| value.chars().take(120).collect::<String>())
    };
    match (value_after("Expected:"), value_after("Found:")) {
        (Some(expected), Some(found)) => format!("{what}: expected `{expected}`, found `{found}`"),
        _ => what.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::first_mismatch;

    #[test]
    fn the_summary_is_the_error_line_with_expected_and_found() {
        let report = "Compared <this>:\n    --- Type Layout ---\n    type:X\nError:mismatched package\nExpected:\n    plugin-api\nFound:\n    other\n";
        assert_eq!(
            first_mismatch(report),
            "mismatched package: expected `plugin-api`, found `other`"
        );
        assert_eq!(
            first_mismatch("no structure"),
            "abi_stable reported a layout mismatch"
        );
    }
}
