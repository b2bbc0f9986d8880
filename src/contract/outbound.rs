//! Outbound events: what a worker publishes to the outbound exchange.
//!
//! Their ids are derived from the causing event (project, id, position in the output list), so a
//! redelivered inbound event republishes byte-for-byte the same outputs and a consumer can drop
//! the repeats by id.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{CloudEvent, Id};

/// The `source` of every outbound event.
pub const SOURCE: &str = "switchboard";

/// Namespace of the UUIDv5 output ids (a fixed random UUID: changing it changes every id).
const OUTPUT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c1c_4a5e_93d2_4f0b_8a77_2f7e_0b1d_5c39);

/// One decision the store made: an event type, its data and, for an event about a conversation
/// (or an agent's status), its place in that thing's sequence of decisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundEvent {
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: Value,
    /// Grows with every decision about the conversation (the agent, for `agent.status_changed`):
    /// published as the CloudEvents `sequence` extension, so a consumer can keep the latest
    /// whatever order outputs of several workers arrive in. Recorded with the outputs, so a
    /// replay carries the same number.
    #[serde(rename = "q", default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
}

/// The `sequence` attribute as the contract writes it: 20 decimal digits, so that it orders as
/// text too.
pub fn sequence_text(sequence: u64) -> String {
    format!("{sequence:020}")
}

/// The id of the `index`-th output caused by event `causation_id` of `project`.
pub fn output_id(project: &Id, causation_id: &str, index: usize) -> Uuid {
    let name = format!("{}\n{}\n{}", project, causation_id, index);
    Uuid::new_v5(&OUTPUT_ID_NAMESPACE, name.as_bytes())
}

/// The CloudEvents body of an output.
pub fn envelope(
    project: &Id,
    causation_id: &str,
    index: usize,
    time: &str,
    event: &OutboundEvent,
) -> Vec<u8> {
    let sequence = event.sequence;
    let mut event = CloudEvent::new(
        project.as_str(),
        output_id(project, causation_id, index).to_string(),
        SOURCE,
        &event.event_type,
        event.data.clone(),
    )
    .time(time)
    .attribute("datacontenttype", "application/json")
    .attribute("causationid", causation_id);
    if let Some(sequence) = sequence {
        event = event.attribute("sequence", sequence_text(sequence));
    }
    event.to_bytes()
}

/// A timer a decision arms: after `delay_ms`, a `timer.fired` event with this id and data comes
/// back through the work queue.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TimerRequest {
    pub delay_ms: u64,
    pub id: String,
    pub data: Value,
}

/// The `timer.fired` event a timer comes back as, after its delay.
pub fn timer_event(project: &Id, timer: &TimerRequest, time: &str) -> Vec<u8> {
    CloudEvent::new(
        project.as_str(),
        timer.id.clone(),
        SOURCE,
        super::inbound::TIMER_FIRED,
        timer.data.clone(),
    )
    .time(time)
    .to_bytes()
}

/// The shapes of the outputs' `data`, for their JSON Schemas. The store's function library
/// writes the outputs; the schemas say what a consumer gets, and the tests check every output
/// against them.
pub mod data {
    use schemars::JsonSchema;

    use crate::contract::agents::AgentStatus;
    use crate::contract::settings::Strategy;
    use crate::contract::Id;

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
        /// The agent handed it back.
        Requeued,
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
    #[serde(rename_all = "snake_case")]
    pub enum UnassignedReason {
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
        /// The agent handed it back (`conversation.requeue_requested`).
        Requeued,
    }

    #[derive(JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct ConversationUnassigned {
        pub conversation_id: Id,
        pub previous_agent_id: Id,
        pub reason: UnassignedReason,
    }

    /// Where a waiting conversation stands: 1 is next in its queue of `waiting`.
    #[derive(JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct ConversationQueuePosition {
        pub conversation_id: Id,
        #[schemars(range(min = 1))]
        pub position: u32,
        #[schemars(range(min = 1))]
        pub waiting: u32,
        /// Once the queue's recent departures allow an estimate.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub estimated_wait_seconds: Option<u32>,
    }

    #[derive(JsonSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum OverflowReason {
        MaxWait,
        QueueFull,
    }

    /// The conversation no longer waits: the platform decides what follows.
    #[derive(JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct ConversationOverflowed {
        pub conversation_id: Id,
        pub reason: OverflowReason,
        pub waited_seconds: u32,
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
        /// The agent's schedule opened or closed.
        Schedule,
        /// `away_after_missed` automatic assignments in a row moved away by `reply_timeout`:
        /// the agent is set `busy`.
        MissedAssignments,
    }

    #[derive(JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct AgentStatusAnnounced {
        pub agent_id: Id,
        pub status: AgentStatus,
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
        RequeueDisabled,
        ConversationOverflowed,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let p = Id::parse("acme").unwrap();
        let q = Id::parse("other").unwrap();
        assert_eq!(output_id(&p, "e1", 0), output_id(&p, "e1", 0));
        assert_ne!(output_id(&p, "e1", 0), output_id(&p, "e1", 1));
        assert_ne!(output_id(&p, "e1", 0), output_id(&p, "e2", 0));
        assert_ne!(output_id(&p, "e1", 0), output_id(&q, "e1", 0));
    }

    #[test]
    fn envelope_carries_causation_and_project() {
        let p = Id::parse("acme").unwrap();
        let event = OutboundEvent {
            event_type: "conversation.queued".into(),
            data: json!({"conversation_id": "c1", "reason": "new"}),
            sequence: Some(7),
        };
        let body: Value =
            serde_json::from_slice(&envelope(&p, "e1", 0, "2026-11-22T10:00:00Z", &event)).unwrap();
        assert_eq!(body["source"], "switchboard");
        assert_eq!(body["causationid"], "e1");
        assert_eq!(body["project"], "acme");
        assert_eq!(body["type"], "conversation.queued");
        assert_eq!(body["data"]["conversation_id"], "c1");
        assert_eq!(body["sequence"], "00000000000000000007");
    }

    #[test]
    fn sequences_order_as_text_too() {
        let (small, large) = (sequence_text(9), sequence_text(10));
        assert_eq!(small.len(), 20);
        assert!(small < large);
        assert_eq!(sequence_text(u64::MAX).len(), 20);
    }
}
