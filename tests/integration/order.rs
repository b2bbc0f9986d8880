//! The order of events about one thing, and exactly-once publication, through three worker
//! processes: the platform states the order with `time`; events are published to the broker in
//! another order, and the one the platform published last stands.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(15);

fn now_ms() -> i64 {
    switchboard::clock::Clock::now_ms(&switchboard::clock::SystemClock)
}

/// The platform's clock: `at(n)` is `n` ms after an instant a minute ago, with millisecond
/// precision as the contract asks.
fn at(ms: i64) -> String {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    switchboard::clock::rfc3339(*BASE.get_or_init(|| now_ms() - 60_000) + ms)
}

/// Events published to the broker in the order given, each stamped with its own `time`.
async fn publish(env: &Env, platform: &mut Platform, events: Vec<(&str, Value, i64)>) {
    let bodies: Vec<Vec<u8>> = events
        .into_iter()
        .map(|(event_type, data, time)| platform.event_at(event_type, data, Some(&at(time))))
        .collect();
    env.publish_many(&bodies).await;
}

#[tokio::test]
async fn the_last_status_published_stands_whatever_order_it_arrives_in() {
    let env = Env::new().await;
    let workers = WorkerProcesses::spawn(&env, 3);
    let mut platform = Platform::new();
    let agents: Vec<String> = (0..12).map(|i| format!("a{i}")).collect();
    let patches: Vec<Value> = agents
        .iter()
        .map(|a| json!({"agent_id": a, "max_concurrent": 2}))
        .collect();
    publish(
        &env,
        &mut platform,
        vec![("agent.upserted", json!({"agents": patches}), 0)],
    )
    .await;
    workers.settled(&env).await;
    // Each agent flips four times; the broker gets the flips newest first for even agents and
    // shuffled for odd ones, all at once, so the three workers apply them in any order.
    let mut events = vec![];
    let mut last = HashMap::new();
    for (i, agent) in agents.iter().enumerate() {
        let flips = [
            "online",
            "offline",
            "busy",
            if i % 3 == 0 { "online" } else { "offline" },
        ];
        let mut stamped: Vec<(&str, Value, i64)> = flips
            .iter()
            .enumerate()
            .map(|(k, status)| {
                (
                    "agent.status_changed",
                    json!({"agent_id": agent, "status": status}),
                    100 + 10 * k as i64 + i as i64,
                )
            })
            .collect();
        last.insert(agent.clone(), flips[3].to_string());
        if i % 2 == 0 {
            stamped.reverse();
        } else {
            stamped.swap(0, 3);
            stamped.swap(1, 2);
        }
        events.extend(stamped);
    }
    publish(&env, &mut platform, events).await;
    workers.settled(&env).await;
    let store = store().await;
    let eligible = store.eligible(&platform.id()).await.unwrap();
    for agent in &agents {
        assert_eq!(
            store.status(&platform.id(), agent).await.unwrap(),
            last[agent],
            "{agent}"
        );
        assert_eq!(
            eligible.contains(agent),
            last[agent] == "online",
            "{agent} eligible"
        );
    }
    env.cleanup().await;
}

