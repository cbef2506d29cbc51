//! Environment overrides: `PLUGIN_HOST_<SECTION>_<KEY>=value` sets `[section] key`, and
//! nested keys too (`PLUGIN_HOST_MEMORY_PRESSURE_HIGH=0.9`).
//!
//! A value takes the type of the key it sets, read from the defaults: a token that looks
//! like a number is still a string where the key is a string (`PLUGIN_HOST_ADMIN_TOKEN=
//! 12345`). Variables that name no key, or are not UTF-8, are reported as warnings and
//! ignored: the environment is shared with everything else on the machine.

use std::ffi::OsString;

use super::{Config, ConfigProblem};

/// The prefix of every override.
pub(super) const ENV_PREFIX: &str = "PLUGIN_HOST_";

/// Applies the `PLUGIN_HOST_*` variables of `env` to `table` (the file, as parsed).
/// Returns the warnings about variables ignored.
///
/// # Errors
///
/// A [`ConfigProblem`] naming the variable whose value does not fit its key.
pub(super) fn apply(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<ConfigProblem>, ConfigProblem> {
    let schema = schema();
    let mut warnings = Vec::new();
    for (name, value) in env {
        let (name, value) = match (name.to_str(), value.to_str()) {
            // Test switches of scanners and workers (`platform::TEST_SWITCH_PREFIX`).
            (Some(name), Some(_)) if name.starts_with("PLUGIN_HOST_TEST_") => continue,
            (Some(name), Some(value)) if name.starts_with(ENV_PREFIX) => (name, value),
            (Some(_), Some(_)) => continue,
            (name_text, _) => {
                let lossy = name.to_string_lossy();
                if lossy.starts_with(ENV_PREFIX) {
                    warnings.push(warning(
                        &lossy,
                        if name_text.is_none() {
                            "its name is not UTF-8; ignored"
                        } else {
                            "its value is not UTF-8; ignored"
                        },
                    ));
                }
                continue;
            }
        };
        let rest = name[ENV_PREFIX.len()..].to_ascii_lowercase();
        let Some((path, default)) = resolve(&schema, &rest) else {
            warnings.push(warning(
                name,
                "names no config key; ignored (write PLUGIN_HOST_<SECTION>_<KEY>, e.g. PLUGIN_HOST_TIMEOUTS_DEFAULT)",
            ));
            continue;
        };
        let typed = typed(default, value).map_err(|reason| ConfigProblem {
            key: name.to_owned(),
            message: format!("sets `{}`, which {reason}", path.join(".")),
            location: None,
        })?;
        set(table, &path, typed);
    }
    Ok(warnings)
}

fn warning(name: &str, message: &str) -> ConfigProblem {
    ConfigProblem {
        key: name.to_owned(),
        message: message.to_owned(),
        location: None,
    }
}

/// Every settable key with its default value, as TOML: the types overrides take.
fn schema() -> toml::Table {
    toml::Table::try_from(Config::default()).unwrap_or_else(|err| {
        // The defaults always serialise; if they ever did not, overrides would all be
        // reported as unknown rather than applied wrongly.
        tracing::error!(error = %err, "cannot list the config keys; environment overrides are ignored");
        toml::Table::new()
    })
}

/// The key path `rest` (lowercase, `_`-separated) names in `schema`, and its default.
fn resolve<'a>(schema: &'a toml::Table, rest: &str) -> Option<(Vec<String>, &'a toml::Value)> {
    for (key, value) in schema {
        if rest == key.as_str() {
            return Some((vec![key.clone()], value));
        }
        let Some(tail) = rest
            .strip_prefix(key.as_str())
            .and_then(|t| t.strip_prefix('_'))
        else {
            continue;
        };
        if let toml::Value::Table(inner) = value {
            if let Some((mut path, found)) = resolve(inner, tail) {
                path.insert(0, key.clone());
                return Some((path, found));
            }
        }
    }
    None
}

/// Why a variable's value does not fit its key.
#[derive(Debug, thiserror::Error)]
enum Unfit {
    /// The key takes a whole number.
    #[error("expects a whole number, not `{0}`")]
    NotWhole(String),
    /// The key takes a number.
    #[error("expects a number, not `{0}`")]
    NotNumber(String),
    /// The key is a table.
    #[error("is a table; set one of its keys instead")]
    Table,
}

