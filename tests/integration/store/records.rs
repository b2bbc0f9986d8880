//! A conversation's record is kept compactly (it stays for the whole closed retention), and
//! the compact form still keeps its two versions apart.

use serde_json::{json, Value};
use switchboard::contract::{Id, InboundEvent};
use switchboard::store::keys;

use crate::helpers::*;

/// The event, stamped with a platform `time` (us).
fn at(mut event: InboundEvent, time_us: i64) -> InboundEvent {
    event.time_us = Some(time_us);
    event
}

/// The record as Redis holds it.
async fn stored_record(p: &Project, conversation: &str) -> Value {
    let key = keys::project_key(&Id::parse(&p.id).unwrap(), "convs");
    let raw: String = p
        .store
        .query(redis::cmd("HGET").arg(key).arg(conversation))
        .await
        .unwrap();
    serde_json::from_str(&raw).unwrap()
}

async fn holder(p: &Project, conversation: &str) -> Option<String> {
    let project = Id::parse(&p.id).unwrap();
    p.store.conversations(&project).await.unwrap()[conversation]
        .agent
        .clone()
}

#[tokio::test]
async fn a_record_leaves_out_what_it_can_and_keeps_its_versions_apart() {
    let p = Project::new().await;
    p.online_agents(&[("a", 5), ("b", 5)]).await;
    let created = p.event(
        "conversation.created",
        json!({"conversation_id": "c1", "visitor_id": "v1"}),
    );
    p.apply_event(&at(created, 1_000)).await;
    let first = holder(&p, "c1").await.expect("assigned at creation");
    let other = if first == "a" { "b" } else { "a" };

    // Assigned by its creation: one version for both, and no priority of 0.
    let record = stored_record(&p, "c1").await;
    assert_eq!(record["t"], "1000", "{record}");
    assert!(record.get("ta").is_none(), "{record}");
    assert!(record.get("p").is_none(), "{record}");

    // A later message moves the lifecycle alone: the assignment version stays 1000.
    let message = p.event(
        "message.received",
        json!({"conversation_id": "c1", "visitor_id": "v1"}),
    );
    p.apply_event(&at(message, 3_000)).await;
    let record = stored_record(&p, "c1").await;
    assert_eq!(
        (&record["t"], &record["ta"]),
        (&json!("3000"), &json!("1000"))
    );

    // So a transfer published between the two is newer than the assignment and applies...
    let transfer = p.event(
        "conversation.transfer_requested",
        json!({"conversation_id": "c1", "to_agent_id": other}),
    );
    p.apply_event(&at(transfer, 2_000)).await;
    assert_eq!(holder(&p, "c1").await.as_deref(), Some(other));
    // ...and one published before that transfer is stale.
    let back = p.event(
        "conversation.transfer_requested",
        json!({"conversation_id": "c1", "to_agent_id": first}),
    );
    let applied = p.apply_event(&at(back, 1_500)).await;
    assert!(applied.outputs.is_empty(), "{:?}", applied.outputs);
    assert_eq!(holder(&p, "c1").await.as_deref(), Some(other));

    // A priority other than 0 is kept.
    let urgent = p.event(
        "conversation.created",
        json!({"conversation_id": "c2", "visitor_id": "v2", "priority": 3}),
    );
    p.apply_event(&urgent).await;
    assert_eq!(stored_record(&p, "c2").await["p"], 3);
}

/// A record as the previous release wrote it (no versions, the priority in full) reads as
/// before: any timed event applies to it, and its first timed lifecycle event leaves it with no
/// assignment version, stored as "".
#[tokio::test]
async fn a_record_without_versions_gains_only_the_one_an_event_moves() {
    let p = Project::new().await;
    p.online_agents(&[("a", 5), ("b", 5)]).await;
    p.create("c1").await;
    let first = holder(&p, "c1").await.expect("assigned at creation");
    let other = if first == "a" { "b" } else { "a" };
    let key = keys::project_key(&Id::parse(&p.id).unwrap(), "convs");
    let legacy = json!({"s": "open", "a": first, "v": "v-c1", "p": 0, "n": 1, "an": 1});
    let _: () = p
        .store
        .query(
            redis::cmd("HSET")
                .arg(&key)
                .arg("c1")
                .arg(legacy.to_string()),
        )
        .await
        .unwrap();

    let message = p.event(
        "message.received",
        json!({"conversation_id": "c1", "visitor_id": "v-c1"}),
    );
    p.apply_event(&at(message, 5_000)).await;
    let record = stored_record(&p, "c1").await;
    assert_eq!((&record["t"], &record["ta"]), (&json!("5000"), &json!("")));
    // No assignment version: an older transfer still applies.
    let transfer = p.event(
        "conversation.transfer_requested",
        json!({"conversation_id": "c1", "to_agent_id": other}),
    );
    p.apply_event(&at(transfer, 4_000)).await;
    assert_eq!(holder(&p, "c1").await.as_deref(), Some(other));
    let record = stored_record(&p, "c1").await;
    assert_eq!(
        (&record["t"], &record["ta"]),
        (&json!("5000"), &json!("4000"))
    );
}
