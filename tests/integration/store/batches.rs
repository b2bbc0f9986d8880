//! Events that arrived together, applied in one call: a batch gives exactly the outputs its
//! events give one by one, and a redelivered batch replays them.

use serde_json::{json, Value};
use switchboard::contract::{InboundEvent, OutboundEvent};

use crate::helpers::*;

#[tokio::test]
async fn a_batch_applies_like_its_events_one_by_one() {
    let p = Project::new().await;
    p.online_agents(&[("a", 1)]).await;
    let conversation = |id: &str| {
        p.event(
            "conversation.created",
            json!({"conversation_id": id, "visitor_id": format!("v-{id}")}),
        )
    };
    let first = conversation("c1");
    let second = conversation("c2");
    // The project's day moves to another zone mid-batch: the worker assumed UTC for the
    // whole batch, so the rest is applied in a second call with the right zone.
    let rezoned = p.event("project.configured", json!({"timezone": "Asia/Tokyo"}));
    let closed = p.event("conversation.closed", json!({"conversation_id": "c1"}));
    let third = conversation("c3");
    let batch = [&first, &second, &rezoned, &first, &closed, &third];
    let applied = apply_batch(&p, &batch).await;

    assert_eq!(applied.len(), batch.len());
    assert_eq!(assigned_agents(&applied[0].outputs), ["a"]);
    assert_eq!(types(&applied[1].outputs), ["conversation.queued"]);
    // The first event again, inside the same batch: a duplicate, whose outputs the batch
    // publishes once (with its first copy).
    assert!(!applied[0].replayed());
    assert_eq!(applied[3].outcome, switchboard::store::Outcome::Duplicate);
    assert!(applied[3].outputs.is_empty());
    // Closing c1 hands the waiting c2 to the agent; c3 then waits.
    assert_eq!(assigned_agents(&applied[4].outputs), ["a"]);
    assert_eq!(types(&applied[5].outputs), ["conversation.queued"]);
    assert_eq!(p.load("a").await, 1);
    // Applied again (a redelivered batch), nothing changes and the same outputs come back;
    // an event that had none (the settings) is a duplicate, as is the in-batch repeat.
    let again = apply_batch(&p, &batch).await;
    for (i, (before, after)) in applied.iter().zip(&again).enumerate() {
        if i == 3 || before.outputs.is_empty() {
            assert_eq!(
                after.outcome,
                switchboard::store::Outcome::Duplicate,
                "event {i}"
            );
            assert!(after.outputs.is_empty());
            continue;
        }
        assert!(after.replayed(), "event {i}");
        assert_eq!(after.outputs, before.outputs);
    }
    assert_eq!(p.load("a").await, 1);
}

#[tokio::test]
async fn a_batch_sees_what_the_events_before_it_changed() {
    // Each event reads what the ones before it in the batch wrote (settings, agents, counters)
    // exactly as if it had been applied alone: the same events give the same outputs either way.
    let in_batch = batch_and_one_by_one_agree([
        limit("a", 1),
        online("a"),
        created("c1", "v1"),
        limit("a", 2),
        created("c2", "v2"),
        ("project.configured", json!({"mode": "manual"})),
        created("c3", "v3"),
        ("project.configured", json!({"mode": "auto"})),
        upserted(json!({"agent_id": "b", "max_concurrent": 1, "priority": 1})),
        online("b"),
        closed("c1"),
        created("c4", "v4"),
    ])
    .await;
    // And what they are: the raised limit serves c2, manual mode holds c3, the level-1 agent
    // takes it once it is online, and while that agent is online (and full) c4 waits for it
    // rather than go to the agent outside the levels, whose c1 was closed.
    assert_eq!(assigned_agents(&in_batch[4]), ["a"]);
    assert_eq!(types(&in_batch[6]), ["conversation.queued"]);
    assert_eq!(assigned_agents(&in_batch[9]), ["b"]);
    assert_eq!(types(&in_batch[11]), ["conversation.queued"]);
}

#[tokio::test]
async fn a_returning_visitor_in_a_batch_goes_back_to_the_agent_an_earlier_event_gave_it() {
    // An assignment earlier in the batch counts as the visitor's last agent for its next
    // conversation in the same batch, as it would one event at a time.
    let in_batch = batch_and_one_by_one_agree([
        limit("a", 5),
        online("a"),
        created("c1", "v"),
        closed("c1"),
        limit("b", 5),
        online("b"),
        created("c2", "v"),
    ])
    .await;
    let back = &in_batch[6];
    assert_eq!(assigned_agents(back), ["a"]);
    assert_eq!(back[0].data["reason"], "returning");
}

