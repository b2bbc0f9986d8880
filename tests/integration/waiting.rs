//! The waiting experience, driven through the store (the clock is the test's): positions and
//! their estimate, overflow, priority aging, and handing a conversation back to the queue.
//! `waiting_workers.rs` checks them through worker processes and the broker's timers.

use serde_json::{json, Value};
use switchboard::contract::OutboundEvent;

use crate::helpers::*;

/// The outputs of one type.
fn outputs_of<'a>(outputs: &'a [OutboundEvent], event_type: &str) -> Vec<&'a Value> {
    outputs
        .iter()
        .filter(|o| o.event_type == event_type)
        .map(|o| &o.data)
        .collect()
}

/// A conversation with a priority.
async fn create_with(p: &Project, conversation: &str, priority: i64) -> Vec<OutboundEvent> {
    p.apply(
        "conversation.created",
        json!({"conversation_id": conversation, "visitor_id": format!("v-{conversation}"),
               "priority": priority}),
    )
    .await
}

/// Fires a timer of `conversation` as its delay queue would.
async fn fire(p: &Project, timer: &str, conversation: &str, token: u64) -> Vec<OutboundEvent> {
    p.apply(
        "timer.fired",
        json!({"timer": timer, "conversation_id": conversation, "token": token}),
    )
    .await
}

#[tokio::test]
async fn a_waiting_conversation_learns_its_place_and_only_a_changed_one_is_published_again() {
    let p = Project::new().await;
    p.configure(json!({"queue_position_updates": true, "queue_position_interval_seconds": 5}))
        .await;
    p.online_agents(&[("a", 1)]).await;
    assert_eq!(types(&p.create("c0").await), ["conversation.assigned"]);
    for (i, conversation) in ["c1", "c2", "c3"].iter().enumerate() {
        let applied = p
            .apply_event(&p.event(
                "conversation.created",
                json!({"conversation_id": conversation, "visitor_id": "v"}),
            ))
            .await;
        assert_eq!(
            types(&applied.outputs),
            ["conversation.queued", "conversation.queue_position"]
        );
        let place = &applied.outputs[1].data;
        assert_eq!(place["position"], i + 1);
        assert_eq!(place["waiting"], i + 1);
        assert!(
            place.get("estimated_wait_seconds").is_none(),
            "no history yet"
        );
        // The next look is armed one interval later.
        assert_eq!(applied.timers.len(), 1);
        assert_eq!(applied.timers[0].delay_ms, 5000);
        assert_eq!(applied.timers[0].data["timer"], "queue_position");
    }
    // c0 closes: c1 goes to the agent. Nothing is published for the others then: an
    // assignment costs the same however many wait.
    assert_eq!(types(&p.close("c0").await), ["conversation.assigned"]);
    // Their next look finds them moved up, and says so once.
    let moved = fire(&p, "queue_position", "c3", 1).await;
    assert_eq!(types(&moved), ["conversation.queue_position"]);
    assert_eq!(moved[0].data["position"], 2);
    assert_eq!(moved[0].data["waiting"], 2);
    assert!(
        fire(&p, "queue_position", "c3", 2).await.is_empty(),
        "unchanged: nothing"
    );
    // A timer of an earlier look (a stale token) does nothing.
    assert!(fire(&p, "queue_position", "c3", 1).await.is_empty());
}

#[tokio::test]
async fn the_estimate_follows_a_steady_pace_of_departures() {
    let mut p = Project::new().await;
    p.configure(json!({"queue_position_updates": true})).await;
    p.online_agents(&[("a", 1)]).await;
    p.create("held").await;
    for i in 0..20 {
        p.create(&format!("w{i}")).await;
    }
    // One conversation leaves the queue every 12 seconds (its predecessor closes).
    let mut current = "held".to_string();
    for i in 0..8 {
        p.now_ms += 12_000;
        let out = p.close(&current).await;
        assert_eq!(assigned_agents(&out), ["a"]);
        current = format!("w{i}");
    }
    // A newcomer, twelfth in line after the 12 still waiting... 13th: its wait is about 13 gaps.
    let out = p.create("late").await;
    let place = &outputs_of(&out, "conversation.queue_position")[0];
    let position = place["position"].as_u64().unwrap();
    assert_eq!(position, 13);
    let estimate = place["estimated_wait_seconds"].as_f64().unwrap();
    let expected = 12.0 * position as f64;
    assert!(
        (estimate - expected).abs() <= 0.3 * expected,
        "estimate {estimate} s against {expected} s"
    );
}

