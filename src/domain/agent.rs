//! Agents: their status and the fields an `agent.upserted` may change.

use serde::Serialize;
use serde_json::{Map, Value};

use super::settings::{id_list, timezone};
use crate::contract::inbound::parse_id;
use crate::contract::{Id, Rejection};

/// Largest `max_concurrent` and `daily_limit` accepted.
pub const MAX_LIMIT: u64 = 100_000;

/// An agent's own status in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    Online,
    Busy,
    Offline,
}

impl AgentStatus {
    pub fn parse(value: &Value) -> Result<AgentStatus, Rejection> {
        match value.as_str() {
            Some("online") => Ok(AgentStatus::Online),
            Some("busy") => Ok(AgentStatus::Busy),
            Some("offline") => Ok(AgentStatus::Offline),
            _ => Err(Rejection::invalid(
                "status",
                "must be one of online, busy, offline",
            )),
        }
    }
}

/// One entry of `agent.upserted`: the agent and the fields it changes. A field set to `null`
/// goes back to its default; an absent field is left as it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentPatch {
    pub agent_id: Id,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl AgentPatch {
    /// Checks one entry; `at` names it in errors (`agents[3]`).
    pub fn parse(entry: &Value, at: &str) -> Result<AgentPatch, Rejection> {
        let Value::Object(object) = entry else {
            return Err(Rejection::invalid(at, "must be an object"));
        };
        let agent_id = match object.get("agent_id") {
            None | Some(Value::Null) => {
                return Err(Rejection::MissingField(format!("{at}.agent_id")))
            }
            Some(value) => parse_id(value, &format!("{at}.agent_id"))?,
        };
        let mut fields = Map::new();
        for (name, value) in object {
            if name == "agent_id" {
                continue;
            }
            let field = format!("{at}.{name}");
            if !value.is_null() {
                check_field(name, &field, value)?;
            } else if !KNOWN_FIELDS.contains(&name.as_str()) {
                return Err(Rejection::invalid(field, "is not an agent field"));
            }
            fields.insert(name.clone(), value.clone());
        }
        Ok(AgentPatch { agent_id, fields })
    }
}

const KNOWN_FIELDS: &[&str] = &[
    "max_concurrent",
    "daily_limit",
    "weight",
    "priority",
    "order",
    "skills",
    "channels",
    "auto_assign",
    "schedule",
];

fn check_field(name: &str, field: &str, value: &Value) -> Result<(), Rejection> {
    match name {
        "max_concurrent" | "daily_limit" => match value.as_u64() {
            Some(n) if n <= MAX_LIMIT => Ok(()),
            _ => Err(Rejection::invalid(
                field,
                format!("must be a whole number from 0 to {MAX_LIMIT}"),
            )),
        },
        "weight" => match value.as_f64() {
            Some(w) if w > 0.0 && w <= 1e9 => Ok(()),
            _ => Err(Rejection::invalid(field, "must be a positive number")),
        },
        "priority" => match value.as_u64() {
            Some(p) if (1..=1_000_000).contains(&p) => Ok(()),
            _ => Err(Rejection::invalid(field, "must be a whole number from 1")),
        },
        "order" => match value.as_i64() {
            Some(o) if o.abs() <= 1_000_000_000 => Ok(()),
            _ => Err(Rejection::invalid(field, "must be a whole number")),
        },
        "skills" | "channels" => id_list(field, value),
        "auto_assign" => {
            if value.is_boolean() {
                Ok(())
            } else {
                Err(Rejection::invalid(field, "must be true or false"))
            }
        }
        "schedule" => check_schedule(field, value),
        _ => Err(Rejection::invalid(field, "is not an agent field")),
    }
}

/// The days of a schedule, Monday first.
pub const DAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn check_schedule(field: &str, value: &Value) -> Result<(), Rejection> {
    let Value::Object(schedule) = value else {
        return Err(Rejection::invalid(field, "must be an object"));
    };
    timezone(
        &format!("{field}.timezone"),
        schedule.get("timezone").unwrap_or(&Value::Null),
    )?;
    let hours = match schedule.get("hours") {
        Some(Value::Object(hours)) => hours,
        _ => {
            return Err(Rejection::invalid(
                format!("{field}.hours"),
                "must be an object",
            ))
        }
    };
    for (day, ranges) in hours {
        let at = format!("{field}.hours.{day}");
        if !DAYS.contains(&day.as_str()) {
            return Err(Rejection::invalid(
                at,
                "days are mon, tue, wed, thu, fri, sat, sun",
            ));
        }
        let Value::Array(ranges) = ranges else {
            return Err(Rejection::invalid(
                at,
                "must be a list of [start, end] pairs",
            ));
        };
        for range in ranges {
            let pair = range.as_array().filter(|r| r.len() == 2);
            let minutes =
                pair.and_then(|r| Some((parse_hhmm(r[0].as_str()?)?, parse_hhmm(r[1].as_str()?)?)));
            match minutes {
                Some((start, end)) if start < end && start < 24 * 60 => {}
                _ => {
                    return Err(Rejection::invalid(
                        at,
                        "each range is [\"HH:MM\", \"HH:MM\"] with start before end",
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Minutes since midnight of `HH:MM`; `24:00` is the end of the day.
pub fn parse_hhmm(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_nulls_and_values_apart() {
        let patch = AgentPatch::parse(
            &json!({"agent_id": "a1", "max_concurrent": 3, "daily_limit": null, "skills": ["es"]}),
            "agents[0]",
        )
        .unwrap();
        assert_eq!(patch.agent_id.as_str(), "a1");
        assert_eq!(patch.fields["max_concurrent"], json!(3));
        assert_eq!(patch.fields["daily_limit"], Value::Null);
        assert!(!patch.fields.contains_key("weight"));
    }

    #[test]
    fn rejects_bad_fields_with_their_path() {
        let cases = [
            (json!({"max_concurrent": 1}), "agents[0].agent_id"),
            (
                json!({"agent_id": "a", "max_concurrent": -1}),
                "agents[0].max_concurrent",
            ),
            (json!({"agent_id": "a", "weight": 0}), "agents[0].weight"),
            (
                json!({"agent_id": "a", "priority": 0}),
                "agents[0].priority",
            ),
            (json!({"agent_id": "a", "skills": "es"}), "agents[0].skills"),
            (
                json!({"agent_id": "a", "colour": "red"}),
                "agents[0].colour",
            ),
            (
                json!({"agent_id": "a", "schedule": {"timezone": "Europe/Paris", "hours": {"mon": [["17:00", "09:00"]]}}}),
                "agents[0].schedule.hours.mon",
            ),
            (
                json!({"agent_id": "a", "schedule": {"timezone": "Nowhere", "hours": {}}}),
                "agents[0].schedule.timezone",
            ),
        ];
        for (value, expected) in cases {
            let error = AgentPatch::parse(&value, "agents[0]")
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn schedule_times() {
        assert_eq!(parse_hhmm("09:30"), Some(570));
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        assert_eq!(parse_hhmm("24:01"), None);
        assert_eq!(parse_hhmm("9:30"), None);
        assert!(AgentPatch::parse(
            &json!({"agent_id": "a", "schedule": {"timezone": "Europe/Paris",
                    "hours": {"mon": [["09:00", "12:00"], ["13:00", "24:00"]]}}}),
            "agents[0]"
        )
        .is_ok());
    }
}
