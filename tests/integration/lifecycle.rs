//! Conversations that outlive one assignment: returning visitors, reopening, owners going
//! offline, and reply timeouts (through real delay queues).

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::contract::OutboundEvent;

use crate::helpers::*;

fn only(outputs: &[OutboundEvent]) -> &Value {
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    &outputs[0].data
}

async fn created_by(p: &Project, conversation: &str, visitor: &str) -> Vec<OutboundEvent> {
    p.apply(
        "conversation.created",
        json!({"conversation_id": conversation, "visitor_id": visitor}),
    )
    .await
}

async fn message(p: &Project, conversation: &str, visitor: &str) -> Vec<OutboundEvent> {
    p.apply(
        "message.received",
        json!({"conversation_id": conversation, "visitor_id": visitor}),
    )
    .await
}

#[tokio::test]
async fn a_returning_visitor_goes_back_to_an_available_original_agent() {
    let p = Project::new().await;
    p.online_agents(&[("a", 5), ("b", 5)]).await;
    let first = created_by(&p, "c1", "alice").await;
    let original = only(&first)["agent_id"].as_str().unwrap().to_string();
    p.close("c1").await;
    // Load the original agent so least_loaded alone would choose the other one.
    created_by(&p, "x1", "someone").await;
    let again = created_by(&p, "c2", "alice").await;
    assert_eq!(only(&again)["agent_id"], json!(original));
    assert_eq!(only(&again)["reason"], "returning");
    // Unavailable original agent: the new-visitor strategy decides, reason `new`.
    p.status(&original, "offline").await;
    let third = created_by(&p, "c3", "alice").await;
    assert_ne!(only(&third)["agent_id"], json!(original));
    assert_eq!(only(&third)["reason"], "new");
}

#[tokio::test]
async fn original_agent_ignores_status_and_limits_but_counts_the_load() {
    let p = Project::new().await;
    p.configure(json!({"returning_visitors": "original_agent"}))
        .await;
    p.online_agents(&[("a", 1), ("b", 5)]).await;
    p.status("b", "offline").await;
    created_by(&p, "c1", "alice").await; // a (the only one online)
    p.status("a", "offline").await;
    p.status("b", "online").await;
    let back = created_by(&p, "c2", "alice").await;
    assert_eq!(only(&back)["agent_id"], "a");
    assert_eq!(only(&back)["reason"], "returning");
    assert_eq!(
        p.load("a").await,
        2,
        "over its limit of 1, as the setting allows"
    );
    // Someone else's conversation never lands on the over-full, offline agent.
    assert_eq!(assigned_agents(&created_by(&p, "c3", "bob").await), ["b"]);
}

#[tokio::test]
async fn returning_visitors_can_use_a_strategy_and_are_forgotten_after_the_memory() {
    let mut p = Project::new().await;
    p.configure(json!({"returning_visitors": "round_robin", "visitor_memory_days": 1}))
        .await;
    p.online_agents(&[("a", 5), ("b", 5)]).await;
    created_by(&p, "c1", "alice").await;
    let back = created_by(&p, "c2", "alice").await;
    assert_eq!(only(&back)["reason"], "returning");
    assert_eq!(only(&back)["strategy"], "round_robin");
    p.now_ms += 2 * 86_400_000;
    let later = created_by(&p, "c3", "alice").await;
    assert_eq!(only(&later)["reason"], "new");
}