/// `raw` as a value of the type of `default`.
fn typed(default: &toml::Value, raw: &str) -> Result<toml::Value, Unfit> {
    use toml::Value;
    let trimmed = raw.trim();
    match default {
        Value::String(_) | Value::Datetime(_) => Ok(Value::String(raw.to_owned())),
        Value::Integer(_) => trimmed
            .parse()
            .map(Value::Integer)
            .map_err(|_| Unfit::NotWhole(raw.to_owned())),
        Value::Float(_) => trimmed
            .parse()
            .map(Value::Float)
            .map_err(|_| Unfit::NotNumber(raw.to_owned())),
        // A key that is a flag by default may take a word too (`watch = "poll"`): the
        // key's own type judges a word.
        Value::Boolean(_) => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Ok(Value::String(raw.to_owned())),
        },
        Value::Array(_) => Ok(list(trimmed)),
        Value::Table(_) => Err(Unfit::Table),
    }
}

/// A list: TOML array syntax (`["a", "b"]`), else comma-separated words.
fn list(raw: &str) -> toml::Value {
    if let Ok(mut parsed) = toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        if let Some(array @ toml::Value::Array(_)) = parsed.remove("v") {
            return array;
        }
    }
    toml::Value::Array(
        raw.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| toml::Value::String(item.to_owned()))
            .collect(),
    )
}

/// Sets `value` at `path` in `table`, making the tables on the way.
fn set(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        current = next;
    }
    current.insert(last.clone(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn values_take_the_type_of_their_key() {
        let mut table = toml::Table::new();
        let warnings = apply(
            &mut table,
            env(&[
                ("PLUGIN_HOST_ADMIN_TOKEN", "12345"),
                ("PLUGIN_HOST_HOST_SCAN_CONCURRENCY", "3"),
                ("PLUGIN_HOST_MEMORY_PRESSURE_HIGH", "0.9"),
                ("PLUGIN_HOST_LOCKS_DEADLOCK_DETECTION", "false"),
                ("PLUGIN_HOST_LOCKS_ORDER", "accounts, orders"),
            ]),
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(table["admin"]["token"].as_str(), Some("12345"));
        assert_eq!(table["host"]["scan_concurrency"].as_integer(), Some(3));
        assert_eq!(table["memory"]["pressure"]["high"].as_float(), Some(0.9));
        assert_eq!(table["locks"]["deadlock_detection"].as_bool(), Some(false));
        assert_eq!(table["locks"]["order"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn unknown_and_non_utf8_variables_are_warnings_not_failures() {
        let mut table = toml::Table::new();
        #[cfg_attr(not(unix), allow(unused_mut))]
        let mut pairs = env(&[("PLUGIN_HOST_NOPE_KEY", "1"), ("OTHER", "x")]);
        // Names and values that are no UTF-8: only Unix has them (Windows strings are
        // UTF-16, and bytes become them lossily).
        #[cfg(unix)]
        {
            let bytes = crate::platform::bytes_to_os_string;
            pairs.push((bytes(b"PLUGIN_HOST_\xff"), "1".into()));
            pairs.push((OsString::from("PLUGIN_HOST_ADMIN_TOKEN"), bytes(b"\xfe")));
            pairs.push((bytes(b"ELSEWHERE_\xff"), "1".into()));
        }
        let warnings = apply(&mut table, pairs).unwrap();
        assert!(table.is_empty());
        assert!(warnings[0].key == "PLUGIN_HOST_NOPE_KEY", "{warnings:?}");
        #[cfg(unix)]
        assert_eq!(warnings.len(), 3, "{warnings:?}");
    }

    #[test]
    fn a_value_that_does_not_fit_its_key_names_variable_and_key() {
        let mut table = toml::Table::new();
        let err = apply(
            &mut table,
            env(&[("PLUGIN_HOST_HOST_SCAN_CONCURRENCY", "many")]),
        )
        .unwrap_err();
        assert_eq!(err.key, "PLUGIN_HOST_HOST_SCAN_CONCURRENCY");
        assert!(err.message.contains("host.scan_concurrency"), "{err}");
    }
}
