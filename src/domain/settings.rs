//! Per-project allocation settings (`project.configured`).
//!
//! Settings arrive as a JSON merge patch (RFC 7386): a field present with a value sets it, a field
//! set to `null` returns it to its default, an absent field is unchanged. Every field is checked
//! here; the store applies the patch atomically, so two workers applying two patches never lose
//! one of them.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::contract::inbound::parse_id;
use crate::contract::Rejection;

/// Allocation modes.
pub const MODES: &[&str] = &["auto", "manual", "broadcast", "custom", "off"];
/// Strategies for new visitors.
pub const STRATEGIES: &[&str] = &["least_loaded", "round_robin", "weighted"];
/// Strategies for returning visitors: the three above and two that prefer the original agent.
pub const RETURNING_STRATEGIES: &[&str] = &[
    "least_loaded",
    "round_robin",
    "weighted",
    "original_agent",
    "original_agent_if_available",
];
/// What makes a precedence level hand over to the next one.
pub const PRIORITY_OVERFLOWS: &[&str] = &["when_offline", "when_full"];
/// Conversation fields a rule may test; any other name is an attribute.
pub const RULE_FIELDS: &[&str] = &["channel", "channel_account", "language", "category"];

/// Every setting and its default: the one source of the defaults, for the store's script (which
/// gets them as a Lua table) and for `switchboard inspect`.
pub fn defaults() -> Map<String, Value> {
    let defaults = serde_json::json!({
        "mode": "auto",
        "new_visitors": "least_loaded",
        "returning_visitors": "original_agent_if_available",
        "include_busy": false,
        "include_offline": false,
        "reassign_reopened_if_unavailable": true,
        "reassign_if_owner_offline": true,
        "agent_can_claim": true,
        "agent_can_transfer": true,
        "reply_timeout_seconds": 0,
        "priority_overflow": "when_offline",
        "timezone": "UTC",
        "rules": [],
        "custom_timeout_seconds": 10,
        "release_on_offline": false,
        "visitor_memory_days": 30,
    });
    match defaults {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    }
}

/// A checked settings patch, serialized as it came (nulls kept: they mean "back to default").
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct SettingsPatch(pub Map<String, Value>);

impl SettingsPatch {
    pub fn parse(data: &Map<String, Value>) -> Result<SettingsPatch, Rejection> {
        for (field, value) in data {
            if value.is_null() {
                if !is_known(field) {
                    return Err(unknown(field));
                }
                continue;
            }
            check_field(field, value)?;
        }
        Ok(SettingsPatch(data.clone()))
    }
}

fn is_known(field: &str) -> bool {
    matches!(
        field,
        "mode"
            | "new_visitors"
            | "returning_visitors"
            | "include_busy"
            | "include_offline"
            | "reassign_reopened_if_unavailable"
            | "reassign_if_owner_offline"
            | "agent_can_claim"
            | "agent_can_transfer"
            | "reply_timeout_seconds"
            | "priority_overflow"
            | "timezone"
            | "rules"
            | "custom_timeout_seconds"
            | "release_on_offline"
            | "visitor_memory_days"
    )
}

fn unknown(field: &str) -> Rejection {
    Rejection::invalid(field, "is not a setting")
}

fn check_field(field: &str, value: &Value) -> Result<(), Rejection> {
    match field {
        "mode" => one_of(field, value, MODES),
        "new_visitors" => one_of(field, value, STRATEGIES),
        "returning_visitors" => one_of(field, value, RETURNING_STRATEGIES),
        "priority_overflow" => one_of(field, value, PRIORITY_OVERFLOWS),
        "include_busy"
        | "include_offline"
        | "reassign_reopened_if_unavailable"
        | "reassign_if_owner_offline"
        | "agent_can_claim"
        | "agent_can_transfer"
        | "release_on_offline" => {
            if value.is_boolean() {
                Ok(())
            } else {
                Err(Rejection::invalid(field, "must be true or false"))
            }
        }
        "reply_timeout_seconds" | "custom_timeout_seconds" => seconds(field, value).map(|_| ()),
        "timezone" => timezone(field, value).map(|_| ()),
        "visitor_memory_days" => match value.as_u64() {
            Some(days) if (1..=3650).contains(&days) => Ok(()),
            _ => Err(Rejection::invalid(
                field,
                "must be a whole number of days from 1 to 3650",
            )),
        },
        "rules" => check_rules(value),
        other => Err(unknown(other)),
    }
}

fn one_of(field: &str, value: &Value, allowed: &[&str]) -> Result<(), Rejection> {
    match value.as_str() {
        Some(s) if allowed.contains(&s) => Ok(()),
        _ => Err(Rejection::invalid(
            field,
            format!("must be one of {}", allowed.join(", ")),
        )),
    }
}

/// A whole number of seconds up to a week.
pub(crate) fn seconds(field: &str, value: &Value) -> Result<u64, Rejection> {
    value
        .as_u64()
        .filter(|s| *s <= 7 * 24 * 3600)
        .ok_or_else(|| Rejection::invalid(field, "must be a whole number of seconds up to 604800"))
}

