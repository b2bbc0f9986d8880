//! Agent-driven modes: claims, transfers, broadcast offers and custom allocation.

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::contract::OutboundEvent;

use crate::helpers::*;

async fn claim(p: &Project, agent: &str, conversation: Option<&str>) -> Vec<OutboundEvent> {
    let mut data = json!({"agent_id": agent});
    if let Some(c) = conversation {
        data["conversation_id"] = json!(c);
    }
    p.apply("agent.claim_requested", data).await
}

fn rejection(outputs: &[OutboundEvent]) -> String {
    assert_eq!(types(outputs), ["command.rejected"], "{outputs:?}");
    outputs[0].data["reason"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn manual_mode_waits_for_claims_in_priority_then_arrival_order() {
    let p = Project::new().await;
    p.configure(json!({"mode": "manual"})).await;
    p.online_agents(&[("a", 2), ("b", 1)]).await;
    p.create("first").await;
    p.apply(
        "conversation.created",
        json!({"conversation_id": "urgent", "visitor_id": "v", "priority": 9}),
    )
    .await;
    p.create("second").await;
    assert_eq!(p.waiting().await, ["urgent", "first", "second"]);
    let got = claim(&p, "a", None).await;
    assert_eq!(got[0].data["conversation_id"], "urgent");
    assert_eq!(got[0].data["reason"], "claimed");
    let got = claim(&p, "b", Some("second")).await;
    assert_eq!(got[0].data["agent_id"], "b");
    assert_eq!(rejection(&claim(&p, "b", None).await), "agent_at_limit");
    assert_eq!(
        rejection(&claim(&p, "a", Some("second")).await),
        "already_assigned"
    );
    assert_eq!(
        rejection(&claim(&p, "a", Some("nope")).await),
        "unknown_conversation"
    );
    assert_eq!(rejection(&claim(&p, "ghost", None).await), "unknown_agent");
    claim(&p, "a", None).await;
    assert_eq!(rejection(&claim(&p, "a", None).await), "agent_at_limit");
    p.close("first").await;
    assert_eq!(rejection(&claim(&p, "a", None).await), "nothing_waiting");
    assert_eq!(
        rejection(&claim(&p, "a", Some("first")).await),
        "conversation_closed"
    );
    p.configure(json!({"agent_can_claim": false})).await;
    p.create("third").await;
    assert_eq!(
        rejection(&claim(&p, "a", Some("third")).await),
        "claiming_disabled"
    );
}

#[tokio::test]
async fn a_transfer_moves_capacity_and_respects_permission_and_limits() {
    let p = Project::new().await;
    p.online_agents(&[("a", 3)]).await;
    p.create("c1").await;
    p.online_agents(&[("b", 1)]).await;
    let transfer =
        |to: &str| json!({"conversation_id": "c1", "to_agent_id": to, "by_agent_id": "a"});
    let out = p
        .apply("conversation.transfer_requested", transfer("b"))
        .await;
    assert_eq!(out[0].data["reason"], "transferred");
    assert_eq!(out[0].data["previous_agent_id"], "a");
    assert_eq!((p.load("a").await, p.load("b").await), (0, 1));
    // The target's limit holds: b is full, a transfer to it is rejected.
    p.create("c2").await; // to a
    let out = p
        .apply(
            "conversation.transfer_requested",
            json!({"conversation_id": "c2", "to_agent_id": "b"}),
        )
        .await;
    assert_eq!(rejection(&out), "agent_at_limit");
    let out = p
        .apply(
            "conversation.transfer_requested",
            json!({"conversation_id": "c2", "to_agent_id": "ghost"}),
        )
        .await;
    assert_eq!(rejection(&out), "unknown_agent");
    let out = p
        .apply(
            "conversation.transfer_requested",
            json!({"conversation_id": "nope", "to_agent_id": "a"}),
        )
        .await;
    assert_eq!(rejection(&out), "conversation_not_open");
    p.configure(json!({"agent_can_transfer": false})).await;
    let out = p
        .apply("conversation.transfer_requested", transfer("a"))
        .await;
    assert_eq!(rejection(&out), "transfer_disabled");
    assert_eq!(p.load("b").await, 1);
}

#[tokio::test]
async fn broadcast_offers_to_every_eligible_agent_and_the_first_claim_wins() {
    let p = Project::new().await;
    p.configure(json!({"mode": "broadcast"})).await;
    p.online_agents(&[("a", 2), ("b", 2), ("c", 0)]).await;
    let out = p.create("c1").await;
    assert_eq!(types(&out), ["conversation.offered"]);
    let mut offered: Vec<String> =
        serde_json::from_value(out[0].data["agent_ids"].clone()).unwrap();
    offered.sort();
    assert_eq!(offered, ["a", "b"], "c has no capacity");
    assert_eq!(
        claim(&p, "b", Some("c1")).await[0].data["reason"],
        "claimed"
    );
    assert_eq!(
        rejection(&claim(&p, "a", Some("c1")).await),
        "already_assigned"
    );
    // Get-next finds the oldest offer made to the agent.
    p.create("c2").await;
    assert_eq!(claim(&p, "a", None).await[0].data["conversation_id"], "c2");
    // An offer whose agents all go away falls back to waiting...
    let out = p.create("c3").await;
    assert_eq!(types(&out), ["conversation.offered"]);
    p.status("a", "offline").await;
    let out = p.status("b", "offline").await;
    assert_eq!(types(&out), ["conversation.queued"]);
    assert_eq!(out[0].data["reason"], "offer_withdrawn");
    assert_eq!(p.waiting().await, ["c3"]);
    // ...and is offered again when someone comes back.
    let out = p.status("a", "online").await;
    assert_eq!(types(&out), ["conversation.offered"]);
    assert_eq!(out[0].data["agent_ids"], json!(["a"]));
}

#[tokio::test]
async fn custom_mode_applies_decisions_and_falls_back_when_the_allocator_is_silent() {
    let p = Project::new().await;
    p.configure(json!({"mode": "custom", "custom_timeout_seconds": 5}))
        .await;
    p.online_agents(&[("a", 2), ("b", 1)]).await;
    let requested = p
        .apply_event(&p.event(
            "conversation.created",
            json!({"conversation_id": "c1", "visitor_id": "v"}),
        ))
        .await;
    assert_eq!(types(&requested.outputs), ["allocation.requested"]);
    let mut candidates: Vec<Value> =
        serde_json::from_value(requested.outputs[0].data["candidates"].clone()).unwrap();
    candidates.sort_by_key(|c| c["agent_id"].as_str().unwrap().to_string());
    assert_eq!(
        candidates,
        [
            json!({"agent_id": "a", "open": 0, "max_concurrent": 2}),
            json!({"agent_id": "b", "open": 0, "max_concurrent": 1}),
        ]
    );
    assert_eq!(requested.timers[0].delay_ms, 5000);
    let decided = p
        .apply(
            "allocation.decided",
            json!({"conversation_id": "c1", "agent_id": "b"}),
        )
        .await;
    assert_eq!(decided[0].data["reason"], "custom");
    assert_eq!(decided[0].data["agent_id"], "b");
    // The timer of a decided request does nothing.
    assert!(p
        .apply_event(&p.event("timer.fired", requested.timers[0].data.clone()))
        .await
        .outputs
        .is_empty());
    // A decision for an agent that cannot take it is rejected.
    p.create("c2").await;
    let out = p
        .apply(
            "allocation.decided",
            json!({"conversation_id": "c2", "agent_id": "b"}),
        )
        .await;
    assert_eq!(rejection(&out), "agent_unavailable");
    // The silent allocator: the timeout assigns by the new-visitor strategy...
    let c3 = p
        .apply_event(&p.event(
            "conversation.created",
            json!({"conversation_id": "c3", "visitor_id": "w"}),
        ))
        .await;
    let fallback = p
        .apply_event(&p.event("timer.fired", c3.timers[0].data.clone()))
        .await;
    assert_eq!(fallback.outputs[0].data["reason"], "new");
    assert_eq!(fallback.outputs[0].data["strategy"], "least_loaded");
    // ...and a decision arriving after that is rejected.
    let late = p
        .apply(
            "allocation.decided",
            json!({"conversation_id": "c3", "agent_id": "a"}),
        )
        .await;
    assert_eq!(rejection(&late), "no_allocation_pending");
}

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn three_agents_claiming_one_conversation_through_two_workers_one_wins() {
    let mut env = Env::new().await;
    let _w1 = env.spawn_worker().await;
    let _w2 = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.configure(&mut platform, json!({"mode": "manual"}))
        .await;
    env.team(&mut platform, &[("a", 20), ("b", 20), ("c", 20)])
        .await;
    for round in 0..10 {
        let conversation = format!("c{round}");
        env.publish(&platform.created(&conversation)).await;
        env.outputs(1, WAIT).await; // queued
        let claims: Vec<Vec<u8>> = ["a", "b", "c"]
            .iter()
            .map(|agent| {
                platform.event(
                    "agent.claim_requested",
                    json!({"agent_id": agent, "conversation_id": conversation}),
                )
            })
            .collect();
        env.publish_many(&claims).await;
        let out = env.outputs(3, WAIT).await;
        assert_eq!(of_type(&out, "conversation.assigned").len(), 1, "{out:?}");
        let rejected = of_type(&out, "command.rejected");
        assert_eq!(rejected.len(), 2);
        assert!(
            rejected
                .iter()
                .all(|r| r["data"]["reason"] == "already_assigned"),
            "{rejected:?}"
        );
    }
    let store = store().await;
    let mut total = 0;
    for agent in ["a", "b", "c"] {
        total += load_of(&store, &platform.project, agent).await;
    }
    assert_eq!(total, 10);
    env.cleanup().await;
}

#[tokio::test]
async fn a_timer_longer_than_one_delay_step_fires_on_time() {
    let mut env = Env::new().await;
    let _worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    // 3 s is not a step of the delay ladder: the timer waits 2 s, then 1 s more.
    env.configure(
        &mut platform,
        json!({"mode": "custom", "custom_timeout_seconds": 3}),
    )
    .await;
    env.team(&mut platform, &[("a", 5)]).await;
    let started = std::time::Instant::now();
    env.publish(&platform.created("c1")).await;
    let out = env.outputs(2, WAIT).await;
    let waited = started.elapsed();
    assert_eq!(out[1]["type"], "conversation.assigned");
    // A timer fires within the delay ladder's tolerance of its due time, never earlier.
    let tolerance = switchboard::broker::delay::DUE_TOLERANCE_MS as u64;
    assert!(
        waited >= Duration::from_millis(3000 - tolerance),
        "fired early, after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(8),
        "fired late, after {waited:?}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_silent_custom_allocator_is_replaced_by_the_strategy_after_its_timeout() {
    let mut env = Env::new().await;
    let _worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.configure(
        &mut platform,
        json!({"mode": "custom", "custom_timeout_seconds": 1}),
    )
    .await;
    env.team(&mut platform, &[("a", 5)]).await;
    env.publish(&platform.created("c1")).await;
    let out = env.outputs(2, WAIT).await;
    assert_eq!(out[0]["type"], "allocation.requested");
    assert_eq!(out[1]["type"], "conversation.assigned");
    assert_eq!(out[1]["data"]["reason"], "new");
    env.cleanup().await;
}

#[tokio::test]
async fn get_next_skips_and_clears_a_queue_entry_whose_conversation_no_longer_waits() {
    // A call that fails halfway can leave a member in the waiting queue whose conversation is
    // gone or no longer waiting; "get next" must not keep answering with it.
    let p = Project::new().await;
    p.configure(json!({"mode": "manual"})).await;
    p.online_agents(&[("a", 2)]).await;
    p.create("real").await;
    // The queue's raw layout, on purpose: what a half-failed call leaves.
    let project = p.project();
    let queue = switchboard::store::keys::project_key(&project, "waiting");
    for member in ["0000000000000000|ghost", "0000000000000000|real"] {
        // Ahead of everything: a higher priority than the real entry's.
        let _: i64 = p
            .store
            .query(redis::cmd("ZADD").arg(&queue).arg(-9).arg(member))
            .await
            .unwrap();
    }
    let got = claim(&p, "a", None).await;
    assert_eq!(types(&got), ["conversation.assigned"], "{got:?}");
    assert_eq!(got[0].data["conversation_id"], "real");
    assert!(p.waiting().await.is_empty(), "stale entries cleared");
    assert_eq!(rejection(&claim(&p, "a", None).await), "nothing_waiting");
}