/// A visitor not served for longer than the memory is removed from Redis by the sweep, not
/// merely ignored by the lookup; a visitor served within the memory stays.
#[tokio::test]
async fn visitors_past_their_memory_leave_redis() {
    let mut p = Project::new().await;
    p.configure(json!({"visitor_memory_days": 1})).await;
    p.online_agents(&[("a", 1000)]).await;
    created_by(&p, "c1", "alice").await;
    created_by(&p, "c2", "bob").await;
    assert_eq!(p.remembered_visitors().await, ["alice", "bob"]);
    p.now_ms += 2 * 86_400_000;
    created_by(&p, "c3", "bob").await;
    // The sweep runs on one event in 16, picked by the call's random seed: 400 events miss it
    // with a probability below 1e-11.
    for i in 0..400 {
        p.status("a", if i % 2 == 0 { "busy" } else { "online" })
            .await;
    }
    // alice was last served two days ago, bob again just now.
    assert_eq!(p.remembered_visitors().await, ["bob"]);
    // Nor is alice's time kept, nor bob's first: only when bob was served last.
    let project = p.project();
    let served = switchboard::store::keys::project_key(&project, "served");
    let kept: Vec<String> = p
        .store
        .query(redis::cmd("LRANGE").arg(&served).arg(0).arg(-1))
        .await
        .unwrap();
    if store_layout() == 2 {
        // Spread over buckets, each visitor's time is in its memory alone.
        assert!(kept.is_empty(), "{kept:?}");
    } else {
        assert_eq!(kept, [format!("bob|{}", p.now_ms / 60_000)]);
    }
}

/// Visitors an earlier release remembered (the agent alone in `visitors`, the time in the
/// sorted set `visitor_seen`) are still recognised, and forgotten on time; one of them served
/// again since is remembered the new way, and that earlier sweep leaves them alone.
#[tokio::test]
async fn visitors_remembered_by_an_earlier_release_are_recognised_and_forgotten_on_time() {
    let mut p = Project::new().await;
    let project = p.project();
    let visitors = switchboard::store::keys::project_key(&project, "visitors");
    let seen = switchboard::store::keys::project_key(&project, "visitor_seen");
    for (visitor, agent) in [("alice", "b"), ("bob", "b")] {
        let _: () = p
            .store
            .query(redis::cmd("HSET").arg(&visitors).arg(visitor).arg(agent))
            .await
            .unwrap();
        let _: () = p
            .store
            .query(redis::cmd("ZADD").arg(&seen).arg(p.now_ms).arg(visitor))
            .await
            .unwrap();
    }
    // Then this release's workers take over.
    p.configure(json!({"visitor_memory_days": 1})).await;
    p.online_agents(&[("a", 1000), ("b", 1000)]).await;
    let back = created_by(&p, "c1", "alice").await;
    assert_eq!(only(&back)["agent_id"], "b");
    assert_eq!(only(&back)["reason"], "returning");

    p.now_ms += 2 * 86_400_000;
    assert_eq!(only(&created_by(&p, "c2", "bob").await)["reason"], "new");
    // The sweep runs on one event in 16 (see above).
    for i in 0..400 {
        p.status("a", if i % 2 == 0 { "busy" } else { "online" })
            .await;
    }
    assert_eq!(
        p.remembered_visitors().await,
        ["bob"],
        "alice was last served two days ago"
    );
    let left_seen: i64 = p
        .store
        .query(redis::cmd("EXISTS").arg(&seen))
        .await
        .unwrap();
    assert_eq!(
        left_seen, 0,
        "the earlier release's times are all forgotten"
    );
    let back = created_by(&p, "c3", "bob").await;
    assert_eq!(only(&back)["reason"], "returning");
}

#[tokio::test]
async fn a_reopened_conversation_returns_to_its_agent_or_moves_when_unavailable() {
    let p = Project::new().await;
    p.online_agents(&[("a", 5)]).await;
    created_by(&p, "c1", "v1").await;
    p.close("c1").await;
    assert_eq!(p.load("a").await, 0);
    let reopened = message(&p, "c1", "v1").await;
    assert_eq!(only(&reopened)["agent_id"], "a");
    assert_eq!(only(&reopened)["reason"], "reopened");
    assert_eq!(p.load("a").await, 1);
    p.close("c1").await;
    // Its agent goes offline: the reopened conversation goes to an available agent.
    p.online_agents(&[("b", 5)]).await;
    p.status("a", "offline").await;
    let moved = message(&p, "c1", "v1").await;
    assert_eq!(only(&moved)["agent_id"], "b");
    assert_eq!(only(&moved)["reason"], "reopened");
    assert_eq!(only(&moved)["previous_agent_id"], "a");
    // With the setting off, it goes back to its agent even when unavailable.
    p.close("c1").await;
    p.configure(json!({"reassign_reopened_if_unavailable": false}))
        .await;
    p.status("b", "offline").await;
    let kept = message(&p, "c1", "v1").await;
    assert_eq!(only(&kept)["agent_id"], "b");
    assert_eq!(p.load("b").await, 1);
}

