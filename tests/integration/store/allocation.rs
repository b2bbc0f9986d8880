//! Who gets a conversation, through the store directly (no broker): the strategies, who is
//! excluded, projects kept apart, and events that come twice or out of order.

use std::collections::HashMap;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn least_loaded_fills_evenly_and_breaks_ties_at_random() {
    let p = Project::new().await;
    p.online_agents(&[("a", 10), ("b", 10), ("c", 10)]).await;
    let mut firsts = HashMap::new();
    for i in 0..30 {
        let agents = assigned_agents(&p.create(&format!("c{i}")).await);
        assert_eq!(agents.len(), 1);
        if i % 3 == 0 {
            *firsts.entry(agents[0].clone()).or_insert(0) += 1;
        }
        // After every full round each agent holds the same number.
        if i % 3 == 2 {
            let round = (i / 3 + 1) as i64;
            for agent in ["a", "b", "c"] {
                assert_eq!(p.load(agent).await, round);
            }
        }
    }
    // The first of each round (a three-way tie) is not always the same agent.
    assert!(firsts.len() > 1, "ties always went to {firsts:?}");
}

#[tokio::test]
async fn round_robin_follows_order() {
    let p = Project::new().await;
    p.configure(json!({"new_visitors": "round_robin"})).await;
    p.online_team(json!([
        {"agent_id": "x", "max_concurrent": 100, "order": 3},
        {"agent_id": "y", "max_concurrent": 100, "order": 1},
        {"agent_id": "z", "max_concurrent": 100, "order": 2}]))
        .await;
    let mut served = vec![];
    for i in 0..7 {
        served.extend(assigned_agents(&p.create(&format!("c{i}")).await));
    }
    assert_eq!(served, ["y", "z", "x", "y", "z", "x", "y"]);
    // z goes offline: the rotation skips it and resumes after the last served.
    p.status("z", "offline").await;
    let next: Vec<String> = [p.create("d1").await, p.create("d2").await]
        .iter()
        .flat_map(|o| assigned_agents(o))
        .collect();
    assert_eq!(next, ["x", "y"]);
}

#[tokio::test]
async fn weighted_shares_follow_weights() {
    let p = Project::new().await;
    p.configure(json!({"new_visitors": "weighted"})).await;
    p.online_team(json!([
        {"agent_id": "light", "max_concurrent": 1000, "weight": 100},
        {"agent_id": "heavy", "max_concurrent": 1000, "daily_limit": 200}]))
        .await;
    for i in 0..300 {
        p.create(&format!("c{i}")).await;
    }
    assert_eq!(p.load("light").await, 100);
    assert_eq!(p.load("heavy").await, 200);
}

#[tokio::test]
async fn excluded_agents_receive_nothing() {
    let p = Project::new().await;
    p.apply(
        "agent.upserted",
        json!({"agents": [
            {"agent_id": "zero", "max_concurrent": 0},
            {"agent_id": "manual", "max_concurrent": 5, "auto_assign": false},
            {"agent_id": "busy", "max_concurrent": 5},
            {"agent_id": "away", "max_concurrent": 5},
            {"agent_id": "never-online", "max_concurrent": 5}]}),
    )
    .await;
    p.status("zero", "online").await;
    p.status("manual", "online").await;
    p.status("busy", "busy").await;
    p.status("away", "offline").await;
    let out = p.create("c1").await;
    assert_eq!(types(&out), ["conversation.queued"]);
    // include_offline lets offline agents (and agents with no status yet) receive.
    let out = p
        .apply("project.configured", json!({"include_offline": true}))
        .await;
    let agent = &assigned_agents(&out)[0];
    assert!(agent == "away" || agent == "never-online", "{agent}");
    // A null resets the setting to its default: offline agents are excluded again.
    p.apply("project.configured", json!({"include_offline": null}))
        .await;
    assert_eq!(types(&p.create("c2").await), ["conversation.queued"]);
    // Clearing auto_assign back to its default (true) makes `manual` eligible.
    let out = p
        .apply(
            "agent.upserted",
            json!({"agents": [{"agent_id": "manual", "auto_assign": null}]}),
        )
        .await;
    assert_eq!(assigned_agents(&out), ["manual"]);
}

#[tokio::test]
async fn a_repeated_event_replays_its_outputs_and_changes_nothing() {
    let p = Project::new().await;
    p.online_agents(&[("a", 1)]).await;
    let created = p.event(
        "conversation.created",
        json!({"conversation_id": "c1", "visitor_id": "v"}),
    );
    let first = p.apply_event(&created).await;
    assert!(!first.replayed());
    assert_eq!(assigned_agents(&first.outputs), ["a"]);
    // Its outputs were not confirmed: a redelivery publishes them again, the same.
    let again = p.apply_event(&created).await;
    assert!(again.replayed());
    assert_eq!(again.outputs, first.outputs);
    assert_eq!(again.time_ms, first.time_ms);
    assert_eq!(p.load("a").await, 1);
    // Once the broker confirmed them, the same event again publishes nothing.
    let project = p.project();
    p.store
        .confirm(&project, std::slice::from_ref(&first.record))
        .await
        .unwrap();
    let duplicate = p.apply_event(&created).await;
    assert_eq!(duplicate.outcome, switchboard::store::Outcome::Duplicate);
    assert!(duplicate.outputs.is_empty() && duplicate.timers.is_empty());
    assert_eq!(p.load("a").await, 1);
    // The same conversation under a new event id is a platform duplicate: no effect either.
    assert!(p.create("c1").await.is_empty());
    assert_eq!(p.load("a").await, 1);
}

