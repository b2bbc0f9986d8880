//! The allocation decisions, driven through the store directly (no broker): strategies,
//! eligibility, the waiting queue, order tolerance and idempotency.

use std::collections::HashMap;

use serde_json::json;
use switchboard::contract::{InboundEvent, OutboundEvent};
use switchboard::store::keys;

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
    p.apply(
        "agent.upserted",
        json!({"agents": [
            {"agent_id": "x", "max_concurrent": 100, "order": 3},
            {"agent_id": "y", "max_concurrent": 100, "order": 1},
            {"agent_id": "z", "max_concurrent": 100, "order": 2}]}),
    )
    .await;
    for agent in ["x", "y", "z"] {
        p.status(agent, "online").await;
    }
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
    p.apply(
        "agent.upserted",
        json!({"agents": [
            {"agent_id": "light", "max_concurrent": 1000, "weight": 100},
            {"agent_id": "heavy", "max_concurrent": 1000, "daily_limit": 200}]}),
    )
    .await;
    p.status("light", "online").await;
    p.status("heavy", "online").await;
    for i in 0..300 {
        p.create(&format!("c{i}")).await;
    }
    assert_eq!(p.load("light").await, 100);
    assert_eq!(p.load("heavy").await, 200);
}

#[tokio::test]
async fn capacity_is_never_exceeded_and_the_rest_waits_in_order() {
    let p = Project::new().await;
    p.online_agents(&[("a", 2), ("b", 1)]).await;
    let mut queued = vec![];
    for i in 0..5 {
        let out = p.create(&format!("c{i}")).await;
        if types(&out) == ["conversation.queued"] {
            assert_eq!(out[0].data["reason"], "no_eligible_agent");
            queued.push(format!("c{i}"));
        }
    }
    assert_eq!(queued, ["c3", "c4"]);
    assert_eq!((p.load("a").await, p.load("b").await), (2, 1));
    // A higher priority conversation jumps ahead of earlier arrivals.
    p.apply(
        "conversation.created",
        json!({"conversation_id": "urgent", "visitor_id": "v", "priority": 5}),
    )
    .await;
    assert_eq!(p.waiting().await, ["urgent", "c3", "c4"]);
    // A close frees a slot: the head of the queue takes it at once.
    let out = p.close("c0").await;
    assert_eq!(types(&out), ["conversation.assigned"]);
    assert_eq!(out[0].data["conversation_id"], "urgent");
    assert_eq!(out[0].data["reason"], "backlog");
    assert_eq!(p.waiting().await, ["c3", "c4"]);
}

