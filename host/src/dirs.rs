//! Where the host keeps its files when the config does not say.
//!
//! Under systemd, a unit's `CacheDirectory=`, `StateDirectory=` and
//! `ConfigurationDirectory=` create directories the service may use and pass them as
//! `CACHE_DIRECTORY`, `STATE_DIRECTORY` and `CONFIGURATION_DIRECTORY`; everywhere else the
//! XDG base directories apply. An explicit config key or flag beats both.

use std::{ffi::OsString, path::PathBuf};

/// Reads one environment variable; the process environment, or a fake one in tests.
type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// The first path of systemd's variable `name` (it may list several, separated by `:`).
fn systemd_dir(env: Env<'_>, name: &str) -> Option<PathBuf> {
    let value = env(name)?;
    let first = std::env::split_paths(&value).next()?;
    (!first.as_os_str().is_empty()).then_some(first)
}

/// `$name` if set and not empty.
fn env_dir(env: Env<'_>, name: &str) -> Option<PathBuf> {
    env(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `$systemd`, else `$xdg/plugin-host`, else `~/home_sub/plugin-host`.
fn dir(env: Env<'_>, systemd: &str, xdg: &str, home_sub: &str) -> Option<PathBuf> {
    systemd_dir(env, systemd).or_else(|| {
        env_dir(env, xdg)
            .or_else(|| env_dir(env, "HOME").map(|home| home.join(home_sub)))
            .map(|base| base.join("plugin-host"))
    })
}

/// The registry cache directory: `$CACHE_DIRECTORY`, else `$XDG_CACHE_HOME/plugin-host`,
/// else `~/.cache/plugin-host`; `None` when none is known.
pub fn default_cache_dir() -> Option<PathBuf> {
    dir(&process_env, "CACHE_DIRECTORY", "XDG_CACHE_HOME", ".cache")
}

/// The configuration directory (the trust file, the default config file):
/// `$CONFIGURATION_DIRECTORY`, else `$XDG_CONFIG_HOME/plugin-host`, else
/// `~/.config/plugin-host`; `None` when none is known.
pub(crate) fn default_config_dir() -> Option<PathBuf> {
    dir(
        &process_env,
        "CONFIGURATION_DIRECTORY",
        "XDG_CONFIG_HOME",
        ".config",
    )
}

/// What a relative plugins directory is relative to: `$STATE_DIRECTORY` under systemd,
/// else the working directory (`None`).
pub(crate) fn state_dir() -> Option<PathBuf> {
    systemd_dir(&process_env, "STATE_DIRECTORY")
}

/// The config file read when none is named: `$CONFIGURATION_DIRECTORY/host.toml`, if it
/// exists. Outside systemd no file is read unless named.
pub(crate) fn default_config_file() -> Option<PathBuf> {
    systemd_dir(&process_env, "CONFIGURATION_DIRECTORY")
        .map(|dir| dir.join("host.toml"))
        .filter(|file| file.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        }
    }

    #[test]
    fn systemd_directories_come_before_the_xdg_ones_and_the_first_of_several_is_taken() {
        let env = fake(&[
            ("CACHE_DIRECTORY", "/var/cache/plugin-host:/var/cache/other"),
            ("XDG_CACHE_HOME", "/home/u/xdg"),
            ("HOME", "/home/u"),
        ]);
        let cache = dir(&env, "CACHE_DIRECTORY", "XDG_CACHE_HOME", ".cache");
        assert_eq!(cache, Some(PathBuf::from("/var/cache/plugin-host")));
    }

    #[test]
    fn without_systemd_the_xdg_directory_then_home_is_used() {
        let xdg = fake(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/home/u")]);
        let cache = dir(&xdg, "CACHE_DIRECTORY", "XDG_CACHE_HOME", ".cache");
        assert_eq!(cache, Some(PathBuf::from("/x/plugin-host")));
        let home = fake(&[("CACHE_DIRECTORY", ""), ("HOME", "/home/u")]);
        let cache = dir(&home, "CACHE_DIRECTORY", "XDG_CACHE_HOME", ".cache");
        assert_eq!(cache, Some(PathBuf::from("/home/u/.cache/plugin-host")));
        assert_eq!(
            dir(&fake(&[]), "CACHE_DIRECTORY", "XDG_CACHE_HOME", ".cache"),
            None
        );
    }
}
