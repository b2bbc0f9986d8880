//! Agents on the wire: their status, and the fields an `agent.upserted` may change.
//!
//! Every field of a patch is optional: absent means unchanged, `null` back to the default.
//! Unknown fields are rejected: a typo must not silently change nothing.

use std::collections::BTreeMap;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::parse::{at, check_ids, patch, timezone, typed, Patch, MAX_IDS};
use super::skills::Skills;
use super::{Id, Rejection};

/// Largest `max_concurrent` and `daily_limit` accepted.
pub const MAX_LIMIT: u32 = 100_000;
/// Largest `weight` accepted.
pub const MAX_WEIGHT: f64 = 1e9;
/// Precedence levels accepted (1 is served first).
pub const PRIORITIES: std::ops::RangeInclusive<u32> = 1..=1_000_000;
/// Largest `order`, either way.
pub const MAX_ORDER: i64 = 1_000_000_000;
/// Most agents one `agent.upserted` may carry.
pub const MAX_AGENTS_PER_UPSERT: usize = 1000;
/// The days of a schedule, Monday first.
pub const DAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// An agent's own status in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    Online,
    Busy,
    Offline,
}

/// Weekly hours in the agent's own time zone: online during them, offline outside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Schedule {
    /// IANA time zone name.
    pub timezone: String,
    /// Days `mon`..`sun` to lists of `["HH:MM", "HH:MM"]` ranges (an end may be `24:00`).
    pub hours: BTreeMap<String, Vec<[String; 2]>>,
}

impl Schedule {
    /// What serde cannot check; `field` names the schedule in errors.
    pub fn check(&self, field: &str) -> Result<(), Rejection> {
        timezone(&at(field, "timezone"), &self.timezone)?;
        for (day, ranges) in &self.hours {
            let day_at = at(field, &format!("hours.{day}"));
            if !DAYS.contains(&day.as_str()) {
                return Err(Rejection::invalid(
                    day_at,
                    "days are mon, tue, wed, thu, fri, sat, sun",
                ));
            }
            for [start, end] in ranges {
                match (parse_hhmm(start), parse_hhmm(end)) {
                    (Some(start), Some(end)) if start < end && start < 24 * 60 => {}
                    _ => {
                        return Err(Rejection::invalid(
                            day_at,
                            "each range is [\"HH:MM\", \"HH:MM\"] with start before end",
                        ))
                    }
                }
            }
        }
        Ok(())
    }
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

/// One entry of `agent.upserted`: the agent and the fields it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPatch {
    pub agent_id: Id,
    /// Conversations the agent may hold open at once; 0 = never assigned automatically.
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(max = 100000))]
    pub max_concurrent: Patch<u32>,
    /// Assignments per day, in the project's time zone.
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(max = 100000))]
    pub daily_limit: Patch<u32>,
    /// Share for the `weighted` strategy: a positive number.
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub weight: Patch<f64>,
    /// Precedence level, 1 first; none = outside the precedence queue.
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1))]
    pub priority: Patch<u32>,
    /// Position for the `round_robin` strategy.
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub order: Patch<i64>,
    /// Skills, languages, divisions the agent serves: a list (level 1 each) or an object of
    /// skill ids to levels from 1 to 10 (`{"spanish": 7, "billing": 3}`).
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "super::skills::schema_or_null")]
    pub skills: Patch<Skills>,
    /// The channels or channel accounts the agent may receive from (all when absent).
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub channels: Patch<Vec<Id>>,
    /// Channels to the most open conversations from that channel the agent may hold, on top of
    /// `max_concurrent`, which stays the overall limit; a channel not listed is bounded by
    /// `max_concurrent` alone.
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "capacity_schema")]
    pub capacity: Patch<BTreeMap<Id, u32>>,
    /// false = excluded from automatic assignment (may still claim).
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub auto_assign: Patch<bool>,
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub schedule: Patch<Schedule>,
}

