//! `project.configured`: a JSON merge patch (RFC 7386) of a project's allocation settings.
//!
//! A field present with a value sets it, `null` returns it to its default, an absent field is
//! unchanged. Unknown setting names are rejected: a typo must not silently change nothing. The
//! defaults themselves are the domain's (`domain::settings::Settings`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::parse::{check_max_waiting, check_seconds, patch, timezone, typed, Patch};
use super::rules::{self, Rule};
use super::Rejection;

/// How long a visitor's last agent may be remembered, in days.
pub const VISITOR_MEMORY_DAYS: std::ops::RangeInclusive<u32> = 1..=3650;
/// How often a waiting conversation may get its position, in seconds.
pub const QUEUE_POSITION_INTERVAL: std::ops::RangeInclusive<u32> = 1..=300;
/// The longest `wrap_up_seconds`: a day.
pub const MAX_WRAP_UP_SECONDS: u32 = 24 * 3600;
/// The largest `away_after_missed`.
pub const MAX_MISSED: u32 = 1000;

/// Allocation modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Auto,
    Manual,
    Broadcast,
    Custom,
    Off,
}

/// Strategies for new visitors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    LeastLoaded,
    RoundRobin,
    Weighted,
}

/// Strategies for returning visitors: the three above and two that prefer the original agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReturningStrategy {
    LeastLoaded,
    RoundRobin,
    Weighted,
    OriginalAgent,
    OriginalAgentIfAvailable,
}

/// What makes a precedence level hand over to the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriorityOverflow {
    WhenOffline,
    WhenFull,
}

/// How `least_loaded` breaks its ties: `random`, or `longest_idle` (the agent whose last
/// assignment is oldest; one never assigned counts as oldest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TieBreak {
    Random,
    LongestIdle,
}

/// `project.configured`: a JSON merge patch of the project's allocation settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub mode: Patch<Mode>,
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub new_visitors: Patch<Strategy>,
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub returning_visitors: Patch<ReturningStrategy>,
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub include_busy: Patch<bool>,
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub include_offline: Patch<bool>,
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub reassign_reopened_if_unavailable: Patch<bool>,
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub reassign_if_owner_offline: Patch<bool>,
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub agent_can_claim: Patch<bool>,
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub agent_can_transfer: Patch<bool>,
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(max = 604800))]
    pub reply_timeout_seconds: Patch<u32>,
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub priority_overflow: Patch<PriorityOverflow>,
    /// IANA time zone name.
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub timezone: Patch<String>,
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 100))]
    pub rules: Patch<Vec<Rule>>,
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(max = 604800))]
    pub custom_timeout_seconds: Patch<u32>,
    /// Extension: an agent going offline releases its open conversations at once.
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub release_on_offline: Patch<bool>,
    /// Extension: how long a visitor's last agent is remembered.
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 3650))]
    pub visitor_memory_days: Patch<u32>,
    /// Waiting conversations get `conversation.queue_position` events.
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub queue_position_updates: Patch<bool>,
    /// At most one `conversation.queue_position` per conversation per this many seconds.
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 300))]
    pub queue_position_interval_seconds: Patch<u32>,
    /// 0 = off; a conversation that has waited this long overflows (reason `max_wait`).
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(max = 604800))]
    pub max_wait_seconds: Patch<u32>,
    /// 0 = off; a conversation that would wait while this many already wait in its queue
    /// overflows at once (reason `queue_full`).
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(max = 1000000))]
    pub max_waiting: Patch<u32>,
    /// 0 = off; each this many seconds of waiting counts as one `priority` level more.
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(max = 604800))]
    pub priority_aging_seconds: Patch<u32>,
    /// Extension: agents may hand a conversation back to the queue
    /// (`conversation.requeue_requested`).
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub agent_can_requeue: Patch<bool>,
    /// 0 = off; an open conversation without `message.received` for this long stops counting in
    /// its agent's load (it stays assigned) until the visitor writes again, when it counts again
    /// even above the limit.
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(max = 604800))]
    pub inactive_after_seconds: Patch<u32>,
    /// 0 = off; capacity freed by `conversation.closed` becomes usable by its agent this many
    /// seconds later.
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(max = 86400))]
    pub wrap_up_seconds: Patch<u32>,
    /// `least_loaded` ties: `random`, or `longest_idle` (the agent whose last assignment is
    /// oldest; never assigned counts as oldest).
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    pub tie_break: Patch<TieBreak>,
    /// 0 = off; an agent whose this many automatic assignments in a row moved away by
    /// `reply_timeout` is set `busy` (`agent.status_changed`, reason `missed_assignments`).
    #[serde(
        default,
        deserialize_with = "patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(max = 1000))]
    pub away_after_missed: Patch<u32>,
}