/// An IANA time zone name.
pub(crate) fn timezone(field: &str, value: &Value) -> Result<chrono_tz::Tz, Rejection> {
    value
        .as_str()
        .and_then(|s| s.parse::<chrono_tz::Tz>().ok())
        .ok_or_else(|| Rejection::invalid(field, "must be an IANA time zone name"))
}

/// A list of identifiers (skills, channels).
pub(crate) fn id_list(field: &str, value: &Value) -> Result<(), Rejection> {
    let Value::Array(items) = value else {
        return Err(Rejection::invalid(field, "must be an array of identifiers"));
    };
    if items.len() > 256 {
        return Err(Rejection::invalid(field, "at most 256 entries"));
    }
    items
        .iter()
        .try_for_each(|item| parse_id(item, field).map(|_| ()))
}

fn check_rules(value: &Value) -> Result<(), Rejection> {
    let Value::Array(rules) = value else {
        return Err(Rejection::invalid("rules", "must be an array"));
    };
    if rules.len() > 100 {
        return Err(Rejection::invalid("rules", "at most 100 rules"));
    }
    for (i, rule) in rules.iter().enumerate() {
        let at = |what: &str| format!("rules[{i}].{what}");
        let Some(rule) = rule.as_object() else {
            return Err(Rejection::invalid(
                format!("rules[{i}]"),
                "must be an object",
            ));
        };
        match rule.get("when") {
            None => {}
            Some(Value::Object(conditions)) => {
                for (name, expected) in conditions {
                    let scalar = |v: &Value| v.is_string() || v.is_number() || v.is_boolean();
                    let ok = !name.is_empty()
                        && name.len() <= 128
                        && match expected {
                            Value::Array(values) => !values.is_empty() && values.iter().all(scalar),
                            other => scalar(other),
                        };
                    if !ok {
                        return Err(Rejection::invalid(
                            at("when"),
                            "maps field names to a value or a non-empty list of values",
                        ));
                    }
                }
            }
            Some(_) => return Err(Rejection::invalid(at("when"), "must be an object")),
        }
        let Some(Value::Array(steps)) = rule.get("route_to") else {
            return Err(Rejection::invalid(
                at("route_to"),
                "must be a non-empty array",
            ));
        };
        if steps.is_empty() || steps.len() > 16 {
            return Err(Rejection::invalid(
                at("route_to"),
                "must hold 1 to 16 steps",
            ));
        }
        for (j, step) in steps.iter().enumerate() {
            let field = |what: &str| format!("rules[{i}].route_to[{j}].{what}");
            let Some(step) = step.as_object() else {
                return Err(Rejection::invalid(field(""), "must be an object"));
            };
            for (key, v) in step {
                match key.as_str() {
                    "skills" | "channels" => id_list(&field(key), v)?,
                    "wait_seconds" => {
                        seconds(&field(key), v)?;
                    }
                    other => return Err(Rejection::invalid(field(other), "is not a step field")),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<SettingsPatch, Rejection> {
        SettingsPatch::parse(value.as_object().unwrap())
    }

    #[test]
    fn accepts_every_contract_setting_and_nulls() {
        let patch = parse(json!({
            "mode": "auto", "new_visitors": "weighted", "returning_visitors": "original_agent",
            "include_busy": true, "include_offline": false,
            "reassign_reopened_if_unavailable": true, "reassign_if_owner_offline": false,
            "agent_can_claim": true, "agent_can_transfer": false, "reply_timeout_seconds": 60,
            "priority_overflow": "when_full", "timezone": "Europe/Paris",
            "rules": [{"when": {"language": ["es", "pt"], "vip": true},
                       "route_to": [{"skills": ["spanish"], "wait_seconds": 30}, {"skills": []}]}],
            "custom_timeout_seconds": 10, "release_on_offline": true, "visitor_memory_days": 90
        }))
        .unwrap();
        assert_eq!(patch.0.len(), 16);
        // Every setting has a default, and only settings have one.
        for field in patch.0.keys() {
            assert!(defaults().contains_key(field), "{field} has no default");
        }
        assert_eq!(defaults().len(), 16);
        assert!(parse(json!({"mode": null, "rules": null})).is_ok());
    }

    #[test]
    fn rejects_bad_values_naming_the_setting() {
        let cases = [
            (json!({"mode": "turbo"}), "`mode`"),
            (json!({"new_visitors": "original_agent"}), "`new_visitors`"),
            (json!({"include_busy": "yes"}), "`include_busy`"),
            (json!({"timezone": "Mars/Olympus"}), "`timezone`"),
            (
                json!({"reply_timeout_seconds": -1}),
                "`reply_timeout_seconds`",
            ),
            (
                json!({"new_visitor": "weighted"}),
                "`new_visitor`: is not a setting",
            ),
            (json!({"bogus": null}), "`bogus`"),
            (json!({"rules": [{"route_to": []}]}), "rules[0].route_to"),
            (
                json!({"rules": [{"route_to": [{"skills": ["a b"]}]}]}),
                "rules[0].route_to[0].skills",
            ),
        ];
        for (value, expected) in cases {
            let error = parse(value).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
        }
    }
}