impl AgentPatch {
    /// What serde cannot check; `at_entry` names the entry in errors (`agents[3]`).
    fn check(&self, at_entry: &str) -> Result<(), Rejection> {
        let field = |name: &str| at(at_entry, name);
        for (name, limit) in [
            ("max_concurrent", self.max_concurrent),
            ("daily_limit", self.daily_limit),
        ] {
            if limit.flatten().is_some_and(|n| n > MAX_LIMIT) {
                return Err(Rejection::invalid(
                    field(name),
                    format!("must be a whole number from 0 to {MAX_LIMIT}"),
                ));
            }
        }
        if self
            .weight
            .flatten()
            .is_some_and(|w| !(w > 0.0 && w <= MAX_WEIGHT))
        {
            return Err(Rejection::invalid(
                field("weight"),
                "must be a positive number",
            ));
        }
        if self
            .priority
            .flatten()
            .is_some_and(|p| !PRIORITIES.contains(&p))
        {
            return Err(Rejection::invalid(
                field("priority"),
                "must be a whole number from 1",
            ));
        }
        if self.order.flatten().is_some_and(|o| o.abs() > MAX_ORDER) {
            return Err(Rejection::invalid(field("order"), "must be a whole number"));
        }
        if let Some(Some(skills)) = &self.skills {
            skills.check(&field("skills"))?;
        }
        if let Some(Some(channels)) = &self.channels {
            check_ids(&field("channels"), channels)?;
        }
        if let Some(Some(capacity)) = &self.capacity {
            let capacity_at = field("capacity");
            if capacity.len() > MAX_IDS {
                return Err(Rejection::invalid(capacity_at, "at most 256 entries"));
            }
            for (channel, limit) in capacity {
                if *limit > MAX_LIMIT {
                    return Err(Rejection::invalid(
                        at(&capacity_at, channel.as_str()),
                        format!("must be a whole number from 0 to {MAX_LIMIT}"),
                    ));
                }
            }
        }
        if let Some(Some(schedule)) = &self.schedule {
            schedule.check(&field("schedule"))?;
        }
        Ok(())
    }
}

/// The schema of `capacity`: channel ids to whole numbers up to [`MAX_LIMIT`], or `null`.
fn capacity_schema(generator: &mut SchemaGenerator) -> Schema {
    let id = Id::json_schema(generator).to_value();
    json_schema!({
        "type": ["object", "null"],
        "propertyNames": {
            "pattern": id["pattern"],
            "minLength": id["minLength"],
            "maxLength": id["maxLength"],
        },
        "additionalProperties": {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
        "maxProperties": MAX_IDS,
    })
}

/// `agent.upserted`: create agents or change some of their fields, several at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentsUpserted {
    #[schemars(length(min = 1, max = 1000))]
    pub agents: Vec<AgentPatch>,
}