/// The scenario: a bulk edit of a large team, then one agent online and offline a
/// moment later. Whatever worker takes which, the agent ends offline and takes nothing.
#[tokio::test]
async fn an_agent_that_went_offline_after_a_bulk_edit_stays_offline() {
    let mut env = Env::new().await;
    let workers = WorkerProcesses::spawn(&env, 3);
    let mut platform = Platform::new();
    let team: Vec<Value> = (0..1000)
        .map(|i| json!({"agent_id": format!("a{i}"), "max_concurrent": 5}))
        .collect();
    for round in 0..4i64 {
        let t = round * 1000;
        let limits: Vec<Value> = team
            .iter()
            .map(|a| json!({"agent_id": a["agent_id"], "max_concurrent": 5 + round}))
            .collect();
        publish(
            &env,
            &mut platform,
            vec![
                ("agent.upserted", json!({"agents": limits}), t),
                (
                    "agent.status_changed",
                    json!({"agent_id": "a7", "status": "online"}),
                    t + 1,
                ),
                (
                    "agent.status_changed",
                    json!({"agent_id": "a7", "status": "offline"}),
                    t + 2,
                ),
            ],
        )
        .await;
        workers.settled(&env).await;
        let store = store().await;
        assert_eq!(
            store.status(&platform.id(), "a7").await.unwrap(),
            "offline",
            "round {round}"
        );
    }
    publish(
        &env,
        &mut platform,
        vec![(
            "conversation.created",
            json!({"conversation_id": "c1", "visitor_id": "v1"}),
            9000,
        )],
    )
    .await;
    workers.settled(&env).await;
    let out = env.outputs(1, WAIT).await;
    assert_eq!(
        out[0]["type"], "conversation.queued",
        "nobody is online: {out:?}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn each_setting_keeps_the_value_published_last() {
    let env = Env::new().await;
    let workers = WorkerProcesses::spawn(&env, 3);
    let mut platform = Platform::new();
    // Published newest first: the older patches arrive after the newer ones.
    publish(
        &env,
        &mut platform,
        vec![
            (
                "project.configured",
                json!({"new_visitors": "weighted", "include_busy": true}),
                30,
            ),
            (
                "project.configured",
                json!({"reply_timeout_seconds": 60}),
                20,
            ),
            (
                "project.configured",
                json!({"new_visitors": "round_robin", "timezone": "Europe/Paris"}),
                10,
            ),
            (
                "project.configured",
                json!({"include_busy": false, "reply_timeout_seconds": null}),
                5,
            ),
        ],
    )
    .await;
    workers.settled(&env).await;
    let settings = store().await.settings(&platform.id()).await.unwrap();
    // A patch that set a setting later keeps it; an older patch still sets the others.
    assert_eq!(settings["new_visitors"], "weighted");
    assert_eq!(settings["include_busy"], true);
    assert_eq!(settings["reply_timeout_seconds"], 60);
    assert_eq!(settings["timezone"], "Europe/Paris");
    env.cleanup().await;
}

#[tokio::test]
async fn each_agent_field_keeps_the_value_published_last() {
    let env = Env::new().await;
    let workers = WorkerProcesses::spawn(&env, 3);
    let mut platform = Platform::new();
    publish(
        &env,
        &mut platform,
        vec![
            ("agent.upserted", json!({"agents": [{"agent_id": "a", "max_concurrent": 9, "skills": ["es"]}]}), 30),
            ("agent.upserted", json!({"agents": [{"agent_id": "a", "weight": 3}, {"agent_id": "b", "max_concurrent": 1}]}), 20),
            ("agent.upserted", json!({"agents": [{"agent_id": "a", "max_concurrent": 2, "daily_limit": 40}]}), 10),
            ("agent.upserted", json!({"agents": [{"agent_id": "a", "weight": null, "skills": ["fr"]}, {"agent_id": "b", "max_concurrent": 4}]}), 5),
        ],
    )
    .await;
    workers.settled(&env).await;
    let agents = store().await.agents(&platform.id()).await.unwrap();
    assert_eq!(agents["a"]["max_concurrent"], 9);
    assert_eq!(agents["a"]["skills"], json!(["es"]));
    assert_eq!(agents["a"]["weight"], 3);
    assert_eq!(agents["a"]["daily_limit"], 40);
    assert_eq!(agents["b"]["max_concurrent"], 1);
    env.cleanup().await;
}

/// A removal speaks for everything the agent had before it: a field published before the
/// removal and arriving after it and after the agent was added again does not come back.
#[tokio::test]
async fn a_field_published_before_a_removal_stays_removed_after_the_agent_comes_back() {
    let env = Env::new().await;
    let workers = WorkerProcesses::spawn(&env, 3);
    let mut platform = Platform::new();
    let arrivals = [
        (
            "agent.upserted",
            json!({"agents": [{"agent_id": "a", "max_concurrent": 3, "order": 2}]}),
            5,
        ),
        ("agent.removed", json!({"agent_id": "a"}), 20),
        (
            "agent.upserted",
            json!({"agents": [{"agent_id": "a", "max_concurrent": 5}]}),
            30,
        ),
        (
            "agent.upserted",
            json!({"agents": [{"agent_id": "a", "order": 1, "weight": 2}]}),
            10,
        ),
        (
            "agent.status_changed",
            json!({"agent_id": "a", "status": "online"}),
            15,
        ),
    ];
    for (event_type, data, time) in arrivals {
        publish(&env, &mut platform, vec![(event_type, data, time)]).await;
        workers.settled(&env).await;
    }
    let agents = store().await.agents(&platform.id()).await.unwrap();
    assert_eq!(agents["a"]["max_concurrent"], 5);
    assert!(agents["a"].get("order").is_none(), "{}", agents["a"]);
    assert!(agents["a"].get("weight").is_none(), "{}", agents["a"]);
    let status = store().await.status(&platform.id(), "a").await.unwrap();
    assert_eq!(
        status, "offline",
        "a status from before the removal does not come back"
    );
    env.cleanup().await;
}

/// A conversation's lifecycle: a close published after a message closes it, and a message
/// published after a close reopens it, whichever of the two reaches the broker first.
#[tokio::test]
async fn close_and_message_stand_in_the_order_they_were_published() {
    let mut env = Env::new().await;
    let workers = WorkerProcesses::spawn(&env, 3);
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 10)]).await;
    let cases = [
        // (conversation, close time, message time, close reaches the broker first)
        ("close-last-arrives-first", 30, 20, true),
        ("close-last-arrives-last", 30, 20, false),
        ("message-last-arrives-first", 20, 30, false),
        ("message-last-arrives-last", 20, 30, true),
    ];
    for (conversation, closed_at, message_at, close_first) in cases {
        publish(
            &env,
            &mut platform,
            vec![(
                "conversation.created",
                json!({"conversation_id": conversation, "visitor_id": "v"}),
                10,
            )],
        )
        .await;
        workers.settled(&env).await;
        let close = (
            "conversation.closed",
            json!({"conversation_id": conversation}),
            closed_at,
        );
        let message = (
            "message.received",
            json!({"conversation_id": conversation, "visitor_id": "v"}),
            message_at,
        );
        let events = if close_first {
            vec![close, message]
        } else {
            vec![message, close]
        };
        publish(&env, &mut platform, events).await;
        workers.settled(&env).await;
    }
    let store = store().await;
    let p = platform.id();
    for (conversation, closed_at, message_at, _) in cases {
        let state = store.conversation(&p, conversation).await.unwrap().unwrap();
        let expected = if closed_at > message_at {
            "closed"
        } else {
            "open"
        };
        assert_eq!(state.state, expected, "{conversation}");
    }
    // The two open ones count in the agent's load; the closed ones do not.
    assert_eq!(store.load(&p, "a").await.unwrap(), 2);
    env.outputs_for(Duration::from_millis(100)).await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_creation_published_before_its_close_but_arriving_after_it_changes_nothing() {
    let env = Env::new().await;
    let workers = WorkerProcesses::spawn(&env, 3);
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 10)]).await;
    let mut events = vec![];
    for i in 0..20 {
        let id = format!("c{i}");
        events.push((
            "conversation.closed",
            json!({"conversation_id": id}),
            20 + i,
        ));
        events.push((
            "conversation.created",
            json!({"conversation_id": id, "visitor_id": "v"}),
            10 + i,
        ));
    }
    publish(&env, &mut platform, events).await;
    workers.settled(&env).await;
    let store = store().await;
    let p = platform.id();
    assert_eq!(store.load(&p, "a").await.unwrap(), 0);
    for state in store.conversations(&p).await.unwrap().values() {
        assert_eq!(state.state, "closed");
    }
    env.cleanup().await;
}

