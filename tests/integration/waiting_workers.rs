//! The waiting experience through a worker process, with the broker's delay queues as its
//! timers: positions published as they change, a wait that overflows, the longest wait on
//! `/metrics`, and a conversation handed back to the queue.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(15);

fn of<'a>(outputs: &'a [Value], event_type: &str, conversation: &str) -> Vec<&'a Value> {
    outputs
        .iter()
        .filter(|o| o["type"] == event_type && o["data"]["conversation_id"] == conversation)
        .collect()
}

#[tokio::test]
async fn waiting_conversations_learn_their_place_and_overflow_after_the_longest_wait() {
    let mut env = Env::new().await;
    let workers = WorkerProcesses::spawn(&env, 1);
    let mut platform = Platform::new();
    env.configure(
        &mut platform,
        json!({"queue_position_updates": true, "queue_position_interval_seconds": 1,
               "max_wait_seconds": 5}),
    )
    .await;
    env.team(&mut platform, &[("a", 1)]).await;
    env.publish(&platform.created("c0")).await;
    env.outputs(1, WAIT).await;
    env.publish_many(&[platform.created("c1"), platform.created("c2")])
        .await;
    let first = env.outputs(4, WAIT).await;
    assert_eq!(
        of(&first, "conversation.queue_position", "c1")[0]["data"]["position"],
        1
    );
    assert_eq!(
        of(&first, "conversation.queue_position", "c2")[0]["data"]["position"],
        2
    );
    // The longest wait shows on /metrics while they wait.
    let addr = workers.addrs()[0];
    tokio::time::sleep(Duration::from_millis(600)).await;
    let metrics = http_get(addr, "/metrics").await.unwrap();
    let label = format!("project=\"{}\"", platform.project);
    let (line, waited) = series(&metrics, "switchboard_longest_wait_seconds")
        .find(|(line, _)| line.contains(&label))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(waited >= 0.5, "{line}");
    // c0 closes: c1 goes to the agent, and c2's next look (a second later) finds it first.
    // Each look is armed when the one before is done, so on a loaded machine they fall
    // behind the clock; the wait's limit is five seconds away, several looks later.
    env.publish(&platform.closed("c0")).await;
    let later = env
        .outputs_until(
            |out| !of(out, "conversation.overflowed", "c2").is_empty(),
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(
        of(&later, "conversation.assigned", "c1").len(),
        1,
        "{later:?}"
    );
    let moved = of(&later, "conversation.queue_position", "c2");
    assert!(!moved.is_empty(), "{later:?}");
    assert_eq!(moved[0]["data"]["position"], 1, "{later:?}");
    // Then, five seconds after it started waiting, it overflows, once.
    let overflowed = of(&later, "conversation.overflowed", "c2");
    assert_eq!(overflowed.len(), 1, "{later:?}");
    assert_eq!(overflowed[0]["data"]["reason"], "max_wait");
    assert!(overflowed[0]["data"]["waited_seconds"].as_u64().unwrap() >= 5);
    // Positions stop with the wait: nothing more about c2.
    let after = env.outputs_for(Duration::from_millis(1500)).await;
    assert!(
        of(&after, "conversation.queue_position", "c2").is_empty(),
        "{after:?}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_conversation_handed_back_through_the_broker_goes_to_another_agent() {
    let mut env = Env::new().await;
    let _workers = WorkerProcesses::spawn(&env, 2);
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 1)]).await;
    env.publish(&platform.created("c1")).await;
    assert_eq!(env.outputs(1, WAIT).await[0]["data"]["agent_id"], "a");
    env.team(&mut platform, &[("b", 1)]).await;
    env.publish(&platform.event(
        "conversation.requeue_requested",
        json!({"conversation_id": "c1", "by_agent_id": "a"}),
    ))
    .await;
    let out = env.outputs(3, WAIT).await;
    let unassigned = of(&out, "conversation.unassigned", "c1");
    assert_eq!(unassigned[0]["data"]["reason"], "requeued");
    let assigned = of(&out, "conversation.assigned", "c1");
    assert_eq!(assigned.len(), 1, "{out:?}");
    assert_eq!(assigned[0]["data"]["agent_id"], "b");
    env.cleanup().await;
}

#[tokio::test]
async fn a_full_queue_turns_a_newcomer_away_until_the_platform_sends_it_again() {
    let mut env = Env::new().await;
    let _workers = WorkerProcesses::spawn(&env, 1);
    let mut platform = Platform::new();
    env.configure(&mut platform, json!({"max_waiting": 1}))
        .await;
    env.team(&mut platform, &[("a", 1)]).await;
    for (conversation, expected) in [
        ("c0", "conversation.assigned"),
        ("c1", "conversation.queued"),
        ("c2", "conversation.overflowed"),
    ] {
        env.publish(&platform.created(conversation)).await;
        let out = env.outputs(1, WAIT).await;
        assert_eq!(out[0]["type"], expected, "{conversation}: {out:?}");
    }
    // c0 closes: c1 gets the agent; c2 stays overflowed (nothing about it).
    env.publish(&platform.closed("c0")).await;
    let out = env.outputs_for(Duration::from_millis(800)).await;
    assert_eq!(of(&out, "conversation.assigned", "c1").len(), 1, "{out:?}");
    assert!(
        out.iter().all(|o| o["data"]["conversation_id"] != "c2"),
        "{out:?}"
    );
    // Sent again (its visitor writes), it waits like a new conversation: the queue has room.
    env.publish(&platform.event(
        "message.received",
        json!({"conversation_id": "c2", "visitor_id": "v-c2"}),
    ))
    .await;
    let again = env.outputs(1, WAIT).await;
    assert_eq!(again[0]["type"], "conversation.queued", "{again:?}");
    env.cleanup().await;
}

/// With `priority_aging_seconds: 1`, a conversation of priority 0 that has waited 2.5 s comes
/// before one of priority 2 that arrives then (2 levels are worth 2 s of waiting).
#[tokio::test]
async fn a_long_wait_is_served_before_a_later_higher_priority() {
    let mut env = Env::new().await;
    let _workers = WorkerProcesses::spawn(&env, 1);
    let mut platform = Platform::new();
    env.configure(&mut platform, json!({"priority_aging_seconds": 1}))
        .await;
    env.team(&mut platform, &[("a", 1)]).await;
    env.publish(&platform.created("c0")).await;
    env.outputs(1, WAIT).await;
    env.publish(&platform.created("low")).await;
    env.outputs(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    env.publish(&platform.event(
        "conversation.created",
        json!({"conversation_id": "high", "visitor_id": "v-high", "priority": 2}),
    ))
    .await;
    env.outputs(1, WAIT).await;
    env.publish(&platform.closed("c0")).await;
    let out = env.outputs(1, WAIT).await;
    assert_eq!(of(&out, "conversation.assigned", "low").len(), 1, "{out:?}");
    env.cleanup().await;
}
