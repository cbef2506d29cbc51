//! `plugin-host keygen | pack | push`: plugins as OCI artifacts. The description each
//! carries is what the scanner reads from the library, as `inspect` shows it.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{anyhow, Context as _};
use plugin_host_oci::{Built, Credentials, Platform, PluginFile, Registry, Signer};

use super::{discovery, CliResult, Failure, GlobalArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the new private key (it must not exist; written readable by its
    /// owner only).
    key: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct PackArgs {
    /// The plugin's libraries, one per platform, then the OCI layout directory with an
    /// optional tag: `libmarket_data.so market-data.oci:1.0` (tag `latest` if none).
    #[arg(required = true, num_args = 2.., value_name = "FILE... DIR[:TAG]")]
    args: Vec<String>,
    /// Sign each platform's manifest with this private key (`plugin-host keygen`); may be
    /// given twice while keys rotate.
    #[arg(long, value_name = "KEY")]
    sign: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct PushArgs {
    /// The plugin's libraries, one per platform, then the reference to push to:
    /// `libmarket_data.so registry.example:5000/plugins/market-data:1.0`.
    #[arg(required = true, num_args = 2.., value_name = "FILE... REF")]
    args: Vec<String>,
    /// Sign each platform's manifest with this private key; may be given twice.
    #[arg(long, value_name = "KEY")]
    sign: Vec<PathBuf>,
    /// Plain HTTP, for a registry on loopback only.
    #[arg(long)]
    insecure: bool,
    /// How long the registry may stay silent before the push fails ("30s", "2m").
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = registry_timeout)]
    timeout: std::time::Duration,
}

/// A registry timeout as the config writes one, at least a second.
pub(crate) fn registry_timeout(text: &str) -> Result<std::time::Duration, String> {
    let timeout = plugin_host::config::parse_duration(text).map_err(|err| err.to_string())?;
    if timeout < std::time::Duration::from_secs(1) {
        return Err(format!(
            "{text:?} is under a second: give the registry at least \"1s\""
        ));
    }
    Ok(timeout)
}

pub(crate) fn keygen(args: KeygenArgs) -> CliResult {
    let signer = Signer::generate()?;
    signer.to_file(&args.key)?;
    say!(
        "private key: {} (keep it secret; sign with --sign)",
        args.key.display()
    );
    say!(
        "public key, for the hosts' config:\n\n[[trust.keys]]\nname = \"{}\"\npublic = \"{}\"",
        signer.key_id(),
        signer.public_base64()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn pack(global: &GlobalArgs, args: PackArgs) -> CliResult {
    let (target, files) = args
        .args
        .split_last()
        .ok_or_else(|| Failure::usage(anyhow!("name the libraries and the layout directory")))?;
    let built = build(global, files, &args.sign).await?;
    let (dir, tag) = plugin_host::config::SourceConfig {
        oci_layout: target.clone(),
        ..plugin_host::config::SourceConfig::default()
    }
    .layout();
    plugin_host_oci::pack_layout(&dir, &tag, &built)?;
    say!(
        "packed {} as {}:{tag} ({})",
        files.join(", "),
        dir.display(),
        built.index.digest
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn push(global: &GlobalArgs, args: PushArgs) -> CliResult {
    let (target, files) = args
        .args
        .split_last()
        .ok_or_else(|| Failure::usage(anyhow!("name the libraries and the reference")))?;
    let reference: plugin_host_oci::Reference = target.parse().map_err(|error| {
        Failure::usage(anyhow!(
            "{target:?} is not a reference ({error}); write host:port/repo:tag"
        ))
    })?;
    let built = build(global, files, &args.sign).await?;
    let registry = Registry::with_timeout(
        &reference,
        args.insecure,
        &Credentials::from_docker_config(),
        args.timeout,
    );
    let digest = plugin_host_oci::push(&registry, &reference, &built).await?;
    let pinned = format!(
        "{}/{}@{digest}",
        reference.registry(),
        reference.repository()
    );
    say!("pushed {} to {target}\npinned: {pinned}", files.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// The artifact of `files`: each file's platform from its header, the description scanned
/// from the one built for this platform.
async fn build(global: &GlobalArgs, files: &[String], keys: &[PathBuf]) -> Result<Built, Failure> {
    let signers = keys
        .iter()
        .map(|key| Signer::from_file(key))
        .collect::<Result<Vec<_>, _>>()?;
    let mut plugin_files = Vec::new();
    let mut description = None;
    for file in files {
        let path = PathBuf::from(file);
        let library = std::fs::read(&path).with_context(|| format!("cannot read {file}"))?;
        let platform = Platform::of_library(&library).ok_or_else(|| {
            anyhow!("{file} is not a shared library (no ELF, PE or Mach-O header)")
        })?;
        if platform == Platform::host() && description.is_none() {
            description = Some(describe(global, &path).await?);
        }
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        plugin_files.push(PluginFile {
            file_name,
            library: bytes::Bytes::from(library),
            platform,
        });
    }
    let Some(description) = description else {
        let host = Platform::host();
        return Err(anyhow!("none of {} is built for this platform ({host}), so none can be scanned for its description; add the library built for {host}", files.join(", ")).into());
    };
    Ok(Built::new(&description, &plugin_files, &signers)?)
}

/// The plugin's description, JSON, as the scanner reads it (in a subprocess, under the
/// config's trust policy).
async fn describe(global: &GlobalArgs, path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    let config = global.config()?;
    let scanned = discovery(&config)?.scan_file(path).await;
    let info = scanned.outcome.map_err(|error| anyhow!("{error}"))?;
    Ok(serde_json::to_vec(&info)?)
}