/// A platform that retries an event after its outputs were confirmed gets nothing more; the
/// stale and duplicate events are counted.
#[tokio::test]
async fn a_retry_after_the_outputs_were_confirmed_publishes_nothing() {
    let mut env = Env::new().await;
    let workers = WorkerProcesses::spawn(&env, 1);
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 5)]).await;
    let created = platform.event_at(
        "conversation.created",
        json!({"conversation_id": "c1", "visitor_id": "v"}),
        Some(&at(10)),
    );
    let id = platform.last_id();
    env.publish(&created).await;
    let first = env.outputs(1, WAIT).await;
    assert_eq!(first[0]["type"], "conversation.assigned");
    // The worker tells the store once the broker confirmed the output: the store keeps it no
    // more (the conversation's version recognises the event from then on).
    let store = store().await;
    let p = platform.id();
    wait_until(|| async { store.replayable(&p, &id, now_ms()).await.unwrap() != Some(true) }).await;
    for _ in 0..5 {
        env.publish(&created).await;
    }
    // A stale event too: a close published before the creation, arriving after it.
    let stale = platform.event_at(
        "conversation.closed",
        json!({"conversation_id": "c1"}),
        Some(&at(5)),
    );
    env.publish(&stale).await;
    workers.settled(&env).await;
    assert!(
        env.outputs_for(Duration::from_millis(500)).await.is_empty(),
        "no second output"
    );
    assert_eq!(store.load(&p, "a").await.unwrap(), 1);
    let addr = workers.addrs()[0];
    let metrics = metrics_when(addr, "outcome=\"stale\"").await;
    let count = |label| metric_sum(&metrics, "switchboard_events_total", label);
    assert!(count("outcome=\"duplicate\"") >= 5.0, "{metrics}");
    assert_eq!(count("outcome=\"stale\""), 1.0, "{metrics}");
    env.cleanup().await;
}