#[tokio::test]
async fn the_queue_drains_on_every_kind_of_capacity() {
    let p = Project::new().await;
    p.apply(
        "agent.upserted",
        json!({"agents": [{"agent_id": "a", "max_concurrent": 1}]}),
    )
    .await;
    for i in 0..6 {
        p.create(&format!("c{i}")).await;
    }
    assert_eq!(p.waiting().await.len(), 6);
    // An agent comes online.
    let out = p.status("a", "online").await;
    assert_eq!(assigned_agents(&out), ["a"]);
    // A limit is raised.
    let out = p
        .apply(
            "agent.upserted",
            json!({"agents": [{"agent_id": "a", "max_concurrent": 2}]}),
        )
        .await;
    assert_eq!(assigned_agents(&out), ["a"]);
    // An agent is added (and comes online).
    p.apply(
        "agent.upserted",
        json!({"agents": [{"agent_id": "b", "max_concurrent": 2}]}),
    )
    .await;
    let out = p.status("b", "online").await;
    assert_eq!(assigned_agents(&out), ["b", "b"]);
    // A conversation closes.
    let out = p.close("c0").await;
    assert_eq!(assigned_agents(&out), ["a"]);
    // Busy agents are included by a setting.
    p.apply(
        "agent.upserted",
        json!({"agents": [{"agent_id": "c", "max_concurrent": 1}]}),
    )
    .await;
    p.status("c", "busy").await;
    let out = p
        .apply("project.configured", json!({"include_busy": true}))
        .await;
    assert_eq!(assigned_agents(&out), ["c"]);
    assert!(p.waiting().await.is_empty());
    let conversations: Vec<String> = out
        .iter()
        .map(|o| o.data["conversation_id"].to_string())
        .collect();
    assert_eq!(conversations, ["\"c5\""]);
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
    let project = switchboard::contract::Id::parse(&p.id).unwrap();
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
async fn a_removed_agent_hands_over_its_conversations() {
    let p = Project::new().await;
    p.online_agents(&[("a", 2)]).await;
    p.create("c1").await;
    p.create("c2").await;
    p.online_agents(&[("b", 1)]).await;
    let out = p.apply("agent.removed", json!({"agent_id": "a"})).await;
    assert_eq!(
        types(&out),
        [
            "conversation.assigned",
            "conversation.unassigned",
            "conversation.queued"
        ]
    );
    assert_eq!(out[0].data["agent_id"], "b");
    assert_eq!(out[0].data["previous_agent_id"], "a");
    assert_eq!(out[0].data["reason"], "agent_removed");
    assert_eq!(out[1].data["previous_agent_id"], "a");
    assert_eq!(p.load("a").await, 0);
    assert_eq!(p.load("b").await, 1);
    assert_eq!(p.waiting().await.len(), 1);
}

#[tokio::test]
async fn mode_off_and_manual_hold_conversations_until_auto() {
    let p = Project::new().await;
    p.online_agents(&[("a", 3)]).await;
    p.configure(json!({"mode": "off"})).await;
    let out = p.create("c1").await;
    assert_eq!(out[0].data["reason"], "off");
    p.configure(json!({"mode": "manual"})).await;
    let out = p.create("c2").await;
    assert_eq!(out[0].data["reason"], "manual");
    let out = p.configure_outputs(json!({"mode": "auto"})).await;
    assert_eq!(assigned_agents(&out), ["a", "a"]);
}

#[tokio::test]
async fn projects_do_not_see_each_other() {
    let p = Project::new().await;
    let q = Project::new().await;
    p.online_agents(&[("shared-name", 1)]).await;
    assert_eq!(types(&q.create("c1").await), ["conversation.queued"]);
    assert_eq!(assigned_agents(&p.create("c1").await), ["shared-name"]);
}

#[tokio::test]
async fn inspect_shows_agents_loads_the_waiting_queue_and_settings() {
    let p = Project::new().await;
    p.configure(json!({"new_visitors": "round_robin"})).await;
    p.online_agents(&[("alice", 2), ("bob", 1)]).await;
    p.apply("agent.upserted", json!({"agents": [{"agent_id": "carol", "max_concurrent": 3, "skills": ["es"], "channels": ["whatsapp"]}]})).await;
    for i in 0..5 {
        p.create(&format!("c{i}")).await;
    }
    let project = switchboard::contract::Id::parse(&p.id).unwrap();
    let report = switchboard::cli::inspect::render(&p.store, &project)
        .await
        .unwrap();
    let line = |start: &str| {
        report
            .lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no {start} line in\n{report}"))
            .to_string()
    };
    let words = |l: String| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(&words(line("alice"))[..4], ["alice", "online", "2/2", "no"]);
    assert_eq!(&words(line("bob"))[..4], ["bob", "online", "1/1", "no"]);
    assert_eq!(
        &words(line("carol"))[..4],
        ["carol", "offline", "0/3", "no"]
    );
    assert!(line("carol").contains("es") && line("carol").contains("whatsapp"));
    assert!(report.contains("waiting (2)"), "{report}");
    assert_eq!(&words(line("1 "))[..2], ["1", "c3"]);
    assert!(line("new_visitors*").contains("round_robin"));
    assert!(line("mode ").contains("auto"));
}

#[tokio::test]
async fn without_levels_rules_or_channel_rights_the_script_touches_only_declared_keys() {
    if redis_url().contains(',') {
        return; // SCAN is not routed by slot on a cluster; the single-node run checks this
    }
    let p = Project::new().await;
    p.configure(json!({"new_visitors": "weighted", "reply_timeout_seconds": 30}))
        .await;
    p.online_agents(&[("a", 2), ("b", 1)]).await;
    p.apply(
        "agent.upserted",
        json!({"agents": [{"agent_id": "c", "max_concurrent": 1, "daily_limit": 5}]}),
    )
    .await;
    for i in 0..6 {
        p.create(&format!("c{i}")).await;
    }
    p.close("c0").await;
    p.apply(
        "message.received",
        json!({"conversation_id": "c0", "visitor_id": "v-c0"}),
    )
    .await;
    p.apply("agent.removed", json!({"agent_id": "b"})).await;
    let project = switchboard::contract::Id::parse(&p.id).unwrap();
    let (generation, _) = p.store.generation(p.now_ms);
    let declared: std::collections::BTreeSet<String> =
        keys::apply_keys(&project, generation, std::iter::empty())
            .into_iter()
            .collect();
    let mut cursor = 0u64;
    let mut seen = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = p
            .store
            .query(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{}*", keys::project_prefix(&project)))
                    .arg("COUNT")
                    .arg(1000),
            )
            .await
            .unwrap();
        for key in keys {
            seen += 1;
            assert!(declared.contains(&key), "undeclared key {key}");
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    // The scenario writes settings, agents, statuses, conversations, loads, pools, the waiting
    // queue, counters, visitors, the daily counts, versions and event records at least.
    assert!(seen >= 12, "saw only {seen} keys");
}

/// A Redis that restarts without persistence (or a new node) has lost the function library:
/// the next event loads it again and is applied as usual.
#[tokio::test]
async fn a_redis_that_lost_the_function_library_gets_it_back() {
    let redis = PrivateRedis::start();
    let p = Project::on(store_at(&redis.url()).await);
    p.online_agents(&[("a", 5)]).await;
    assert_eq!(assigned_agents(&p.create("c1").await), ["a"]);

    let _: String = p
        .store
        .query(redis::cmd("FUNCTION").arg("FLUSH"))
        .await
        .unwrap();
    let libraries: Vec<redis::Value> = p
        .store
        .query(redis::cmd("FUNCTION").arg("LIST"))
        .await
        .unwrap();
    assert!(libraries.is_empty());

    assert_eq!(assigned_agents(&p.create("c2").await), ["a"]);
    assert_eq!(p.load("a").await, 2);
    let listed: Vec<redis::Value> = p
        .store
        .query(
            redis::cmd("FUNCTION")
                .arg("LIST")
                .arg("LIBRARYNAME")
                .arg(&switchboard::store::script::LIBRARY.name),
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "the library is loaded again");
}

/// The function library keeps the last project's key names between calls: events of two
/// projects taking turns must each land in their own project.
#[tokio::test]
async fn two_projects_taking_turns_keep_their_state_apart() {
    let first = Project::new().await;
    let second = Project::new().await;
    first.online_agents(&[("a", 10)]).await;
    second.online_agents(&[("b", 10)]).await;
    for i in 0..6 {
        let (project, agent) = if i % 2 == 0 {
            (&first, "a")
        } else {
            (&second, "b")
        };
        assert_eq!(
            assigned_agents(&project.create(&format!("c{i}")).await),
            [agent]
        );
    }
    assert_eq!(first.load("a").await, 3);
    assert_eq!(second.load("b").await, 3);
    assert_eq!(first.load("b").await, 0);
    assert_eq!(second.load("a").await, 0);
}

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
    let events = |p: &Project| {
        [
            (
                "agent.upserted",
                json!({"agents": [{"agent_id": "a", "max_concurrent": 1}]}),
            ),
            (
                "agent.status_changed",
                json!({"agent_id": "a", "status": "online"}),
            ),
            (
                "conversation.created",
                json!({"conversation_id": "c1", "visitor_id": "v1"}),
            ),
            (
                "agent.upserted",
                json!({"agents": [{"agent_id": "a", "max_concurrent": 2}]}),
            ),
            (
                "conversation.created",
                json!({"conversation_id": "c2", "visitor_id": "v2"}),
            ),
            ("project.configured", json!({"mode": "manual"})),
            (
                "conversation.created",
                json!({"conversation_id": "c3", "visitor_id": "v3"}),
            ),
            ("project.configured", json!({"mode": "auto"})),
            (
                "agent.upserted",
                json!({"agents": [{"agent_id": "b", "max_concurrent": 1, "priority": 1}]}),
            ),
            (
                "agent.status_changed",
                json!({"agent_id": "b", "status": "online"}),
            ),
            ("conversation.closed", json!({"conversation_id": "c1"})),
            (
                "conversation.created",
                json!({"conversation_id": "c4", "visitor_id": "v4"}),
            ),
        ]
        .map(|(event_type, data)| p.event(event_type, data))
    };
    let in_batch = batch_and_one_by_one_agree(events).await;
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
    let events = |p: &Project| {
        [
            (
                "agent.upserted",
                json!({"agents": [{"agent_id": "a", "max_concurrent": 5}]}),
            ),
            (
                "agent.status_changed",
                json!({"agent_id": "a", "status": "online"}),
            ),
            (
                "conversation.created",
                json!({"conversation_id": "c1", "visitor_id": "v"}),
            ),
            ("conversation.closed", json!({"conversation_id": "c1"})),
            (
                "agent.upserted",
                json!({"agents": [{"agent_id": "b", "max_concurrent": 5}]}),
            ),
            (
                "agent.status_changed",
                json!({"agent_id": "b", "status": "online"}),
            ),
            (
                "conversation.created",
                json!({"conversation_id": "c2", "visitor_id": "v"}),
            ),
        ]
        .map(|(event_type, data)| p.event(event_type, data))
    };
    let in_batch = batch_and_one_by_one_agree(events).await;
    let back = &in_batch[6];
    assert_eq!(assigned_agents(back), ["a"]);
    assert_eq!(back[0].data["reason"], "returning");
}

#[tokio::test]
async fn a_batch_finds_the_capacity_an_earlier_event_opened() {
    // Capacity opened within a batch (a close, a raised limit, an agent coming online) serves
    // the conversations waiting and the next ones, as it would one event at a time.
    let events = |p: &Project| {
        let created = |id: &str| {
            (
                "conversation.created",
                json!({"conversation_id": id, "visitor_id": format!("v-{id}")}),
            )
        };
        [
            (
                "agent.upserted",
                json!({"agents": [{"agent_id": "a", "max_concurrent": 1}, {"agent_id": "b", "max_concurrent": 1}]}),
            ),
            (
                "agent.status_changed",
                json!({"agent_id": "a", "status": "online"}),
            ),
            created("c1"),
            created("c2"),
            created("c3"),
            ("conversation.closed", json!({"conversation_id": "c1"})),
            created("c4"),
            (
                "agent.upserted",
                json!({"agents": [{"agent_id": "a", "max_concurrent": 2}]}),
            ),
            created("c5"),
            (
                "agent.status_changed",
                json!({"agent_id": "b", "status": "online"}),
            ),
            created("c6"),
        ]
        .map(|(event_type, data)| p.event(event_type, data))
    };
    let outputs = batch_and_one_by_one_agree(events).await;
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
async fn waiting_conversations_keep_their_arrival_order_across_calls_and_batches() {
    // Ids sort against their arrival, so only the arrival numbers (counted in a call, written
    // back at its end) can give this order.
    let p = Project::new().await;
    p.create("z1").await;
    p.create("y2").await;
    let batch = ["x3", "w4", "v5"].map(|id| {
        p.event(
            "conversation.created",
            json!({"conversation_id": id, "visitor_id": format!("v-{id}")}),
        )
    });
    apply_batch(&p, &batch.iter().collect::<Vec<_>>()).await;
    p.create("u6").await;
    assert_eq!(p.waiting().await, ["z1", "y2", "x3", "w4", "v5", "u6"]);
    p.online_agents(&[("a", 4)]).await;
    assert_eq!(p.waiting().await, ["v5", "u6"]);
}

#[tokio::test]
async fn conversations_waiting_before_the_first_skill_pool_are_still_served() {
    // Until a project has a requirement pool, its one waiting queue is the base pool's; the
    // first pool gives the base pool a queue of its own, which must hold those conversations.
    let p = Project::new().await;
    p.configure(json!({"rules": [{"when": {"category": "billing"}, "route_to": [{"skills": ["billing"]}]}]}))
        .await;
    p.create("c1").await;
    p.create("c2").await;
    p.create("c3").await;
    let billing = p
        .apply(
            "conversation.created",
            json!({"conversation_id": "b1", "visitor_id": "v-b1", "category": "billing"}),
        )
        .await;
    assert_eq!(types(&billing), ["conversation.queued"]);
    // Closed while waiting, after the pool appeared: gone from every queue.
    p.close("c2").await;
    assert_eq!(p.waiting().await, ["c1", "c3", "b1"]);
    // An agent without the skill serves the base pool only, oldest first.
    p.online_agents(&[("generalist", 5)]).await;
    assert_eq!(p.waiting().await, ["b1"]);
    assert_eq!(p.load("generalist").await, 2);
    p.apply(
        "agent.upserted",
        json!({"agents": [{"agent_id": "biller", "max_concurrent": 5, "skills": ["billing"]}]}),
    )
    .await;
    let out = p.status("biller", "online").await;
    assert_eq!(assigned_agents(&out), ["biller"]);
    assert!(p.waiting().await.is_empty());
}

/// Applies the events (built for a project) one by one to one project and as one batch to
/// another; asserts both give the same outputs, and returns them.
async fn batch_and_one_by_one_agree<const N: usize>(
    events: impl Fn(&Project) -> [InboundEvent; N],
) -> Vec<Vec<OutboundEvent>> {
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
async fn apply_batch(
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