#[tokio::test]
async fn a_batch_finds_the_capacity_an_earlier_event_opened() {
    // Capacity opened within a batch (a close, a raised limit, an agent coming online) serves
    // the conversations waiting and the next ones, as it would one event at a time.
    let outputs = batch_and_one_by_one_agree([
        (
            "agent.upserted",
            json!({"agents": [{"agent_id": "a", "max_concurrent": 1}, {"agent_id": "b", "max_concurrent": 1}]}),
        ),
        online("a"),
        created("c1", "v-c1"),
        created("c2", "v-c2"),
        created("c3", "v-c3"),
        closed("c1"),
        created("c4", "v-c4"),
        limit("a", 2),
        created("c5", "v-c5"),
        online("b"),
        created("c6", "v-c6"),
    ])
    .await;
    assert_eq!(assigned_agents(&outputs[2]), ["a"]);
    assert_eq!(types(&outputs[3]), ["conversation.queued"]);
    assert_eq!(types(&outputs[4]), ["conversation.queued"]);
    // The close hands a's capacity to c2, the head of the queue; c4 then waits behind c3.
    assert_eq!(assigned_agents(&outputs[5]), ["a"]);
    assert_eq!(types(&outputs[6]), ["conversation.queued"]);
    // The raised limit takes c3; b coming online takes c4; c5 and c6 wait or go by capacity.
    assert_eq!(assigned_agents(&outputs[7]), ["a"]);
    assert_eq!(types(&outputs[8]), ["conversation.queued"]);
    assert_eq!(assigned_agents(&outputs[9]), ["b"]);
    assert_eq!(types(&outputs[10]), ["conversation.queued"]);
}

#[tokio::test]
async fn a_batch_follows_what_the_project_starts_using_in_it() {
    // Channel rights, capacities per channel and precedence levels come into play in a project
    // only once some agent has them: an event that gives the first agent one must change how
    // the next events of the same batch are decided, as it would one event at a time.
    let outputs = batch_and_one_by_one_agree([
        limit("a", 5),
        limit("b", 5),
        online("b"),
        created_on("c1", "email"),
        online("a"),
        // The project's first channel rights: email goes to b alone.
        upserted(json!({"agent_id": "a", "max_concurrent": 5, "channels": ["chat"]})),
        created_on("c2", "email"),
        // Its first capacity per channel: b, holding two emails, takes no third.
        upserted(json!({"agent_id": "b", "max_concurrent": 5, "capacity": {"email": 2}})),
        created_on("c3", "email"),
        // Its first precedence level: b serves before a, though a holds nothing.
        upserted(
            json!({"agent_id": "b", "max_concurrent": 5, "capacity": {"email": 2},
                        "priority": 1}),
        ),
        created_on("c4", "chat"),
    ])
    .await;
    assert_eq!(assigned_agents(&outputs[3]), ["b"]);
    assert_eq!(assigned_agents(&outputs[6]), ["b"]);
    assert_eq!(types(&outputs[8]), ["conversation.queued"]);
    assert_eq!(assigned_agents(&outputs[10]), ["b"]);
}

/// One event of a batch: its type and data.
type Step = (&'static str, Value);

/// One agent upserted, as `agent` describes it.
fn upserted(agent: Value) -> Step {
    ("agent.upserted", json!({ "agents": [agent] }))
}

/// One agent upserted with its `max_concurrent`.
fn limit(agent: &str, max_concurrent: u64) -> Step {
    upserted(json!({"agent_id": agent, "max_concurrent": max_concurrent}))
}

fn online(agent: &str) -> Step {
    (
        "agent.status_changed",
        json!({"agent_id": agent, "status": "online"}),
    )
}

fn created(conversation: &str, visitor: &str) -> Step {
    (
        "conversation.created",
        json!({"conversation_id": conversation, "visitor_id": visitor}),
    )
}

/// A conversation created on `channel`, its visitor named after it.
fn created_on(conversation: &str, channel: &str) -> Step {
    (
        "conversation.created",
        json!({"conversation_id": conversation, "visitor_id": format!("v-{conversation}"),
               "channel": channel}),
    )
}

fn closed(conversation: &str) -> Step {
    (
        "conversation.closed",
        json!({"conversation_id": conversation}),
    )
}

/// Applies the events one by one to one project and as one batch to another; asserts both
/// give the same outputs, and returns them.
async fn batch_and_one_by_one_agree<const N: usize>(steps: [Step; N]) -> Vec<Vec<OutboundEvent>> {
    let events = |p: &Project| {
        steps
            .clone()
            .map(|(event_type, data)| p.event(event_type, data))
    };
    let alone = Project::new().await;
    let mut one_by_one = vec![];
    for event in events(&alone) {
        one_by_one.push(alone.apply_event(&event).await.outputs);
    }
    let batched = Project::new().await;
    let batch = events(&batched);
    let applied = apply_batch(&batched, &batch.iter().collect::<Vec<_>>()).await;
    let in_batch: Vec<_> = applied.into_iter().map(|a| a.outputs).collect();
    assert_eq!(in_batch, one_by_one);
    in_batch
}

/// Applies a batch straight through the store; every event of it must succeed.
pub(super) async fn apply_batch(
    project: &Project,
    batch: &[&InboundEvent],
) -> Vec<switchboard::store::Applied> {
    let delivered: Vec<_> = batch.iter().map(|event| (*event).into()).collect();
    project
        .store
        .apply_batch(&delivered, project.now_ms)
        .await
        .unwrap()
        .into_iter()
        .map(|applied| applied.expect("the store applies each event"))
        .collect()
}