#[tokio::test]
async fn a_visitor_writing_to_an_offline_owner_is_moved() {
    let p = Project::new().await;
    p.online_agents(&[("a", 5)]).await;
    created_by(&p, "c1", "v1").await;
    p.online_agents(&[("b", 5)]).await;
    p.status("a", "offline").await;
    // Nothing moves until the visitor writes.
    assert_eq!(p.load("a").await, 1);
    let moved = message(&p, "c1", "v1").await;
    assert_eq!(only(&moved)["agent_id"], "b");
    assert_eq!(only(&moved)["reason"], "owner_unavailable");
    assert_eq!(only(&moved)["previous_agent_id"], "a");
    assert_eq!((p.load("a").await, p.load("b").await), (0, 1));
    // A message to an online owner changes nothing.
    assert!(message(&p, "c1", "v1").await.is_empty());
    // With nobody available the conversation waits, and its owner's capacity is released.
    p.status("b", "offline").await;
    let waiting = message(&p, "c1", "v1").await;
    assert_eq!(
        types(&waiting),
        ["conversation.unassigned", "conversation.queued"]
    );
    assert_eq!(waiting[0].data["reason"], "owner_unavailable");
    assert_eq!(p.load("b").await, 0);
    // The first agent back online takes it.
    assert_eq!(assigned_agents(&p.status("a", "online").await), ["a"]);
}

#[tokio::test]
async fn owners_keep_their_conversations_when_the_setting_is_off() {
    let p = Project::new().await;
    p.configure(json!({"reassign_if_owner_offline": false}))
        .await;
    p.online_agents(&[("a", 5), ("b", 5)]).await;
    created_by(&p, "c1", "v1").await;
    let owner = if p.load("a").await == 1 { "a" } else { "b" };
    p.status(owner, "offline").await;
    assert!(message(&p, "c1", "v1").await.is_empty());
    assert_eq!(p.load(owner).await, 1);
}

#[tokio::test]
async fn release_on_offline_hands_conversations_over_at_once() {
    let p = Project::new().await;
    p.configure(json!({"release_on_offline": true})).await;
    p.online_agents(&[("a", 5)]).await;
    created_by(&p, "c1", "v1").await;
    created_by(&p, "c2", "v2").await;
    p.online_agents(&[("b", 1)]).await;
    let out = p.status("a", "offline").await;
    assert_eq!(
        types(&out),
        [
            "conversation.assigned",
            "conversation.unassigned",
            "conversation.queued"
        ]
    );
    assert_eq!(out[0].data["reason"], "owner_unavailable");
    assert_eq!(out[0].data["previous_agent_id"], "a");
    assert_eq!(p.load("a").await, 0);
}

