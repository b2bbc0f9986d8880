//! A project's allocation settings, typed, with their defaults: the one place a default is
//! named. The store's function library gets them as a Lua table (`store::script`), `switchboard
//! inspect` shows them beside what a project set. A project changes them with
//! `project.configured` (its merge patch is the contract's `SettingsPatch`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::contract::rules::Rule;
use crate::contract::settings::{Mode, PriorityOverflow, ReturningStrategy, Strategy, TieBreak};

/// Every setting of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub mode: Mode,
    pub new_visitors: Strategy,
    pub returning_visitors: ReturningStrategy,
    pub include_busy: bool,
    pub include_offline: bool,
    pub reassign_reopened_if_unavailable: bool,
    pub reassign_if_owner_offline: bool,
    pub agent_can_claim: bool,
    pub agent_can_transfer: bool,
    /// 0 = off.
    pub reply_timeout_seconds: u32,
    pub priority_overflow: PriorityOverflow,
    /// IANA name; daily limits count per day in this zone.
    pub timezone: String,
    pub rules: Vec<Rule>,
    pub custom_timeout_seconds: u32,
    /// Extension: an agent going offline releases its open conversations at once.
    pub release_on_offline: bool,
    /// Extension: how long a visitor's last agent is remembered.
    pub visitor_memory_days: u32,
    pub queue_position_updates: bool,
    pub queue_position_interval_seconds: u32,
    /// 0 = off.
    pub max_wait_seconds: u32,
    /// 0 = off.
    pub max_waiting: u32,
    /// 0 = off.
    pub priority_aging_seconds: u32,
    /// Extension: agents may hand a conversation back to the queue.
    pub agent_can_requeue: bool,
    /// 0 = off; an open conversation without a visitor message for this long stops counting in
    /// its agent's load (it stays assigned) until the visitor writes again.
    pub inactive_after_seconds: u32,
    /// 0 = off; capacity freed by a close becomes usable by its agent this many seconds later.
    pub wrap_up_seconds: u32,
    /// How `least_loaded` breaks its ties.
    pub tie_break: TieBreak,
    /// 0 = off; this many automatic assignments in a row moved away by `reply_timeout` set the
    /// agent `busy`.
    pub away_after_missed: u32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            mode: Mode::Auto,
            new_visitors: Strategy::LeastLoaded,
            returning_visitors: ReturningStrategy::OriginalAgentIfAvailable,
            include_busy: false,
            include_offline: false,
            reassign_reopened_if_unavailable: true,
            reassign_if_owner_offline: true,
            agent_can_claim: true,
            agent_can_transfer: true,
            reply_timeout_seconds: 0,
            priority_overflow: PriorityOverflow::WhenOffline,
            timezone: "UTC".into(),
            rules: vec![],
            custom_timeout_seconds: 10,
            release_on_offline: false,
            visitor_memory_days: 30,
            queue_position_updates: false,
            queue_position_interval_seconds: 10,
            max_wait_seconds: 0,
            max_waiting: 0,
            priority_aging_seconds: 0,
            agent_can_requeue: true,
            inactive_after_seconds: 0,
            wrap_up_seconds: 0,
            tie_break: TieBreak::Random,
            away_after_missed: 0,
        }
    }
}

/// Every setting and its default, as JSON.
pub fn defaults() -> Map<String, Value> {
    match serde_json::to_value(Settings::default()) {
        Ok(Value::Object(map)) => map,
        _ => unreachable!("settings serialize to an object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::settings::SettingsPatch;

    #[test]
    fn every_setting_a_patch_may_set_has_a_default_and_only_those() {
        let schema = schemars::schema_for!(SettingsPatch).to_value();
        let settings: std::collections::BTreeSet<&String> =
            schema["properties"].as_object().unwrap().keys().collect();
        let defaults = defaults();
        let defaulted: std::collections::BTreeSet<&String> = defaults.keys().collect();
        assert_eq!(settings, defaulted);
    }

    #[test]
    fn the_defaults_are_the_contracts() {
        let defaults = defaults();
        assert_eq!(defaults["mode"], "auto");
        assert_eq!(defaults["new_visitors"], "least_loaded");
        assert_eq!(
            defaults["returning_visitors"],
            "original_agent_if_available"
        );
        assert_eq!(defaults["priority_overflow"], "when_offline");
        assert_eq!(defaults["custom_timeout_seconds"], 10);
        assert_eq!(defaults["rules"], serde_json::json!([]));
        assert_eq!(defaults["tie_break"], "random");
        for off in [
            "inactive_after_seconds",
            "wrap_up_seconds",
            "away_after_missed",
        ] {
            assert_eq!(defaults[off], 0, "{off}");
        }
        // What a project stored reads back with every setting it did not set at its default.
        let stored: Settings =
            serde_json::from_value(serde_json::json!({"mode": "manual"})).unwrap();
        assert_eq!(stored.mode, Mode::Manual);
        assert_eq!(stored.timezone, "UTC");
    }
}