impl AgentsUpserted {
    pub fn parse(data: &Value) -> Result<AgentsUpserted, Rejection> {
        let upserted: AgentsUpserted = typed(data, |_| "an agent field")?;
        if upserted.agents.is_empty() || upserted.agents.len() > MAX_AGENTS_PER_UPSERT {
            return Err(Rejection::invalid(
                "agents",
                format!("must hold 1 to {MAX_AGENTS_PER_UPSERT} entries"),
            ));
        }
        for (i, patch) in upserted.agents.iter().enumerate() {
            patch.check(&format!("agents[{i}]"))?;
        }
        Ok(upserted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(agent: Value) -> Result<AgentsUpserted, Rejection> {
        AgentsUpserted::parse(&json!({ "agents": [agent] }))
    }

    #[test]
    fn keeps_nulls_and_values_apart() {
        let given =
            json!({"agent_id": "a1", "max_concurrent": 3, "daily_limit": null, "skills": ["es"]});
        let patch = parse(given.clone()).unwrap().agents.remove(0);
        assert_eq!(patch.agent_id.as_str(), "a1");
        assert_eq!(patch.max_concurrent, Some(Some(3)));
        assert_eq!(patch.daily_limit, Some(None));
        assert_eq!(patch.weight, None);
        // The store gets the patch as the platform sent it.
        assert_eq!(serde_json::to_value(&patch).unwrap(), given);
    }

    #[test]
    fn skill_levels_and_capacity_reach_the_store_as_sent() {
        let given = json!({
            "agent_id": "a1",
            "skills": {"spanish": 7, "billing": 3},
            "capacity": {"email": 10, "chat": 3, "wa:main": 0}
        });
        let patch = parse(given.clone()).unwrap().agents.remove(0);
        let Some(Some(Skills::Levels(levels))) = &patch.skills else {
            panic!("an object of skills is read as levels: {:?}", patch.skills)
        };
        assert_eq!(levels[&Id::parse("spanish").unwrap()], 7);
        let capacity = patch.capacity.clone().flatten().unwrap();
        assert_eq!(capacity[&Id::parse("chat").unwrap()], 3);
        assert_eq!(serde_json::to_value(&patch).unwrap(), given);

        // A list stays a list, and null still means back to the default.
        let list = json!({"agent_id": "a1", "skills": ["es", "pt"], "capacity": null});
        let patch = parse(list.clone()).unwrap().agents.remove(0);
        assert!(matches!(patch.skills, Some(Some(Skills::List(_)))));
        assert_eq!(patch.capacity, Some(None));
        assert_eq!(serde_json::to_value(&patch).unwrap(), list);
        let cleared = json!({"agent_id": "a1", "skills": null, "capacity": {}});
        let patch = parse(cleared.clone()).unwrap().agents.remove(0);
        assert_eq!(serde_json::to_value(&patch).unwrap(), cleared);
    }

    #[test]
    fn rejects_bad_levels_and_capacities_with_their_path() {
        let many: BTreeMap<String, u32> = (0..257).map(|i| (format!("c{i}"), 1)).collect();
        let many_skills: Vec<String> = (0..257).map(|i| format!("s{i}")).collect();
        let cases = [
            (
                json!({"agent_id": "a", "skills": {"spanish": 11}}),
                "invalid field `agents[0].skills.spanish`: levels are whole numbers from 1 to 10",
            ),
            (
                json!({"agent_id": "a", "skills": {"spanish": 0}}),
                "invalid field `agents[0].skills.spanish`: levels are whole numbers from 1 to 10",
            ),
            (
                json!({"agent_id": "a", "skills": {"spanish": 2.5}}),
                "invalid field `agents[0].skills.spanish`: levels are whole numbers from 1 to 10",
            ),
            (
                json!({"agent_id": "a", "skills": {"spanish": null}}),
                "invalid field `agents[0].skills.spanish`: levels are whole numbers from 1 to 10",
            ),
            (
                json!({"agent_id": "a", "skills": {"a b": 3}}),
                "invalid field `agents[0].skills.a b`: a b has a character",
            ),
            (
                json!({"agent_id": "a", "skills": ["es", "a b"]}),
                "invalid field `agents[0].skills[1]`: a b has a character",
            ),
            (
                json!({"agent_id": "a", "skills": 7}),
                "invalid field `agents[0].skills`: invalid type: integer `7`, expected a list of \
                 skill ids or an object of skill ids to levels from 1 to 10",
            ),
            (
                json!({"agent_id": "a", "skills": many_skills}),
                "invalid field `agents[0].skills`: at most 256 entries",
            ),
            (
                json!({"agent_id": "a", "capacity": {"email": 100001}}),
                "invalid field `agents[0].capacity.email`: must be a whole number from 0 to 100000",
            ),
            (
                json!({"agent_id": "a", "capacity": {"email": -1}}),
                "invalid field `agents[0].capacity.email`: invalid value: integer `-1`",
            ),
            (
                json!({"agent_id": "a", "capacity": {"a}b": 1}}),
                "invalid field `agents[0].capacity.a}b`: a}b has a character",
            ),
            (
                json!({"agent_id": "a", "capacity": ["email"]}),
                "invalid field `agents[0].capacity`: invalid type: sequence, expected a map",
            ),
            (
                json!({"agent_id": "a", "capacity": many}),
                "invalid field `agents[0].capacity`: at most 256 entries",
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

    #[test]
    fn rejects_bad_fields_with_their_path() {
        let cases = [
            (json!({"max_concurrent": 1}), "agents[0].agent_id"),
            (
                json!({"agent_id": "a", "max_concurrent": -1}),
                "agents[0].max_concurrent",
            ),
            (
                json!({"agent_id": "a", "max_concurrent": 100001}),
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
                "`agents[0].colour`: is not an agent field",
            ),
            (
                json!({"agent_id": "a", "colour": null}),
                "`agents[0].colour`: is not an agent field",
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
            let error = parse(value).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
        }
        let none = AgentsUpserted::parse(&json!({"agents": []})).unwrap_err();
        assert!(none.to_string().contains("1 to 1000"));
    }

    #[test]
    fn schedule_times() {
        assert_eq!(parse_hhmm("09:30"), Some(570));
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        assert_eq!(parse_hhmm("24:01"), None);
        assert_eq!(parse_hhmm("9:30"), None);
        assert!(parse(
            json!({"agent_id": "a", "schedule": {"timezone": "Europe/Paris",
                "hours": {"mon": [["09:00", "12:00"], ["13:00", "24:00"]]}}})
        )
        .is_ok());
    }
}