#[tokio::test]
async fn a_full_queue_overflows_a_newcomer_and_it_is_not_assigned_until_sent_again() {
    let p = Project::new().await;
    p.configure(json!({"max_waiting": 2})).await;
    p.online_agents(&[("a", 1)]).await;
    p.create("c0").await;
    p.create("c1").await;
    p.create("c2").await;
    let out = p.create("c3").await;
    assert_eq!(types(&out), ["conversation.overflowed"]);
    assert_eq!(
        out[0].data,
        json!({"conversation_id": "c3", "reason": "queue_full", "waited_seconds": 0})
    );
    assert_eq!(p.waiting().await, ["c1", "c2"]);
    // Room appears: the queue is served, the overflowed conversation is not.
    p.close("c0").await;
    p.close("c1").await;
    p.close("c2").await;
    assert!(p.waiting().await.is_empty());
    assert_eq!(p.load("a").await, 0);
    // The platform sends it again: it is allocated as new.
    let again = p.create("c3").await;
    assert_eq!(assigned_agents(&again), ["a"]);
}

#[tokio::test]
async fn a_conversation_that_waited_too_long_overflows_with_how_long_it_waited() {
    let mut p = Project::new().await;
    p.configure(json!({"max_wait_seconds": 90})).await;
    p.online_agents(&[("a", 1)]).await;
    p.create("c0").await;
    let queued = p
        .apply_event(&p.event(
            "conversation.created",
            json!({"conversation_id": "c1", "visitor_id": "v"}),
        ))
        .await;
    let timer = &queued.timers[0];
    assert_eq!(timer.data["timer"], "max_wait");
    assert_eq!(timer.delay_ms, 90_000);
    p.now_ms += 90_000;
    let out = fire(&p, "max_wait", "c1", timer.data["token"].as_u64().unwrap()).await;
    assert_eq!(types(&out), ["conversation.overflowed"]);
    assert_eq!(out[0].data["reason"], "max_wait");
    assert_eq!(out[0].data["waited_seconds"], 90);
    assert!(p.waiting().await.is_empty());
    // A step's own limit: the last step of a rule overflows instead of widening.
    p.configure(
        json!({"max_wait_seconds": null, "rules": [{"when": {"category": "vip"},
        "route_to": [{"skills": ["gold"], "max_wait_seconds": 30}]}]}),
    )
    .await;
    let vip = p
        .apply_event(&p.event(
            "conversation.created",
            json!({"conversation_id": "vip1", "visitor_id": "v", "category": "vip"}),
        ))
        .await;
    assert_eq!(types(&vip.outputs), ["conversation.queued"]);
    assert_eq!(vip.timers[0].data["timer"], "max_wait");
    assert_eq!(vip.timers[0].delay_ms, 30_000);
}

#[tokio::test]
async fn with_aging_a_long_wait_beats_a_stream_of_higher_priorities() {
    // Aging of 10 s per level: a priority-0 conversation waiting since t0 goes before any
    // priority-5 one that arrived after t0 + 5 x 10 s, however many keep arriving.
    let mut p = Project::new().await;
    p.configure(json!({"priority_aging_seconds": 10})).await;
    p.online_agents(&[("a", 1)]).await;
    p.create("busy").await;
    let t0 = p.now_ms;
    create_with(&p, "low", 0).await;
    let mut arrivals = vec![];
    for i in 0..20 {
        p.now_ms += 5_000; // a priority-5 conversation every 5 s
        let id = format!("high{i}");
        create_with(&p, &id, 5).await;
        arrivals.push((id, p.now_ms));
    }
    // The agent serves one at a time; low is served before every high that arrived after
    // t0 + 50 s, and after every high that arrived before.
    let served = {
        let mut served = vec![];
        let mut current = "busy".to_string();
        for _ in 0..21 {
            let out = p.close(&current).await;
            current = outputs_of(&out, "conversation.assigned")[0]["conversation_id"]
                .as_str()
                .unwrap()
                .to_string();
            served.push(current.clone());
        }
        served
    };
    let low_at = served.iter().position(|c| c == "low").unwrap();
    for (id, arrived) in &arrivals {
        let at = served.iter().position(|c| c == id).unwrap();
        if *arrived > t0 + 50_000 {
            assert!(
                at > low_at,
                "{id} arrived after the bound but was served before low"
            );
        } else if *arrived < t0 + 50_000 {
            assert!(
                at < low_at,
                "{id} arrived within the bound and outranks low"
            );
        }
    }
    // Without aging, low would wait behind all twenty.
    assert!(low_at < 20, "low served {low_at}th");
}

