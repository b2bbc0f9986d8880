//! JSON Schemas of every event, generated from the types below with schemars.
//!
//! These types describe the wire shape of each event's `data`; the checks that enforce it live in
//! `inbound` and `domain` (they need contract-worded errors and merge-patch nulls, which serde
//! derives cannot give). Tests keep the two honest: example events must pass both the schema and
//! `decode`, and every output the store produces must pass its schema. `switchboard schemas`
//! writes the files under `docs/schemas/`, and a test fails when they differ from these types.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Value};

use super::Id;

impl JsonSchema for Id {
    fn schema_name() -> Cow<'static, str> {
        "Identifier".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[A-Za-z0-9_.:@-]{1,128}$",
            "minLength": 1,
            "maxLength": 128,
            "description": "1-128 characters from A-Z a-z 0-9 _ . : @ -"
        })
    }
}

/// Merge-patch semantics: absent = unchanged, `null` = back to the default.
type Patch<T> = Option<Option<T>>;

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Auto,
    Manual,
    Broadcast,
    Custom,
    Off,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    LeastLoaded,
    RoundRobin,
    Weighted,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReturningStrategy {
    LeastLoaded,
    RoundRobin,
    Weighted,
    OriginalAgent,
    OriginalAgentIfAvailable,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriorityOverflow {
    WhenOffline,
    WhenFull,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Online,
    Busy,
    Offline,
}

/// A value a rule condition compares with.
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Number(f64),
    Flag(bool),
}

