//! Where the host keeps its files when the config does not say.
//!
//! Under systemd, a unit's `CacheDirectory=`, `StateDirectory=` and
//! `ConfigurationDirectory=` create directories the service may use and pass them as
//! `CACHE_DIRECTORY`, `STATE_DIRECTORY` and `CONFIGURATION_DIRECTORY`; everywhere else the
//! XDG base directories apply; on Windows the user's application data folders
//! (`%LOCALAPPDATA%` for the cache, `%APPDATA%` for configuration). An explicit config key
//! or flag beats them all.

use std::{ffi::OsString, path::PathBuf};

/// Reads one environment variable; the process environment, or a fake one in tests.
type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// The first path of systemd's variable `name` (it may list several, separated by `:`
/// whatever the system's own separator). systemd is Linux's: elsewhere, none.
fn systemd_dir(env: Env<'_>, name: &str) -> Option<PathBuf> {
    if !cfg!(unix) {
        return None;
    }
    let value = env(name)?;
    let first = value.to_str()?.split(':').next()?;
    (!first.is_empty()).then(|| PathBuf::from(first))
}

/// `$name` if set and not empty.
fn env_dir(env: Env<'_>, name: &str) -> Option<PathBuf> {
    env(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Where one kind of directory lives on each system.
struct Kind {
    /// systemd's variable.
    systemd: &'static str,
    /// The XDG base directory variable.
    xdg: &'static str,
    /// The XDG default under `$HOME`.
    home_sub: &'static str,
    /// The Windows folder variable, and the path under its `plugin-host`.
    windows: (&'static str, &'static str),
}

const CACHE: Kind = Kind {
    systemd: "CACHE_DIRECTORY",
    xdg: "XDG_CACHE_HOME",
    home_sub: ".cache",
    windows: ("LOCALAPPDATA", "cache"),
};

const CONFIG: Kind = Kind {
    systemd: "CONFIGURATION_DIRECTORY",
    xdg: "XDG_CONFIG_HOME",
    home_sub: ".config",
    windows: ("APPDATA", ""),
};

/// `$systemd`, else `$xdg/plugin-host`, else `~/home_sub/plugin-host`; on Windows
/// `%windows%\plugin-host`.
fn dir(env: Env<'_>, kind: &Kind) -> Option<PathBuf> {
    if cfg!(windows) {
        let (variable, sub) = kind.windows;
        let base = env_dir(env, variable)?.join("plugin-host");
        return Some(if sub.is_empty() { base } else { base.join(sub) });
    }
    systemd_dir(env, kind.systemd).or_else(|| {
        env_dir(env, kind.xdg)
            .or_else(|| env_dir(env, "HOME").map(|home| home.join(kind.home_sub)))
            .map(|base| base.join("plugin-host"))
    })
}

/// The registry cache directory: `$CACHE_DIRECTORY`, else `$XDG_CACHE_HOME/plugin-host`,
/// else `~/.cache/plugin-host` (Windows: `%LOCALAPPDATA%\plugin-host\cache`); `None`
/// when none is known.
pub fn default_cache_dir() -> Option<PathBuf> {
    dir(&process_env, &CACHE)
}

/// The configuration directory (the trust file, the default config file):
/// `$CONFIGURATION_DIRECTORY`, else `$XDG_CONFIG_HOME/plugin-host`, else
/// `~/.config/plugin-host` (Windows: `%APPDATA%\plugin-host`); `None` when none is known.
pub(crate) fn default_config_dir() -> Option<PathBuf> {
    dir(&process_env, &CONFIG)
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

    #[cfg(unix)]
    #[test]
    fn systemd_directories_come_before_the_xdg_ones_and_the_first_of_several_is_taken() {
        let env = fake(&[
            ("CACHE_DIRECTORY", "/var/cache/plugin-host:/var/cache/other"),
            ("XDG_CACHE_HOME", "/home/u/xdg"),
            ("HOME", "/home/u"),
        ]);
        let cache = dir(&env, &CACHE);
        assert_eq!(cache, Some(PathBuf::from("/var/cache/plugin-host")));
    }

    #[cfg(unix)]
    #[test]
    fn without_systemd_the_xdg_directory_then_home_is_used() {
        let xdg = fake(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/home/u")]);
        let cache = dir(&xdg, &CACHE);
        assert_eq!(cache, Some(PathBuf::from("/x/plugin-host")));
        let home = fake(&[("CACHE_DIRECTORY", ""), ("HOME", "/home/u")]);
        let cache = dir(&home, &CACHE);
        assert_eq!(cache, Some(PathBuf::from("/home/u/.cache/plugin-host")));
        assert_eq!(dir(&fake(&[]), &CACHE), None);
    }

    #[cfg(windows)]
    #[test]
    fn on_windows_the_application_data_folders_are_used() {
        let env = fake(&[
            ("CACHE_DIRECTORY", "/var/cache/plugin-host"),
            ("LOCALAPPDATA", r"C:\Users\u\AppData\Local"),
            ("APPDATA", r"C:\Users\u\AppData\Roaming"),
        ]);
        assert_eq!(
            dir(&env, &CACHE),
            Some(PathBuf::from(r"C:\Users\u\AppData\Local\plugin-host\cache"))
        );
        assert_eq!(
            dir(&env, &CONFIG),
            Some(PathBuf::from(r"C:\Users\u\AppData\Roaming\plugin-host"))
        );
    }
}
