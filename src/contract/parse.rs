//! Event data into typed values, with contract-worded rejections.
//!
//! The data types derive `Deserialize` (and `JsonSchema`: the published schemas come from the
//! same types), so what a field may hold is said once. serde's own errors are turned into a
//! [`Rejection`] that names the field by its path (`agents[3].schedule.hours.mon`), the way a
//! platform developer finds it in the event; checks serde cannot express (ranges, time zones)
//! run after, in each type's `check`, with the same paths.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::{Id, Rejection};

/// The longest delay a setting or a rule step may name: a week.
pub const MAX_SECONDS: u32 = 7 * 24 * 3600;
/// Most entries in a list or object of identifiers (skills, channels, an agent's capacity).
pub const MAX_IDS: usize = 256;
/// The largest `max_waiting`.
pub const MAX_WAITING: u32 = 1_000_000;

/// A setting as a merge patch (RFC 7386) carries it: absent (`None`, unchanged), `null`
/// (`Some(None)`, back to the default) or a value.
pub type Patch<T> = Option<Option<T>>;

/// `#[serde(deserialize_with)]` for a [`Patch`] field (with `#[serde(default)]` for absent):
/// keeps a `null` apart from an absent field.
pub fn patch<'de, T, D>(deserializer: D) -> Result<Patch<T>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Typed data from an event's JSON. `unknown` says, for the path of an unknown field's object,
/// what the field is not (`a setting`, `an agent field`), for types that refuse them.
pub fn typed<T: DeserializeOwned>(
    value: &Value,
    unknown: fn(&str) -> &'static str,
) -> Result<T, Rejection> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        rejection(&path, &message, unknown(&path))
    })
}

/// A path inside the data, joined the way the rejections write them.
pub fn at(path: &str, field: &str) -> String {
    if path.is_empty() || path == "." {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn rejection(path: &str, message: &str, unknown: &str) -> Rejection {
    if let Some(field) = quoted_after(message, "missing field `") {
        return Rejection::MissingField(at(path, field));
    }
    if quoted_after(message, "unknown field `").is_some() {
        // The path ends with the unknown field itself.
        return Rejection::invalid(path, format!("is not {unknown}"));
    }
    let field = if path.is_empty() || path == "." {
        "data"
    } else {
        path
    };
    Rejection::invalid(field, message)
}

/// The name in backquotes after `prefix`, when the message starts with it.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

/// A delay in whole seconds, up to a week.
pub fn check_seconds(field: &str, seconds: Option<u32>) -> Result<(), Rejection> {
    match seconds {
        Some(s) if s > MAX_SECONDS => Err(Rejection::invalid(
            field,
            "must be a whole number of seconds up to 604800",
        )),
        _ => Ok(()),
    }
}

/// How many may wait in a queue, at most [`MAX_WAITING`].
pub fn check_max_waiting(field: &str, max_waiting: Option<u32>) -> Result<(), Rejection> {
    match max_waiting {
        Some(n) if n > MAX_WAITING => Err(Rejection::invalid(
            field,
            format!("must be a whole number up to {MAX_WAITING}"),
        )),
        _ => Ok(()),
    }
}

/// An IANA time zone name.
pub fn timezone(field: &str, name: &str) -> Result<chrono_tz::Tz, Rejection> {
    name.parse::<chrono_tz::Tz>()
        .map_err(|_| Rejection::invalid(field, "must be an IANA time zone name"))
}

/// A list of identifiers (channels): at most [`MAX_IDS`].
pub fn check_ids(field: &str, ids: &[Id]) -> Result<(), Rejection> {
    if ids.len() > MAX_IDS {
        return Err(Rejection::invalid(field, "at most 256 entries"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        count: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[allow(dead_code)]
        items: Vec<Inner>,
        #[serde(default, deserialize_with = "patch")]
        note: Patch<String>,
    }

    #[test]
    fn rejections_name_the_field_by_its_path() {
        let reason = |value: Value| {
            typed::<Outer>(&value, |_| "a field")
                .unwrap_err()
                .to_string()
        };
        assert!(reason(json!({"items": [{"count": 1}, {}]}))
            .contains("missing required field `items[1].count`"));
        assert!(
            reason(json!({"items": [{"count": -1}]})).contains("invalid field `items[0].count`")
        );
        assert!(reason(json!({"items": [], "colour": 1}))
            .contains("invalid field `colour`: is not a field"));
        assert!(reason(json!({"items": [{"count": 1, "x": 1}]}))
            .contains("`items[0].x`: is not a field"));
    }

    #[test]
    fn a_patch_keeps_null_apart_from_absent() {
        let absent: Outer = typed(&json!({"items": []}), |_| "a field").unwrap();
        let null: Outer = typed(&json!({"items": [], "note": null}), |_| "a field").unwrap();
        let set: Outer = typed(&json!({"items": [], "note": "x"}), |_| "a field").unwrap();
        assert_eq!(absent.note, None);
        assert_eq!(null.note, Some(None));
        assert_eq!(set.note, Some(Some("x".into())));
    }
}
