//! `plugin-host new NAME`: a standalone plugin crate that builds outside this repository,
//! or with `--lang c`, a C plugin (one source file and the contract's header).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{anyhow, Context as _};
use plugin_host::plugin_api::ABI_STABLE_VERSION;

use super::{CliResult, Failure};

#[derive(Debug, clap::Args)]
pub(crate) struct NewArgs {
    /// The plugin's name, also its component's: 1-64 characters of a-z, 0-9, `-`, `_`, `.`.
    name: String,
    /// Where to write the crate [default: ./NAME]; must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,
    /// The plugin-api crate to depend on, by path [default: the source this binary was
    /// built from, when it is still there].
    #[arg(long, value_name = "PATH")]
    api: Option<PathBuf>,
    /// The language to write it in: `rust` (against plugin-api) or `c` (against
    /// plugin_host.h, which is written beside it).
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
}

/// The language of a new plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    /// Rust, against plugin-api.
    Rust,
    /// C (or C++), against plugin_host.h.
    C,
}

const CARGO_TOML: &str = include_str!("../../templates/plugin/Cargo.toml.txt");
const LIB_RS: &str = include_str!("../../templates/plugin/lib.rs.txt");
const README: &str = include_str!("../../templates/plugin/README.md.txt");
const GITIGNORE: &str = include_str!("../../templates/plugin/gitignore.txt");
const C_SOURCE: &str = include_str!("../../templates/plugin-c/plugin.c.txt");
const C_README: &str = include_str!("../../templates/plugin-c/README.md.txt");
const C_HEADER: &str = include_str!("../../../../plugin-api/include/plugin_host.h");

pub(crate) fn run(args: NewArgs) -> CliResult {
    let name = &args.name;
    if !plugin_host::valid_name(name) {
        return Err(Failure::usage(anyhow!(
            "`{name}` cannot name a plugin: {}",
            plugin_host::NAME_RULE
        )));
    }
    let dir = args.path.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && dir.read_dir().map_or(true, |mut d| d.next().is_some()) {
        return Err(Failure::usage(anyhow!(
            "{} already exists and is not empty; choose another --path",
            dir.display()
        )));
    }
    let crate_name = name.replace('.', "-");
    let library = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    let files = match args.lang {
        Lang::Rust => rust_files(name, &crate_name, &library, args.api.as_deref())?,
        Lang::C => c_files(name, &library),
    };
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    say!("created plugin `{name}` in {}", dir.display());
    match args.lang {
        Lang::Rust => {
            say!(
                "  cd {} && cargo test && cargo build --release",
                dir.display()
            );
            say!("  then copy target/release/{library} into the host's plugins directory");
        }
        Lang::C => {
            say!(
                "  cd {} && cc -shared -fPIC -O2 -I . {name}.c -o {library}",
                dir.display()
            );
            say!("  then copy {library} into the host's plugins directory");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A Rust plugin crate's files.
fn rust_files(
    name: &str,
    crate_name: &str,
    library: &str,
    api: Option<&Path>,
) -> Result<Vec<(String, String)>, Failure> {
    let api = api_path(api)?;
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", crate_name)
            .replace("{{library}}", library)
            .replace("{{abi_stable}}", ABI_STABLE_VERSION)
            .replace("{{api}}", &toml_string(&api.display().to_string()))
    };
    Ok(vec![
        ("Cargo.toml".into(), fill(CARGO_TOML)),
        ("src/lib.rs".into(), fill(LIB_RS)),
        ("README.md".into(), fill(README)),
        (".gitignore".into(), GITIGNORE.to_owned()),
    ])
}

/// A C plugin's files: its source, the contract's header, a README.
fn c_files(name: &str, library: &str) -> Vec<(String, String)> {
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{library}}", library)
    };
    vec![
        (format!("{name}.c"), fill(C_SOURCE)),
        ("plugin_host.h".into(), C_HEADER.to_owned()),
        ("README.md".into(), fill(C_README)),
    ]
}

/// The plugin-api crate to depend on, absolute (as written: on Windows `C:\...`, not
/// the verbatim `\\?\C:\...` that resolving links gives).
fn api_path(given: Option<&Path>) -> Result<PathBuf, Failure> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2);
    let built_from = workspace
        .map(|root| root.join("plugin-api"))
        .unwrap_or_default();
    let path = given.map_or(built_from, Path::to_path_buf);
    let manifest = path.join("Cargo.toml");
    let is_api =
        std::fs::read_to_string(&manifest).is_ok_and(|text| text.contains("name = \"plugin-api\""));
    if !is_api {
        return Err(Failure::usage(anyhow!(
            "{} is not the plugin-api crate; pass --api PATH to a plugin-api source directory",
            path.display()
        )));
    }
    std::path::absolute(&path)
        .with_context(|| format!("cannot resolve {}", path.display()))
        .map_err(Failure::from)
}

/// `text` as a TOML basic string, quoted: JSON's escapes are TOML's (a Windows path's
/// backslashes among them).
fn toml_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}