#[tokio::test]
async fn a_reply_timeout_rotates_once_per_agent_and_a_reply_stops_it() {
    let p = Project::new().await;
    p.configure(json!({"reply_timeout_seconds": 30})).await;
    p.online_agents(&[("a", 5), ("b", 5)]).await;
    let created = p
        .apply_event(&p.event(
            "conversation.created",
            json!({"conversation_id": "c1", "visitor_id": "v"}),
        ))
        .await;
    let first = created.outputs[0].data["agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = if first == "a" { "b" } else { "a" };
    assert_eq!(created.timers.len(), 1);
    assert_eq!(created.timers[0].delay_ms, 30_000);
    let fire = |timer: &switchboard::contract::outbound::TimerRequest| {
        p.event("timer.fired", timer.data.clone())
    };
    let moved = p.apply_event(&fire(&created.timers[0])).await;
    assert_eq!(only(&moved.outputs)["agent_id"], json!(other));
    assert_eq!(only(&moved.outputs)["reason"], "reply_timeout");
    assert_eq!(only(&moved.outputs)["previous_agent_id"], json!(first));
    assert_eq!(p.load(&first).await, 0);
    // The stale timer of the first assignment, fired again, does nothing.
    assert!(p
        .apply_event(&fire(&created.timers[0]))
        .await
        .outputs
        .is_empty());
    // The second agent times out too: the first one timed out already, so it stays.
    assert!(p
        .apply_event(&fire(&moved.timers[0]))
        .await
        .outputs
        .is_empty());
    assert_eq!(p.load(other).await, 1);
    // A reply stops the clock of the current assignment.
    let c2 = p
        .apply_event(&p.event(
            "conversation.created",
            json!({"conversation_id": "c2", "visitor_id": "w"}),
        ))
        .await;
    let agent = c2.outputs[0].data["agent_id"].as_str().unwrap().to_string();
    p.apply(
        "agent.replied",
        json!({"conversation_id": "c2", "agent_id": agent}),
    )
    .await;
    assert!(p.apply_event(&fire(&c2.timers[0])).await.outputs.is_empty());
}

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn reply_timeouts_fire_through_the_broker_even_while_their_worker_is_down() {
    let mut env = Env::new().await;
    let worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.configure(&mut platform, json!({"reply_timeout_seconds": 1}))
        .await;
    env.team(&mut platform, &[("a", 5), ("b", 5)]).await;
    env.publish(&platform.created("c1")).await;
    let first = env.outputs(1, WAIT).await;
    let owner = first[0]["data"]["agent_id"].as_str().unwrap().to_string();
    // The worker that armed the timer stops; the timer is due while no worker runs.
    worker.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _second = env.spawn_worker().await;
    let moved = env.outputs(1, WAIT).await;
    assert_eq!(moved[0]["data"]["reason"], "reply_timeout");
    assert_eq!(moved[0]["data"]["previous_agent_id"], json!(owner));
    assert_ne!(moved[0]["data"]["agent_id"], json!(owner));
    // Nobody else is left to try: it stays, and nothing more is published.
    assert!(env
        .outputs_for(Duration::from_millis(2000))
        .await
        .is_empty());
    env.cleanup().await;
}

#[tokio::test]
async fn a_reply_racing_the_timeout_leaves_one_consistent_owner() {
    let mut env = Env::new().await;
    let _w1 = env.spawn_worker().await;
    let _w2 = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.configure(&mut platform, json!({"reply_timeout_seconds": 1}))
        .await;
    env.team(&mut platform, &[("a", 50), ("b", 50)]).await;
    let conversations: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    let events: Vec<Vec<u8>> = conversations.iter().map(|c| platform.created(c)).collect();
    env.publish_many(&events).await;
    let assigned = env.outputs(20, WAIT).await;
    let owners: std::collections::HashMap<String, String> = assigned
        .iter()
        .map(|o| {
            (
                o["data"]["conversation_id"].as_str().unwrap().into(),
                o["data"]["agent_id"].as_str().unwrap().into(),
            )
        })
        .collect();
    // Replies land right around the deadline.
    tokio::time::sleep(Duration::from_millis(950)).await;
    let replies: Vec<Vec<u8>> = conversations
        .iter()
        .map(|c| {
            platform.event(
                "agent.replied",
                json!({"conversation_id": c, "agent_id": owners[c]}),
            )
        })
        .collect();
    env.publish_many(&replies).await;
    let moves = env.outputs_for(Duration::from_secs(3)).await;
    let moved: std::collections::HashSet<&str> = moves
        .iter()
        .map(|o| o["data"]["conversation_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        moved.len(),
        moves.len(),
        "each conversation moved at most once"
    );
    // Whatever won each race, every conversation has exactly one owner and loads match.
    let store = store().await;
    let a = load_of(&store, &platform.project, "a").await;
    let b = load_of(&store, &platform.project, "b").await;
    assert_eq!(a + b, 20);
    let expected_a = conversations
        .iter()
        .filter(|c| {
            let moved_to = moves
                .iter()
                .find(|o| o["data"]["conversation_id"] == json!(c));
            match moved_to {
                Some(o) => o["data"]["agent_id"] == "a",
                None => owners[c.as_str()] == "a",
            }
        })
        .count() as i64;
    assert_eq!(a, expected_a);
    env.cleanup().await;
}

/// Closed conversations leave Redis after the closed retention (7 days by default), counted
/// from their last closing: one reopened and closed again stays for the retention after that
/// closing, as does a conversation closed before it was created. One an earlier release
/// closed (noted in the sorted set `closed`) leaves on time too.
#[tokio::test]
async fn closed_conversations_are_forgotten_a_retention_after_their_last_closing() {
    const DAY: i64 = 86_400_000;
    let mut p = Project::new().await;
    p.online_agents(&[("a", 1000)]).await;
    let project = p.project();
    let key = |name| switchboard::store::keys::project_key(&project, name);
    let (convs, closing, closed) = (key("convs"), key("closing"), key("closed"));

    for id in ["c1", "c2"] {
        created_by(&p, id, &format!("v-{id}")).await;
        p.close(id).await;
    }
    // Closed before its creation (a tombstone), then created by an event published after it.
    let mut tombstone = p.event("conversation.closed", json!({"conversation_id": "c3"}));
    tombstone.time_us = Some(1_000);
    p.apply_event(&tombstone).await;
    let earlier = json!({"s": "closed", "a": "a", "v": "v-c4", "n": 99, "an": 1});
    let _: () = p
        .store
        .query(
            redis::cmd("HSET")
                .arg(&convs)
                .arg("c4")
                .arg(earlier.to_string()),
        )
        .await
        .unwrap();
    let _: () = p
        .store
        .query(redis::cmd("ZADD").arg(&closed).arg(p.now_ms).arg("c4"))
        .await
        .unwrap();

    p.now_ms += DAY;
    message(&p, "c2", "v-c2").await; // reopened...
    let mut creation = p.event(
        "conversation.created",
        json!({"conversation_id": "c3", "visitor_id": "v-c3"}),
    );
    creation.time_us = Some(2_000);
    assert_eq!(
        only(&p.apply_event(&creation).await.outputs)["agent_id"],
        "a"
    );
    p.now_ms += 5 * DAY;
    p.close("c2").await;
    let mut close = p.event("conversation.closed", json!({"conversation_id": "c3"}));
    close.time_us = Some(3_000);
    p.apply_event(&close).await;

    p.now_ms += 2 * DAY; // 8 days after the first closings, 2 after the last
    sweep(&p).await;
    assert_eq!(p.fields(&convs).await, ["c2", "c3"]);
    let exists: i64 = p
        .store
        .query(redis::cmd("EXISTS").arg(&closed))
        .await
        .unwrap();
    assert_eq!(exists, 0, "the earlier release's closings are forgotten");

    p.now_ms += 6 * DAY;
    sweep(&p).await;
    assert!(p.fields(&convs).await.is_empty());
    let left: i64 = p
        .store
        .query(redis::cmd("LLEN").arg(&closing))
        .await
        .unwrap();
    assert_eq!(left, 0);
}

/// Flips an agent's status 400 times: the sweep that forgets old conversations and visitors
/// runs on one event in 16, picked by the call's random seed, and 400 events miss it with a
/// probability below 1e-11.
async fn sweep(p: &Project) {
    for i in 0..400 {
        p.status("a", if i % 2 == 0 { "busy" } else { "online" })
            .await;
    }
}