#[derive(JsonSchema)]
#[serde(untagged)]
pub enum Condition {
    One(Scalar),
    Any(Vec<Scalar>),
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleStep {
    #[serde(default)]
    pub skills: Vec<Id>,
    pub channels: Option<Vec<Id>>,
    #[schemars(range(max = 604800))]
    pub wait_seconds: Option<u32>,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Conversation field (`channel`, `channel_account`, `language`, `category`) or attribute
    /// name, to a value or a list of values.
    #[serde(default)]
    pub when: BTreeMap<String, Condition>,
    #[schemars(length(min = 1, max = 16))]
    pub route_to: Vec<RuleStep>,
}

/// `project.configured`: a JSON merge patch of the project's allocation settings.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfigured {
    pub mode: Patch<Mode>,
    pub new_visitors: Patch<Strategy>,
    pub returning_visitors: Patch<ReturningStrategy>,
    pub include_busy: Patch<bool>,
    pub include_offline: Patch<bool>,
    pub reassign_reopened_if_unavailable: Patch<bool>,
    pub reassign_if_owner_offline: Patch<bool>,
    pub agent_can_claim: Patch<bool>,
    pub agent_can_transfer: Patch<bool>,
    #[schemars(range(max = 604800))]
    pub reply_timeout_seconds: Patch<u32>,
    pub priority_overflow: Patch<PriorityOverflow>,
    /// IANA time zone name.
    pub timezone: Patch<String>,
    #[schemars(length(max = 100))]
    pub rules: Patch<Vec<Rule>>,
    #[schemars(range(max = 604800))]
    pub custom_timeout_seconds: Patch<u32>,
    /// Extension: an agent going offline releases its open conversations at once.
    pub release_on_offline: Patch<bool>,
    /// Extension: how long a visitor's last agent is remembered.
    #[schemars(range(min = 1, max = 3650))]
    pub visitor_memory_days: Patch<u32>,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// IANA time zone name.
    pub timezone: String,
    /// Days `mon`..`sun` to lists of `["HH:MM", "HH:MM"]` ranges (an end may be `24:00`).
    pub hours: BTreeMap<String, Vec<[String; 2]>>,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPatch {
    pub agent_id: Id,
    #[schemars(range(max = 100000))]
    pub max_concurrent: Patch<u32>,
    #[schemars(range(max = 100000))]
    pub daily_limit: Patch<u32>,
    /// A positive number.
    pub weight: Patch<f64>,
    #[schemars(range(min = 1))]
    pub priority: Patch<u32>,
    pub order: Patch<i64>,
    pub skills: Patch<Vec<Id>>,
    pub channels: Patch<Vec<Id>>,
    pub auto_assign: Patch<bool>,
    pub schedule: Patch<Schedule>,
}

#[derive(JsonSchema)]
pub struct AgentUpserted {
    #[schemars(length(min = 1, max = 1000))]
    pub agents: Vec<AgentPatch>,
}

#[derive(JsonSchema)]
pub struct AgentRef {
    pub agent_id: Id,
}

#[derive(JsonSchema)]
pub struct AgentStatusChanged {
    pub agent_id: Id,
    pub status: Status,
}

#[derive(JsonSchema)]
pub struct Conversation {
    pub conversation_id: Id,
    pub visitor_id: Id,
    pub channel: Option<Id>,
    pub channel_account: Option<Id>,
    #[schemars(length(min = 1, max = 128))]
    pub language: Option<String>,
    #[schemars(length(min = 1, max = 128))]
    pub category: Option<String>,
    /// Higher waits less.
    #[schemars(range(min = -1000000, max = 1000000))]
    pub priority: Option<i64>,
    /// A flat object of strings, numbers and booleans.
    pub attributes: Option<BTreeMap<String, Scalar>>,
}

#[derive(JsonSchema)]
pub struct ConversationAgent {
    pub conversation_id: Id,
    pub agent_id: Id,
}

#[derive(JsonSchema)]
pub struct ConversationRef {
    pub conversation_id: Id,
}

#[derive(JsonSchema)]
pub struct ClaimRequested {
    pub agent_id: Id,
    pub conversation_id: Option<Id>,
}

#[derive(JsonSchema)]
pub struct TransferRequested {
    pub conversation_id: Id,
    pub to_agent_id: Id,
    pub by_agent_id: Option<Id>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Timer {
    ReplyTimeout,
    CustomTimeout,
    RuleStep,
    Schedule,
    NewDay,
}

/// Internal: a due timer (arrives through the work queue, never from platforms). Conversation
/// timers name the conversation; `schedule` timers name the agent and carry its schedule.
#[derive(JsonSchema)]
pub struct TimerFired {
    pub timer: Timer,
    pub conversation_id: Option<Id>,
    pub agent_id: Option<Id>,
    pub token: u64,
    pub schedule: Option<Schedule>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentReason {
    New,
    Returning,
    Backlog,
    Reopened,
    OwnerUnavailable,
    ReplyTimeout,
    Claimed,
    Transferred,
    Custom,
    AgentRemoved,
    RuleEscalated,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversationAssigned {
    pub conversation_id: Id,
    pub agent_id: Id,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_agent_id: Option<Id>,
    pub reason: AssignmentReason,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueuedReason {
    NoEligibleAgent,
    Manual,
    Off,
    Broadcast,
    Custom,
    OfferWithdrawn,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversationQueued {
    pub conversation_id: Id,
    pub reason: QueuedReason,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversationOffered {
    pub conversation_id: Id,
    #[schemars(length(min = 1))]
    pub agent_ids: Vec<Id>,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversationUnassigned {
    pub conversation_id: Id,
    pub previous_agent_id: Id,
    pub reason: AssignmentReason,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    pub agent_id: Id,
    pub open: u32,
    pub max_concurrent: u32,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocationRequested {
    pub conversation_id: Id,
    #[schemars(length(min = 1))]
    pub candidates: Vec<Candidate>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusReason {
    Schedule,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentStatusAnnounced {
    pub agent_id: Id,
    pub status: Status,
    pub reason: StatusReason,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectionReason {
    ClaimingDisabled,
    TransferDisabled,
    UnknownAgent,
    UnknownConversation,
    AgentAtLimit,
    AlreadyAssigned,
    ConversationClosed,
    NothingWaiting,
    ConversationNotOpen,
    NoAllocationPending,
    AgentUnavailable,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRejected {
    pub reason: RejectionReason,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Id>,
}

/// Which way an event travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
    Internal,
}

/// One event type: its name, direction, and the schema of its `data`.
pub struct EventSchema {
    pub event_type: &'static str,
    pub direction: Direction,
    pub summary: &'static str,
    data: fn(&mut SchemaGenerator) -> Schema,
}

macro_rules! event {
    ($name:literal, $dir:ident, $ty:ty, $summary:literal) => {
        EventSchema {
            event_type: $name,
            direction: Direction::$dir,
            summary: $summary,
            data: |g| g.subschema_for::<$ty>(),
        }
    };
}

/// Every event of the contract (and the internal timer event).
pub fn events() -> Vec<EventSchema> {
    vec![
        event!(
            "project.configured",
            Inbound,
            ProjectConfigured,
            "Allocation settings, as a JSON merge patch."
        ),
        event!(
            "agent.upserted",
            Inbound,
            AgentUpserted,
            "Create agents or change some of their fields."
        ),
        event!(
            "agent.removed",
            Inbound,
            AgentRef,
            "The agent leaves; its open conversations are reassigned."
        ),
        event!(
            "agent.status_changed",
            Inbound,
            AgentStatusChanged,
            "The agent's own status in this project."
        ),
        event!(
            "conversation.created",
            Inbound,
            Conversation,
            "A new session."
        ),
        event!(
            "message.received",
            Inbound,
            Conversation,
            "The visitor sent a message."
        ),
        event!(
            "agent.replied",
            Inbound,
            ConversationAgent,
            "The assigned agent answered."
        ),
        event!(
            "conversation.closed",
            Inbound,
            ConversationRef,
            "The conversation is done."
        ),
        event!(
            "agent.claim_requested",
            Inbound,
            ClaimRequested,
            "The agent picks a conversation: that one, or the next waiting one."
        ),
        event!(
            "conversation.transfer_requested",
            Inbound,
            TransferRequested,
            "Hand a conversation to another agent."
        ),
        event!(
            "allocation.decided",
            Inbound,
            ConversationAgent,
            "A custom allocator's answer."
        ),
        event!(
            "timer.fired",
            Internal,
            TimerFired,
            "Internal: a timer armed by an earlier decision is due."
        ),
        event!(
            "conversation.assigned",
            Outbound,
            ConversationAssigned,
            "A conversation got an agent."
        ),
        event!(
            "conversation.queued",
            Outbound,
            ConversationQueued,
            "No agent now: the conversation waits."
        ),
        event!(
            "conversation.offered",
            Outbound,
            ConversationOffered,
            "Offered to these agents; the first claim wins."
        ),
        event!(
            "conversation.unassigned",
            Outbound,
            ConversationUnassigned,
            "The conversation lost its agent."
        ),
        event!(
            "allocation.requested",
            Outbound,
            AllocationRequested,
            "Mode custom: the external allocator is asked to decide."
        ),
        event!(
            "agent.status_changed",
            Outbound,
            AgentStatusAnnounced,
            "A schedule switched the agent's status."
        ),
        event!(
            "command.rejected",
            Outbound,
            CommandRejected,
            "A claim, transfer or decision that cannot be carried out."
        ),
    ]
}

impl EventSchema {
    /// The file name of this event's schema under `docs/schemas/`.
    pub fn file_name(&self) -> String {
        let dir = match self.direction {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Internal => "internal",
        };
        format!("{dir}/{}.json", self.event_type)
    }

    /// The whole CloudEvent (envelope and data) as a self-contained JSON Schema.
    pub fn schema(&self) -> Value {
        let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
            s.inline_subschemas = true;
        });
        let mut generator = settings.into_generator();
        let data = (self.data)(&mut generator).to_value();
        let mut extensions = serde_json::Map::new();
        extensions.insert("project".into(), Id::json_schema(&mut generator).to_value());
        let mut required = vec!["specversion", "id", "source", "type", "project", "data"];
        if self.direction == Direction::Outbound {
            extensions.insert(
                "causationid".into(),
                json!({"type": "string", "minLength": 1}),
            );
            required.push("causationid");
            extensions.insert(
                "sequence".into(),
                json!({
                    "type": "string",
                    "pattern": "^[0-9]{20}$",
                    "description": "CloudEvents sequence extension: grows with every decision \
                        about the conversation (the agent, for agent.status_changed); 20 digits, \
                        so that it orders as text too. A consumer keeps the event with the \
                        highest sequence per conversation (per agent) and may drop lower ones."
                }),
            );
            if self.event_type != "command.rejected" {
                required.push("sequence");
            }
        }
        let mut properties = json!({
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "minLength": 1, "maxLength": 256},
            "source": if self.direction == Direction::Inbound {
                json!({"type": "string", "minLength": 1})
            } else {
                json!({"const": "switchboard"})
            },
            "type": {"const": self.event_type},
            "time": if self.direction == Direction::Outbound {
                json!({"type": "string", "format": "date-time"})
            } else {
                json!({
                    "type": "string",
                    "format": "date-time",
                    "description": "RFC 3339, millisecond precision or finer, one clock per \
                        thing: events about one agent, setting or conversation take effect in \
                        this order; an older one arriving late changes nothing."
                })
            },
            "datacontenttype": {"type": "string", "pattern": "^application/json"},
            "data": data,
        });
        for (key, value) in extensions {
            properties[key] = value;
        }
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": format!("https://switchboard.dev/schemas/{}", self.file_name()),
            "title": self.event_type,
            "description": self.summary,
            "type": "object",
            "required": required,
            "properties": properties,
        })
    }
}