#[tokio::test]
async fn a_conversation_handed_back_goes_to_another_eligible_agent() {
    let p = Project::new().await;
    p.online_agents(&[("a", 1)]).await;
    assert_eq!(assigned_agents(&p.create("c1").await), ["a"]);
    p.online_agents(&[("b", 2)]).await;
    assert_eq!(assigned_agents(&p.create("c2").await), ["b"]);
    let out = p
        .apply(
            "conversation.requeue_requested",
            json!({"conversation_id": "c1", "by_agent_id": "a"}),
        )
        .await;
    assert_eq!(out[0].event_type, "conversation.unassigned");
    assert_eq!(out[0].data["reason"], "requeued");
    assert_eq!(out[0].data["previous_agent_id"], "a");
    // a is the least loaded now, but b takes it: not straight back while another can.
    let assigned = outputs_of(&out, "conversation.assigned");
    assert_eq!(assigned.len(), 1, "{out:?}");
    assert_eq!(assigned[0]["conversation_id"], "c1");
    assert_eq!(assigned[0]["agent_id"], "b");
    assert_eq!(p.load("a").await, 0);
}

#[tokio::test]
async fn a_conversation_handed_back_waits_in_its_first_place() {
    let p = Project::new().await;
    p.online_agents(&[("a", 1), ("b", 1)]).await;
    let holder = assigned_agents(&p.create("c1").await)[0].clone();
    p.create("c2").await;
    p.create("c3").await;
    assert_eq!(p.waiting().await, ["c3"]);
    let out = p
        .apply(
            "conversation.requeue_requested",
            json!({"conversation_id": "c1", "by_agent_id": holder}),
        )
        .await;
    // It waits again ahead of c3, which arrived after it; with nobody else eligible, the
    // place its agent freed is its own again.
    let assigned = outputs_of(&out, "conversation.assigned");
    assert_eq!(assigned.len(), 1, "{out:?}");
    assert_eq!(assigned[0]["conversation_id"], "c1");
    assert_eq!(assigned[0]["agent_id"], holder.as_str());
    assert_eq!(p.waiting().await, ["c3"]);
    // Switched off, a hand-back is refused.
    p.configure(json!({"agent_can_requeue": false})).await;
    let out = p
        .apply(
            "conversation.requeue_requested",
            json!({"conversation_id": "c1"}),
        )
        .await;
    assert_eq!(types(&out), ["command.rejected"]);
    assert_eq!(out[0].data["reason"], "requeue_disabled");
}

#[tokio::test]
async fn the_store_explains_why_a_conversation_waits_agent_by_agent() {
    let p = Project::new().await;
    p.configure(json!({"rules": [{"when": {"language": "es"}, "route_to": [{"skills": ["es"]}]}]}))
        .await;
    p.apply(
        "agent.upserted",
        json!({"agents": [
            {"agent_id": "full", "max_concurrent": 1, "skills": ["es"]},
            {"agent_id": "away", "max_concurrent": 3, "skills": ["es"]},
            {"agent_id": "busy", "max_concurrent": 3, "skills": ["es"]},
            {"agent_id": "english", "max_concurrent": 3},
            {"agent_id": "manual", "max_concurrent": 3, "skills": ["es"], "auto_assign": false},
            {"agent_id": "capped", "max_concurrent": 3, "skills": ["es"], "daily_limit": 1}]}),
    )
    .await;
    let spanish = |id: &str| json!({"conversation_id": id, "visitor_id": "v", "language": "es"});
    // capped takes one and reaches its daily limit; then full takes one and is full.
    p.status("capped", "online").await;
    p.apply("conversation.created", spanish("c0")).await;
    p.close("c0").await;
    for agent in ["full", "english", "manual"] {
        p.status(agent, "online").await;
    }
    p.status("busy", "busy").await;
    assert_eq!(
        assigned_agents(&p.apply("conversation.created", spanish("c1")).await),
        ["full"]
    );
    p.apply("conversation.created", spanish("c3")).await;
    let project = p.project();
    let waiting = p
        .store
        .explain(
            &project,
            switchboard::store::explain::Question::Waiting { limit: 10 },
            p.now_ms,
        )
        .await
        .unwrap();
    assert_eq!(waiting["waiting"], 1);
    assert_eq!(waiting["listed"][0]["conversation_id"], "c3");
    assert_eq!(waiting["listed"][0]["position"], 1);
    let queue = &waiting["queues"][0];
    assert_eq!(queue["eligible"], 0);
    assert_eq!(
        queue["excluded"],
        json!({"at_max_concurrent": 1, "offline": 1, "busy": 1, "lacks_skills": 1,
               "auto_assign_off": 1, "at_daily_limit": 1})
    );
    let one = p
        .store
        .explain(
            &project,
            switchboard::store::explain::Question::Conversation("c3"),
            p.now_ms,
        )
        .await
        .unwrap();
    assert_eq!(one["state"], "waiting");
    assert_eq!(one["rule"], 1);
    assert_eq!(one["step_requirement"]["skills"], json!(["es"]));
    assert_eq!(one["queue"]["excluded"]["offline"], 1);
    let assigned = p
        .store
        .explain(
            &project,
            switchboard::store::explain::Question::Conversation("c1"),
            p.now_ms,
        )
        .await
        .unwrap();
    assert_eq!(assigned["state"], "open");
}