/// A worker that died after the store applied an event but before the broker confirmed its
/// outputs: the redelivery publishes exactly those outputs, with the same ids, once.
#[tokio::test]
async fn a_redelivery_before_confirmation_publishes_the_same_outputs_once() {
    let mut env = Env::new().await;
    let _worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 5)]).await;
    let created = platform.event_at(
        "conversation.created",
        json!({"conversation_id": "c1", "visitor_id": "v"}),
        Some(&at(10)),
    );
    // The dead worker's half: applied, never confirmed.
    let event = switchboard::contract::decode(&created).unwrap();
    let store = store().await;
    let applied = store.apply(&event, now_ms()).await.unwrap();
    assert_eq!(assigned_agents(&applied.outputs), ["a"]);
    // The broker delivers it again.
    env.publish(&created).await;
    let out = env.outputs_for(Duration::from_secs(2)).await;
    assert_eq!(out.len(), 1, "{out:?}");
    let expected_id = switchboard::contract::outbound::output_id(&event.project, &event.id, 0);
    assert_eq!(out[0]["id"], expected_id.to_string());
    assert_eq!(out[0]["data"]["agent_id"], "a");
    assert_eq!(
        out[0]["sequence"],
        applied.outputs[0]
            .sequence
            .map(switchboard::contract::outbound::sequence_text)
            .unwrap()
    );
    assert_eq!(
        store.load(&platform.id(), "a").await.unwrap(),
        1,
        "decided once"
    );
    env.cleanup().await;
}

/// Outputs about a conversation carry a sequence that grows with every decision about it,
/// whichever worker published them.
#[tokio::test]
async fn outputs_about_a_conversation_carry_a_growing_sequence() {
    let mut env = Env::new().await;
    let workers = WorkerProcesses::spawn(&env, 3);
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 1)]).await;
    let created = json!({"conversation_id": "c1", "visitor_id": "v"});
    let to = |agent: &str| json!({"conversation_id": "c1", "to_agent_id": agent});
    // One decision after another (a transfer follows what the platform saw of the last one).
    let steps: Vec<Vec<(&str, Value, i64)>> = vec![
        vec![("conversation.created", created, 10)],
        vec![
            (
                "agent.upserted",
                json!({"agents": [{"agent_id": "b", "max_concurrent": 1}]}),
                15,
            ),
            (
                "agent.status_changed",
                json!({"agent_id": "b", "status": "online"}),
                16,
            ),
        ],
        vec![("conversation.transfer_requested", to("b"), 20)],
        vec![("conversation.transfer_requested", to("a"), 30)],
        // Rejected: a holds it already. The rejection changes nothing: it carries the number of
        // the decision it was judged against.
        vec![("conversation.transfer_requested", to("a"), 40)],
    ];
    for step in steps {
        publish(&env, &mut platform, step).await;
        workers.settled(&env).await;
    }
    let out = env.outputs(4, WAIT).await;
    let mut sequences: Vec<(String, &str, &str)> = out
        .iter()
        .map(|o| {
            (
                o["sequence"].as_str().unwrap().to_string(),
                o["type"].as_str().unwrap(),
                o["data"]["agent_id"].as_str().unwrap(),
            )
        })
        .collect();
    sequences.sort();
    let expected = [
        ("00000000000000000001", "conversation.assigned", "a"),
        ("00000000000000000002", "conversation.assigned", "b"),
        ("00000000000000000003", "command.rejected", "a"),
        ("00000000000000000003", "conversation.assigned", "a"),
    ];
    assert_eq!(sequences.len(), expected.len(), "{out:?}");
    for (got, want) in sequences.iter().zip(expected) {
        assert_eq!((got.0.as_str(), got.1, got.2), want);
    }
    env.cleanup().await;
}

/// `/metrics` once it mentions `needle` (events are counted after their ack).
async fn metrics_when(addr: std::net::SocketAddr, needle: &str) -> String {
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = http_get(addr, "/metrics").await.unwrap_or_default();
        if metrics.contains(needle) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    metrics
}
