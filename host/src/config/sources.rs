//! `[[sources]]` (plugins delivered as OCI artifacts) and `[trust]` (the keys whose
//! signatures count).

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::units;

/// One `[[sources]]` entry: a plugin artifact in a registry or a layout directory.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct SourceConfig {
    /// The source's name, as `list` and metrics show it; defaults to the last part of the
    /// repository (or of the layout directory).
    pub name: String,
    /// `host:port/repo@sha256:...` (pinned) or `host:port/repo:tag`.
    pub oci: String,
    /// `DIR:tag` (or `DIR@sha256:...`): an OCI image layout directory.
    pub oci_layout: String,
    /// `os/architecture`; empty means the host's own.
    pub platform: String,
    /// `if-not-present` (the default: a pulled artifact is used again without asking the
    /// registry) or `always` (ask at every start; a failure keeps the previous pull).
    pub pull: PullPolicy,
    /// Plain HTTP instead of HTTPS: only for a registry on loopback.
    pub insecure: bool,
    /// With a tag, how often `run` asks whether it moved (e.g. `"5m"`): a new digest is
    /// pulled, verified and served through live discovery. None by default.
    #[serde(deserialize_with = "units::opt_duration", skip_serializing)]
    pub follow: Option<Duration>,
    /// How long the registry may stay silent (to answer a connection, or between two reads
    /// of an answer) before a pull fails; 30s by default.
    #[serde(deserialize_with = "units::opt_duration", skip_serializing)]
    pub timeout: Option<Duration>,
}

/// When a source is pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Only when the cache does not hold it.
    #[default]
    IfNotPresent,
    /// At every start.
    Always,
}

/// `[trust]`: signatures of plugin artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustConfig {
    /// `[[trust.keys]]`: public keys whose signatures count (two at once while rotating).
    pub keys: Vec<TrustKeyConfig>,
    /// Refuse artifacts that no trusted key signed.
    pub require_signature: bool,
}

/// One `[[trust.keys]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustKeyConfig {
    /// The key's name, as refusals name it.
    pub name: String,
    /// The ed25519 public key, base64 (`plugin-host keygen` prints it).
    pub public: String,
}