impl SettingsPatch {
    /// Checks a patch: every field a setting, every value one it may take.
    pub fn parse(data: &Map<String, Value>) -> Result<SettingsPatch, Rejection> {
        let patch: SettingsPatch = typed(&Value::Object(data.clone()), |path| {
            if path.contains("route_to[") {
                "a step field"
            } else {
                "a setting"
            }
        })?;
        patch.check()?;
        Ok(patch)
    }

    /// What serde cannot check.
    fn check(&self) -> Result<(), Rejection> {
        for (field, seconds) in [
            ("reply_timeout_seconds", &self.reply_timeout_seconds),
            ("custom_timeout_seconds", &self.custom_timeout_seconds),
            ("max_wait_seconds", &self.max_wait_seconds),
            ("priority_aging_seconds", &self.priority_aging_seconds),
            ("inactive_after_seconds", &self.inactive_after_seconds),
        ] {
            check_seconds(field, seconds.flatten())?;
        }
        if self
            .wrap_up_seconds
            .flatten()
            .is_some_and(|s| s > MAX_WRAP_UP_SECONDS)
        {
            return Err(Rejection::invalid(
                "wrap_up_seconds",
                format!("must be a whole number of seconds up to {MAX_WRAP_UP_SECONDS}"),
            ));
        }
        if self
            .away_after_missed
            .flatten()
            .is_some_and(|n| n > MAX_MISSED)
        {
            return Err(Rejection::invalid(
                "away_after_missed",
                format!("must be a whole number up to {MAX_MISSED}"),
            ));
        }
        if let Some(Some(interval)) = self.queue_position_interval_seconds {
            if !QUEUE_POSITION_INTERVAL.contains(&interval) {
                return Err(Rejection::invalid(
                    "queue_position_interval_seconds",
                    "must be a whole number of seconds from 1 to 300",
                ));
            }
        }
        check_max_waiting("max_waiting", self.max_waiting.flatten())?;
        if let Some(Some(zone)) = &self.timezone {
            timezone("timezone", zone)?;
        }
        if let Some(Some(days)) = self.visitor_memory_days {
            if !VISITOR_MEMORY_DAYS.contains(&days) {
                return Err(Rejection::invalid(
                    "visitor_memory_days",
                    "must be a whole number of days from 1 to 3650",
                ));
            }
        }
        if let Some(Some(rules)) = &self.rules {
            rules::check(rules)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::rules::StepOrder;
    use crate::contract::skills::Skills;
    use serde_json::json;

    fn parse(value: Value) -> Result<SettingsPatch, Rejection> {
        SettingsPatch::parse(value.as_object().unwrap())
    }

    #[test]
    fn accepts_every_contract_setting_and_nulls() {
        let given = json!({
            "mode": "auto", "new_visitors": "weighted", "returning_visitors": "original_agent",
            "include_busy": true, "include_offline": false,
            "reassign_reopened_if_unavailable": true, "reassign_if_owner_offline": false,
            "agent_can_claim": true, "agent_can_transfer": false, "reply_timeout_seconds": 60,
            "priority_overflow": "when_full", "timezone": "Europe/Paris",
            "rules": [{"when": {"language": ["es", "pt"], "vip": true},
                       "route_to": [{"skills": ["spanish"], "wait_seconds": 30}, {"skills": []}]}],
            "custom_timeout_seconds": 10, "release_on_offline": true, "visitor_memory_days": 90,
            "queue_position_updates": true, "queue_position_interval_seconds": 30,
            "max_wait_seconds": 600, "max_waiting": 50, "priority_aging_seconds": 120,
            "agent_can_requeue": false, "inactive_after_seconds": 900, "wrap_up_seconds": 60,
            "tie_break": "longest_idle", "away_after_missed": 3
        });
        let patch = parse(given.clone()).unwrap();
        // What the store gets back is what the platform sent.
        assert_eq!(serde_json::to_value(&patch).unwrap(), given);
        let nulls = parse(json!({"mode": null, "rules": null})).unwrap();
        assert_eq!(
            serde_json::to_value(&nulls).unwrap(),
            json!({"mode": null, "rules": null})
        );
    }

    #[test]
    fn a_step_may_ask_for_skill_levels_and_order_by_them() {
        let given = json!({"rules": [{"route_to": [
            {"skills": {"spanish": 5, "billing": 1}, "order_by": "skill_level", "wait_seconds": 30},
            {"skills": ["spanish"], "order_by": "skill_level"},
            {"skills": {}},
            {}
        ]}]});
        let patch = parse(given.clone()).unwrap();
        let steps = &patch.rules.clone().flatten().unwrap()[0].route_to;
        assert!(matches!(steps[0].skills, Some(Skills::Levels(_))));
        assert_eq!(steps[0].order_by, Some(StepOrder::SkillLevel));
        assert!(matches!(steps[1].skills, Some(Skills::List(_))));
        assert_eq!(steps[3].order_by, None);
        // The store gets each step's skills in the form the platform sent.
        assert_eq!(serde_json::to_value(&patch).unwrap(), given);
    }

    #[test]
    fn rejects_bad_step_levels_and_orders_naming_the_step() {
        let cases = [
            (
                json!({"rules": [{"route_to": [{}, {"skills": {"spanish": 11}}]}]}),
                "invalid field `rules[0].route_to[1].skills.spanish`: levels are whole numbers \
                 from 1 to 10",
            ),
            (
                json!({"rules": [{"route_to": [{"skills": {"spanish": 0}}]}]}),
                "invalid field `rules[0].route_to[0].skills.spanish`: levels are whole numbers \
                 from 1 to 10",
            ),
            (
                json!({"rules": [{"route_to": [{"skills": "spanish"}]}]}),
                "invalid field `rules[0].route_to[0].skills`: invalid type",
            ),
            (
                json!({"rules": [{"route_to": [{"order_by": "skill"}]}]}),
                "invalid field `rules[0].route_to[0].order_by`: unknown variant `skill`",
            ),
            (
                json!({"rules": [{"route_to": [{"skills":
                    (0..257).map(|i| (format!("s{i}"), json!(1))).collect::<Map<String, Value>>()}]}]}),
                "invalid field `rules[0].route_to[0].skills`: at most 256 entries",
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
                json!({"reply_timeout_seconds": 604801}),
                "`reply_timeout_seconds`: must be a whole number of seconds up to 604800",
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
            (
                json!({"rules": [{"route_to": [{"skill": ["a"]}]}]}),
                "`rules[0].route_to[0].skill`: is not a step field",
            ),
            (
                json!({"rules": [{"when": {"language": []}, "route_to": [{}]}]}),
                "rules[0].when",
            ),
            (json!({"visitor_memory_days": 0}), "`visitor_memory_days`"),
            (
                json!({"queue_position_interval_seconds": 0}),
                "`queue_position_interval_seconds`",
            ),
            (json!({"max_waiting": 1000001}), "`max_waiting`"),
            (
                json!({"rules": [{"route_to": [{"max_wait_seconds": 604801}]}]}),
                "rules[0].route_to[0].max_wait_seconds",
            ),
            (
                json!({"inactive_after_seconds": 604801}),
                "`inactive_after_seconds`: must be a whole number of seconds up to 604800",
            ),
            (
                json!({"wrap_up_seconds": 86401}),
                "`wrap_up_seconds`: must be a whole number of seconds up to 86400",
            ),
            (json!({"wrap_up_seconds": -1}), "`wrap_up_seconds`"),
            (
                json!({"tie_break": "oldest"}),
                "`tie_break`: unknown variant `oldest`, expected `random` or `longest_idle`",
            ),
            (
                json!({"away_after_missed": 1001}),
                "`away_after_missed`: must be a whole number up to 1000",
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
