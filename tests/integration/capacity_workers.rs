//! Capacity and fairness through worker processes, with the broker's delay queues as timers:
//! each channel's capacity in a burst across workers, after a crash and with nothing leaking;
//! a quiet conversation that stops counting; a wrap-up; a backlog shared by idle order; an agent
//! set away after missed assignments; skill levels. (`capacity.rs` drives each step by step.)

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};
use switchboard::contract::Id;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(15);

fn created_on(platform: &mut Platform, conversation: &str, channel: &str) -> Vec<u8> {
    platform.event(
        "conversation.created",
        json!({"conversation_id": conversation, "visitor_id": format!("v-{conversation}"),
               "channel": channel}),
    )
}

/// (conversation, agent) of each assignment, in the order received.
fn assignments(outputs: &[Value]) -> Vec<(String, String)> {
    of_type(outputs, "conversation.assigned")
        .iter()
        .map(|o| {
            (
                o["data"]["conversation_id"].as_str().unwrap().to_string(),
                o["data"]["agent_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The channels of a burst: chat and email alternating.
fn channel_of(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "chat"
    } else {
        "email"
    }
}

/// The team of the channel tests: per agent, max_concurrent and capacities.
fn channel_team() -> Value {
    json!([
        {"agent_id": "a", "max_concurrent": 4, "capacity": {"chat": 2}},
        {"agent_id": "b", "max_concurrent": 4, "capacity": {"chat": 1, "email": 2}},
        {"agent_id": "c", "max_concurrent": 2}
    ])
}

/// What each agent holds per channel at the end, from the store, checked against its bounds;
/// returns the total.
async fn held_within_bounds(env: &Env, project: &str) -> u64 {
    let store = store_at(&env.config.redis_url).await;
    let id = Id::parse(project).unwrap();
    let bounds = [
        ("a", 4, Some(2), None),
        ("b", 4, Some(1), Some(2)),
        ("c", 2, None, None),
    ];
    let mut total = 0;
    for (agent, max, chat, email) in bounds {
        let load = store.load(&id, agent).await.unwrap();
        assert!(load <= max, "{agent} holds {load} > {max}");
        for (channel, bound) in [("chat", chat), ("email", email)] {
            if let Some(bound) = bound {
                let held = store.channel_load(&id, agent, channel).await.unwrap();
                assert!(held <= bound, "{agent} holds {held} {channel} > {bound}");
            }
        }
        total += load;
    }
    total
}

#[tokio::test]
async fn each_channel_capacity_holds_in_a_burst_across_three_workers_and_nothing_leaks() {
    let mut env = Env::new().await;
    let workers = WorkerProcesses::spawn(&env, 3);
    let mut platform = Platform::new();
    env.team_of(&mut platform, channel_team()).await;
    let burst: Vec<Vec<u8>> = (0..40)
        .map(|i| created_on(&mut platform, &format!("c{i}"), channel_of(i)))
        .collect();
    env.publish_many(&burst).await;
    let out = env.outputs(40, WAIT).await;
    // a: 4, at most 2 of them chats; b: 1 chat + 2 emails (its capacities leave 1 of its 4
    // unused); c: 2 of either.
    let assigned = assignments(&out);
    assert_eq!(assigned.len(), 9, "{assigned:?}");
    let mut per: HashMap<(String, &str), u64> = HashMap::new();
    for (conversation, agent) in &assigned {
        let i: usize = conversation[1..].parse().unwrap();
        *per.entry((agent.clone(), channel_of(i))).or_default() += 1;
    }
    let count =
        |agent: &str, channel: &str| per.get(&(agent.to_string(), channel)).copied().unwrap_or(0);
    assert_eq!(count("a", "chat") + count("a", "email"), 4);
    assert!(count("a", "chat") <= 2);
    assert_eq!((count("b", "chat"), count("b", "email")), (1, 2));
    assert_eq!(count("c", "chat") + count("c", "email"), 2);
    assert_eq!(held_within_bounds(&env, &platform.project).await, 9);
    // Everything closes, in the order created: waiting conversations are handed the freed
    // capacity in between, within the same bounds, and at the end nothing is held.
    let closes = platform.closed_each(0..40);
    env.publish_many(&closes).await;
    workers.settled(&env).await;
    let later = env.outputs_for(Duration::from_millis(300)).await;
    let handed: HashSet<String> = assignments(&later).into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        handed.len(),
        assignments(&later).len(),
        "none assigned twice"
    );
    assert_eq!(held_within_bounds(&env, &platform.project).await, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn a_worker_killed_mid_burst_takes_no_channel_over_its_capacity() {
    let mut env = Env::new().await;
    let mut victim = WorkerProcesses::spawn(&env, 1);
    let survivor = WorkerProcesses::spawn(&env, 1);
    let mut platform = Platform::new();
    env.team_of(&mut platform, channel_team()).await;
    let burst: Vec<Vec<u8>> = (0..200)
        .map(|i| created_on(&mut platform, &format!("c{i}"), channel_of(i)))
        .collect();
    let (first, second) = burst.split_at(100);
    env.publish_many(first).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    victim.kill();
    env.publish_many(second).await;
    let decided = |out: &[Value]| decided_count(out) == 200;
    let out = env.outputs_until(decided, Duration::from_secs(30)).await;
    let decided = decisions(&out);
    assert_eq!(decided.len(), 200, "no conversation lost");
    assert!(decided.values().all(|ids| ids.len() == 1), "decided once");
    let assigned: HashSet<String> = assignments(&out).into_iter().map(|(c, _)| c).collect();
    assert_eq!(assigned.len(), 9, "exactly what the capacities allow");
    assert_eq!(held_within_bounds(&env, &platform.project).await, 9);
    drop(survivor);
    env.cleanup().await;
}

#[tokio::test]
async fn a_quiet_conversation_frees_its_slot_until_the_visitor_writes_again() {
    let mut env = Env::new().await;
    let workers = WorkerProcesses::spawn(&env, 1);
    let mut platform = Platform::new();
    env.configure(&mut platform, json!({"inactive_after_seconds": 2}))
        .await;
    env.team_of(
        &mut platform,
        json!([{"agent_id": "a", "max_concurrent": 1}]),
    )
    .await;
    // One at a time (a worker may apply events that arrive together in any order).
    env.publish(&platform.created("c1")).await;
    let first = env.outputs(1, WAIT).await;
    assert_eq!(assignments(&first), [("c1".into(), "a".into())]);
    env.publish(&platform.created("c2")).await;
    assert_eq!(env.outputs(1, WAIT).await[0]["type"], "conversation.queued");
    // Two seconds later, c1 has gone quiet: c2 gets the slot.
    let quiet = env.outputs(1, WAIT).await;
    assert_eq!(assignments(&quiet), [("c2".into(), "a".into())]);
    // c1's visitor writes: it counts again (a holds 2 of 1), so c3 waits.
    env.publish(&platform.event(
        "message.received",
        json!({"conversation_id": "c1", "visitor_id": "v-c1"}),
    ))
    .await;
    workers.settled(&env).await;
    let store = store_at(&env.config.redis_url).await;
    assert_eq!(load_of(&store, &platform.project, "a").await, 2);
    env.publish(&platform.created("c3")).await;
    let waiting = env.outputs(1, WAIT).await;
    assert_eq!(waiting[0]["type"], "conversation.queued");
    env.cleanup().await;
}

#[tokio::test]
async fn a_wrap_up_hands_the_slot_back_after_its_delay() {
    let mut env = Env::new().await;
    let workers = WorkerProcesses::spawn(&env, 1);
    let mut platform = Platform::new();
    env.configure(&mut platform, json!({"wrap_up_seconds": 1}))
        .await;
    env.team_of(
        &mut platform,
        json!([{"agent_id": "a", "max_concurrent": 1}]),
    )
    .await;
    env.publish(&platform.created("c1")).await;
    assert_eq!(
        assignments(&env.outputs(1, WAIT).await),
        [("c1".into(), "a".into())]
    );
    env.publish(&platform.created("c2")).await;
    env.outputs(1, WAIT).await;
    env.publish(&platform.closed("c1")).await;
    workers.settled(&env).await;
    assert!(
        env.outputs_for(Duration::from_millis(400)).await.is_empty(),
        "the agent is in wrap-up"
    );
    let after = env.outputs(1, WAIT).await;
    assert_eq!(assignments(&after), [("c2".into(), "a".into())]);
    env.cleanup().await;
}

/// Agents whose shift starts together (their schedules open in one event) meet a backlog: it
/// is shared in idle order, the agent served longest ago first, not by who logged in first.
#[tokio::test]
async fn a_backlog_met_by_a_shift_starting_is_shared_by_idle_order() {
    let mut env = Env::new().await;
    let _workers = WorkerProcesses::spawn(&env, 1);
    let mut platform = Platform::new();
    env.configure(&mut platform, json!({"tie_break": "longest_idle"}))
        .await;
    // History: one each, in the order c, a, b (b served last, c longest ago).
    let only = |agent: &str| {
        json!([{"agent_id": "a", "max_concurrent": if agent == "a" { 1 } else { 0 }},
               {"agent_id": "b", "max_concurrent": if agent == "b" { 1 } else { 0 }},
               {"agent_id": "c", "max_concurrent": if agent == "c" { 1 } else { 0 }}])
    };
    for (i, agent) in ["c", "a", "b"].iter().enumerate() {
        env.team_of(&mut platform, only(agent)).await;
        let conversation = format!("h{i}");
        env.publish(&platform.created(&conversation)).await;
        let out = env.outputs(1, WAIT).await;
        assert_eq!(
            assignments(&out),
            [(conversation.clone(), agent.to_string())]
        );
        env.publish(&platform.closed(&conversation)).await;
    }
    // Everyone goes offline; a backlog builds.
    for agent in ["a", "b", "c"] {
        env.publish(&platform.event(
            "agent.status_changed",
            json!({"agent_id": agent, "status": "offline"}),
        ))
        .await;
    }
    let backlog: Vec<Vec<u8>> = (0..6).map(|i| platform.created(&format!("w{i}"))).collect();
    env.publish_many(&backlog).await;
    assert_eq!(
        of_type(&env.outputs(6, WAIT).await, "conversation.queued").len(),
        6
    );
    // The shift starts: one upsert gives a, b and c (in that order) schedules open all week.
    let always: serde_json::Map<String, Value> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| (d.to_string(), json!([["00:00", "24:00"]])))
        .collect();
    let shift: Vec<Value> = ["a", "b", "c"]
        .iter()
        .map(|agent| {
            json!({"agent_id": agent, "max_concurrent": 5,
                   "schedule": {"timezone": "UTC", "hours": always}})
        })
        .collect();
    env.publish(&platform.event("agent.upserted", json!({ "agents": shift })))
        .await;
    let out = env
        .outputs_until(|out| of_type(out, "conversation.assigned").len() == 6, WAIT)
        .await;
    let order: Vec<String> = assignments(&out).into_iter().map(|(_, a)| a).collect();
    assert_eq!(order, ["c", "a", "b", "c", "a", "b"]);
    env.cleanup().await;
}

#[tokio::test]
async fn an_agent_missing_its_assignments_is_set_busy() {
    let mut env = Env::new().await;
    let _workers = WorkerProcesses::spawn(&env, 1);
    let mut platform = Platform::new();
    env.configure(
        &mut platform,
        json!({"reply_timeout_seconds": 1, "away_after_missed": 1, "tie_break": "longest_idle"}),
    )
    .await;
    env.team_of(
        &mut platform,
        json!([{"agent_id": "a", "max_concurrent": 5}, {"agent_id": "b", "max_concurrent": 5}]),
    )
    .await;
    env.publish(&platform.created("c1")).await;
    let first = env.outputs(1, WAIT).await;
    assert_eq!(assignments(&first), [("c1".into(), "a".into())]);
    // No reply within a second: c1 moves to b and a is set busy.
    let out = env
        .outputs_until(|out| !of_type(out, "agent.status_changed").is_empty(), WAIT)
        .await;
    assert_eq!(assignments(&out), [("c1".into(), "b".into())]);
    let status = of_type(&out, "agent.status_changed")[0];
    assert_eq!(
        status["data"],
        json!({"agent_id": "a", "status": "busy", "reason": "missed_assignments"})
    );
    assert!(status["sequence"].as_str().is_some());
    let store = store_at(&env.config.redis_url).await;
    let project = platform.id();
    assert_eq!(store.status(&project, "a").await.unwrap(), "busy");
    env.cleanup().await;
}

#[tokio::test]
async fn the_highest_skill_level_is_served_first_then_a_wider_step() {
    let mut env = Env::new().await;
    let _workers = WorkerProcesses::spawn(&env, 1);
    let mut platform = Platform::new();
    env.configure(
        &mut platform,
        json!({"rules": [{"when": {"language": "es"}, "route_to": [
            {"skills": {"spanish": 5}, "order_by": "skill_level", "wait_seconds": 1},
            {"skills": ["spanish"]}
        ]}]}),
    )
    .await;
    env.team_of(
        &mut platform,
        json!([
            {"agent_id": "novice", "max_concurrent": 1, "skills": {"spanish": 2}},
            {"agent_id": "expert", "max_concurrent": 1, "skills": {"spanish": 9}},
            {"agent_id": "good", "max_concurrent": 1, "skills": {"spanish": 6}}
        ]),
    )
    .await;
    // One at a time (a worker may apply events that arrive together in any order).
    let mut assigned = vec![];
    for i in 1..=3 {
        env.publish(&platform.event(
            "conversation.created",
            json!({"conversation_id": format!("c{i}"), "visitor_id": format!("v{i}"),
                   "language": "es"}),
        ))
        .await;
        let out = env
            .outputs_until(
                |out| !of_type(out, "conversation.assigned").is_empty(),
                WAIT,
            )
            .await;
        assigned.extend(assignments(&out));
        if i == 3 {
            // Nobody at level 5 or more was free: it waited a second, then the wider step.
            assert_eq!(of_type(&out, "conversation.queued").len(), 1);
            let widened = &of_type(&out, "conversation.assigned")[0]["data"];
            assert_eq!(widened["reason"], "rule_escalated");
        }
    }
    assert_eq!(
        assigned,
        [
            ("c1".into(), "expert".into()),
            ("c2".into(), "good".into()),
            ("c3".into(), "novice".into())
        ]
    );
    env.cleanup().await;
}