impl SourceConfig {
    /// The source's name: `name`, else the last part of the repository or directory.
    pub fn display_name(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        if self.oci.is_empty() {
            let dir = self.layout().0;
            return dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        let repository = self.oci.split('@').next().unwrap_or_default();
        let last = repository.rsplit('/').next().unwrap_or_default();
        last.split(':').next().unwrap_or_default().to_owned()
    }

    /// The reference as configured: `oci`, else `oci-layout`.
    pub fn reference(&self) -> &str {
        if self.oci.is_empty() {
            &self.oci_layout
        } else {
            &self.oci
        }
    }

    /// The layout directory and the tag (or `sha256:` digest) of `oci-layout`.
    pub fn layout(&self) -> (PathBuf, String) {
        let text = &self.oci_layout;
        if let Some((dir, digest)) = text.split_once("@sha256:") {
            return (PathBuf::from(dir), format!("sha256:{digest}"));
        }
        match text.rsplit_once(':') {
            // A Windows drive letter (C:\...) is not a tag.
            Some((dir, tag)) if !tag.contains(['/', '\\']) && dir.len() > 1 => {
                (PathBuf::from(dir), tag.to_owned())
            }
            _ => (PathBuf::from(text), "latest".to_owned()),
        }
    }
}

/// Whether `registry` (`host:port`) is on loopback.
fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(registry, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Every problem in `[[sources]]` and `[trust]`, as (key, message).
pub(super) fn problems(sources: &[SourceConfig], trust: &TrustConfig) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, source) in sources.iter().enumerate() {
        let mut add =
            |key: &str, message: String| problems.push((format!("sources[{i}].{key}"), message));
        match (source.oci.is_empty(), source.oci_layout.is_empty()) {
            (true, true) => add("oci", "names nothing: set oci = \"host:port/repo:tag\" (or @sha256:...) or oci-layout = \"DIR:tag\"".into()),
            (false, false) => add("oci", "is set, and so is oci-layout: a source is one or the other; keep one".into()),
            (false, true) => match source.oci.parse::<plugin_host_oci::Reference>() {
                Err(error) => add("oci", format!("{:?} is not a reference ({error}); write host:port/repo:tag or host:port/repo@sha256:...", source.oci)),
                Ok(reference) if source.insecure && !is_loopback(reference.registry()) => add(
                    "insecure",
                    format!("plain HTTP is allowed to a registry on loopback only, and {} is not; serve it over HTTPS", reference.registry()),
                ),
                Ok(_) => {}
            },
            (true, false) if source.insecure => add("insecure", "applies to registries, not to oci-layout".into()),
            (true, false) => {}
        }
        if let Some(every) = source.follow {
            if source.reference().contains("@sha256:") {
                add(
                    "follow",
                    "applies to a tag; a reference pinned by digest never moves".into(),
                );
            } else if every < Duration::from_secs(1) {
                add("follow", "must be at least 1s".into());
            }
        }
        if source
            .timeout
            .is_some_and(|timeout| timeout < Duration::from_secs(1))
        {
            add("timeout", "must be at least 1s".into());
        }
        if !source.platform.is_empty() {
            if let Err(error) = source.platform.parse::<plugin_host_oci::Platform>() {
                add("platform", error.to_string());
            }
        }
        let name = source.display_name();
        if !crate::names::valid_name(&name) {
            add(
                "name",
                format!(
                    "{name:?} is not a usable source name ({}); set name",
                    crate::names::NAME_RULE
                ),
            );
        } else if !names.insert(name.clone()) {
            add(
                "name",
                format!("{name:?} names two sources; give each its own name"),
            );
        }
    }
    for (i, key) in trust.keys.iter().enumerate() {
        if let Err(error) = plugin_host_oci::TrustedKey::new(&key.name, &key.public) {
            problems.push((format!("trust.keys[{i}].public"), error.to_string()));
        }
    }
    if trust.require_signature && trust.keys.is_empty() {
        problems.push((
            "trust.require_signature".into(),
            "is on but no [[trust.keys]] are configured, so nothing could ever be accepted; add a key (plugin-host keygen prints one)".into(),
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::{is_loopback, SourceConfig};

    fn oci(reference: &str) -> SourceConfig {
        SourceConfig {
            oci: reference.into(),
            ..SourceConfig::default()
        }
    }

    #[test]
    fn a_source_is_named_after_its_repository_or_directory_unless_named() {
        assert_eq!(
            oci("127.0.0.1:5000/plugins/market-data:1.0").display_name(),
            "market-data"
        );
        assert_eq!(oci("r.example/a/md@sha256:00").display_name(), "md");
        let layout = SourceConfig {
            oci_layout: "/srv/artifacts/md.oci:2".into(),
            ..SourceConfig::default()
        };
        assert_eq!(layout.display_name(), "md.oci");
        assert_eq!(
            layout.layout(),
            ("/srv/artifacts/md.oci".into(), "2".into())
        );
        let named = SourceConfig {
            name: "quotes".into(),
            ..oci("r.example/md:1")
        };
        assert_eq!(named.display_name(), "quotes");
    }

    #[test]
    fn a_layout_reference_takes_a_tag_a_digest_or_neither() {
        let layout = |text: &str| {
            SourceConfig {
                oci_layout: text.into(),
                ..SourceConfig::default()
            }
            .layout()
        };
        assert_eq!(layout("dir"), ("dir".into(), "latest".into()));
        assert_eq!(
            layout("a/dir@sha256:ab"),
            ("a/dir".into(), "sha256:ab".into())
        );
        assert_eq!(
            layout("C:\\artifacts"),
            ("C:\\artifacts".into(), "latest".into())
        );
    }

    #[test]
    fn only_loopback_registries_count_as_loopback() {
        for yes in [
            "127.0.0.1:5000",
            "localhost:5000",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "registry.example:5000",
            "10.0.0.1:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }
}