/// A confirmation rides along with the project's next call, at no call of its own; it goes
/// first, so the confirmed event arriving again in that very call publishes nothing.
#[tokio::test]
async fn a_confirmation_is_carried_by_the_projects_next_call() {
    let p = Project::new().await;
    p.online_agents(&[("a", 5)]).await;
    let created = p.event(
        "conversation.created",
        json!({"conversation_id": "c1", "visitor_id": "v"}),
    );
    let first = p.apply_event(&created).await;
    assert_eq!(assigned_agents(&first.outputs), ["a"]);
    let project = p.project();
    let replayable = || p.store.replayable(&project, &created.id, p.now_ms);
    assert_eq!(replayable().await.unwrap(), Some(true));
    p.store.confirmed_later(&project, first.record.clone());
    // Not in Redis yet: a redelivery now would still publish the outputs again.
    assert_eq!(replayable().await.unwrap(), Some(true));
    let again = p.apply_event(&created).await;
    assert_eq!(again.outcome, switchboard::store::Outcome::Duplicate);
    assert!(again.outputs.is_empty() && again.timers.is_empty());
    assert_ne!(replayable().await.unwrap(), Some(true));
    assert!(p.store.take_confirmed().is_empty(), "nothing left waiting");
    assert_eq!(p.load("a").await, 1);
}

/// Once its outputs are confirmed, an event with no `time` stays remembered as seen (nothing
/// else would know a duplicate of it), while one with a `time` leaves no record (its
/// conversation's version knows it): the worker tells which is which, from the record in its
/// reply, whether the confirmation has a call of its own or rides along with the next one.
#[tokio::test]
async fn a_confirmed_event_stays_as_seen_only_when_it_has_no_time() {
    let p = Project::new().await;
    p.online_agents(&[("a", 10)]).await;
    let project = p.project();
    let pair = |n: u32| {
        let mut untimed = p.event(
            "conversation.created",
            json!({"conversation_id": format!("u{n}"), "visitor_id": "v"}),
        );
        untimed.time_us = None;
        let timed = p.event(
            "conversation.created",
            json!({"conversation_id": format!("t{n}"), "visitor_id": "w"}),
        );
        (untimed, timed)
    };
    for carried in [false, true] {
        let (untimed, timed) = pair(carried as u32);
        let records = [
            p.apply_event(&untimed).await.record,
            p.apply_event(&timed).await.record,
        ];
        assert!(records[0].stays_seen && !records[1].stays_seen);
        if carried {
            for record in records {
                p.store.confirmed_later(&project, record);
            }
            p.create("next").await;
            assert!(p.store.take_confirmed().is_empty(), "the call carried them");
        } else {
            p.store.confirm(&project, &records).await.unwrap();
        }
        for (event, recorded) in [(&untimed, Some(false)), (&timed, None)] {
            let replayable = p.store.replayable(&project, &event.id, p.now_ms);
            assert_eq!(replayable.await.unwrap(), recorded, "seen, or no record");
        }
        for event in [&untimed, &timed] {
            let again = p.apply_event(event).await;
            assert_eq!(again.outcome, switchboard::store::Outcome::Duplicate);
            assert!(again.outputs.is_empty() && again.timers.is_empty());
        }
    }
    assert_eq!(p.load("a").await, 5);
}

#[tokio::test]
async fn closed_before_created_leaves_no_load() {
    let p = Project::new().await;
    p.online_agents(&[("a", 1)]).await;
    assert!(p.close("c1").await.is_empty());
    assert!(p.create("c1").await.is_empty());
    assert_eq!(p.load("a").await, 0);
    // The agent's capacity is still there for the next conversation.
    assert_eq!(assigned_agents(&p.create("c2").await), ["a"]);
    // Closing twice releases once.
    p.close("c2").await;
    p.close("c2").await;
    assert_eq!(p.load("a").await, 0);
}

#[tokio::test]
async fn projects_do_not_see_each_other() {
    let p = Project::new().await;
    let q = Project::new().await;
    p.online_agents(&[("shared-name", 1)]).await;
    assert_eq!(types(&q.create("c1").await), ["conversation.queued"]);
    assert_eq!(assigned_agents(&p.create("c1").await), ["shared-name"]);
}
