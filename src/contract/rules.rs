//! A project's routing rules, as `project.configured` carries them in `rules`: the first rule
//! whose `when` matches a conversation routes it through its steps, each a wider set of agents.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::parse::{at, check_ids, check_max_waiting, check_seconds};
use super::skills::Skills;
use super::{Id, Rejection};

/// Most rules in a project.
pub const MAX_RULES: usize = 100;
/// Most steps in a rule.
pub const MAX_STEPS: usize = 16;
/// Longest name a rule condition may test.
pub const MAX_CONDITION_NAME: usize = 128;

/// A value a rule condition compares with: a string, a number or a boolean.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Scalar(Value);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Scalar, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if value.is_string() || value.is_number() || value.is_boolean() {
            Ok(Scalar(value))
        } else {
            Err(serde::de::Error::custom(
                "maps field names to a value or a non-empty list of values",
            ))
        }
    }
}

impl JsonSchema for Scalar {
    fn schema_name() -> Cow<'static, str> {
        "Scalar".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["string", "number", "boolean"]})
    }
}

/// What a condition accepts: one value, or any of a non-empty list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Condition {
    One(Scalar),
    /// Any of these (a non-empty list).
    Any(Vec<Scalar>),
}

/// How a step chooses among its eligible agents: `skill_level`, by the sum of their levels in
/// the step's skills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepOrder {
    SkillLevel,
}

/// One step of a rule: the skills and channels an agent needs, and how long to wait for one
/// before the next, wider step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleStep {
    /// The skills an agent needs: a list (each at level 1 or more), or an object of skill ids to
    /// minimum levels (`{"spanish": 5}` = level 5 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::skills::schema_or_null")]
    pub skills: Option<Skills>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub channels: Option<Vec<Id>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 604800))]
    pub wait_seconds: Option<u32>,
    /// A conversation that has waited this long at this step overflows (`conversation.overflowed`,
    /// reason `max_wait`) instead of widening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 604800))]
    pub max_wait_seconds: Option<u32>,
    /// A conversation that would wait at this step while this many already wait in its queue
    /// overflows at once (reason `queue_full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_waiting: Option<u32>,
    /// `skill_level`: the eligible agent with the highest sum of the step's skill levels is
    /// chosen, ties by the strategy (absent: the strategy alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_by: Option<StepOrder>,
}

/// A routing rule: the first whose `when` matches the conversation routes it through its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rule {
    /// Conversation field (`channel`, `channel_account`, `language`, `category`) or attribute
    /// name (optionally `attributes.<name>`), to a value or a list of values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<BTreeMap<String, Condition>>,
    #[schemars(length(min = 1, max = 16))]
    pub route_to: Vec<RuleStep>,
}

/// Checks what serde cannot: how many rules and steps, condition names, each step's lists,
/// delays and bounds, naming the rule and step.
pub fn check(rules: &[Rule]) -> Result<(), Rejection> {
    if rules.len() > MAX_RULES {
        return Err(Rejection::invalid("rules", "at most 100 rules"));
    }
    for (i, rule) in rules.iter().enumerate() {
        let rule_at = format!("rules[{i}]");
        for (name, condition) in rule.when.iter().flatten() {
            let empty_list = matches!(condition, Condition::Any(values) if values.is_empty());
            if name.is_empty() || name.len() > MAX_CONDITION_NAME || empty_list {
                return Err(Rejection::invalid(
                    at(&rule_at, "when"),
                    "maps field names to a value or a non-empty list of values",
                ));
            }
        }
        if rule.route_to.is_empty() || rule.route_to.len() > MAX_STEPS {
            return Err(Rejection::invalid(
                at(&rule_at, "route_to"),
                "must hold 1 to 16 steps",
            ));
        }
        for (j, step) in rule.route_to.iter().enumerate() {
            let step_at = format!("{rule_at}.route_to[{j}]");
            if let Some(skills) = &step.skills {
                skills.check(&at(&step_at, "skills"))?;
            }
            check_ids(
                &at(&step_at, "channels"),
                step.channels.as_deref().unwrap_or(&[]),
            )?;
            check_seconds(&at(&step_at, "wait_seconds"), step.wait_seconds)?;
            check_seconds(&at(&step_at, "max_wait_seconds"), step.max_wait_seconds)?;
            check_max_waiting(&at(&step_at, "max_waiting"), step.max_waiting)?;
        }
    }
    Ok(())
}
