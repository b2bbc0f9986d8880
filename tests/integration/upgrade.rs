//! Upgrades lose nothing: the previous release's worker runs first, then this release's, on the
//! same Redis and the same queues; and both side by side, as during a rolling deploy. The
//! previous release is built from its git tag by `scripts/previous-release.sh` (once; the
//! README's test command builds it before the tests).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};
use switchboard::contract::{decode, Id};
use switchboard::store::{Delivered, Outcome, Store};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

/// The previous release's `switchboard` binary.
fn previous_release() -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/previous-release.sh");
    let built = std::process::Command::new("bash")
        .arg(script)
        .output()
        .expect("bash runs");
    assert!(
        built.status.success(),
        "the previous release could not be built: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    String::from_utf8(built.stdout).unwrap().trim().to_string()
}

/// Stops worker processes as a deploy does (SIGTERM: each finishes what it has) and waits.
fn stop(mut workers: WorkerProcesses) {
    for status in workers.terminate() {
        assert!(status.success(), "the worker stopped cleanly: {status:?}");
    }
}

/// Loads are exactly the open conversations, and nobody holds more than `max_concurrent`.
async fn assert_consistent(store: &Store, project: &Id) {
    let agents = store.agents(project).await.unwrap();
    let mut held: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for (id, conversation) in store.conversations(project).await.unwrap() {
        if conversation.state == "open" {
            held.entry(conversation.agent.unwrap())
                .or_default()
                .insert(id);
        }
    }
    let owned: BTreeMap<String, HashSet<String>> = store
        .open_conversations(project)
        .await
        .unwrap()
        .into_iter()
        .map(|(agent, conversations)| (agent, conversations.into_iter().collect()))
        .collect();
    assert_eq!(owned, held);
    for (agent, conversations) in &owned {
        let max = agents[agent]["max_concurrent"].as_u64().unwrap();
        assert!(
            conversations.len() as u64 <= max,
            "{agent} holds {} > {max}",
            conversations.len()
        );
    }
}

fn decisions(outputs: &[Value]) -> Vec<(&str, &str)> {
    outputs
        .iter()
        .filter(|o| o["type"] == "conversation.assigned" || o["type"] == "conversation.queued")
        .map(|o| {
            (
                o["data"]["conversation_id"].as_str().unwrap(),
                o["type"].as_str().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn this_release_continues_where_the_previous_one_stopped() {
    let previous = previous_release();
    let mut env = Env::new().await;
    let mut platform = Platform::new();
    let project = platform.id();
    let store = store().await;

    // The previous release: a team, more conversations than room, a close. (Its outputs carry
    // no sequence, which this release's schemas require.)
    env.check_outputs = false;
    let old = WorkerProcesses::of(vec![worker_process_of(&previous, &env.config, 0)]);
    env.team(&mut platform, &[("a", 2), ("b", 2)]).await;
    let created = platform.created_each(0..8);
    env.publish_many(&created).await;
    let first = env.outputs(8, WAIT).await;
    let assigned: Vec<(String, String)> = first
        .iter()
        .filter(|o| o["type"] == "conversation.assigned")
        .map(|o| {
            let data = &o["data"];
            (
                data["conversation_id"].as_str().unwrap().into(),
                data["agent_id"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(assigned.len(), 4, "{first:?}");
    // Which waits next is the previous release's arrival order, read from its queue.
    let next_waiting = |store: &Store| {
        let store = store.clone();
        let project = project.clone();
        async move {
            store
                .waiting(&project, None)
                .await
                .unwrap()
                .into_iter()
                .map(|w| w.conversation_id)
                .collect::<Vec<_>>()
        }
    };
    let waiting = next_waiting(&store).await;
    assert_eq!(waiting.len(), 4);
    let (first_closed, first_holder) = assigned[0].clone();
    env.publish(&platform.closed(&first_closed)).await;
    let backlog = env.outputs(1, WAIT).await;
    assert_eq!(backlog[0]["data"]["conversation_id"], waiting[0].as_str());
    assert_eq!(backlog[0]["data"]["agent_id"], first_holder.as_str());
    assert_eq!(backlog[0]["data"]["reason"], "backlog");
    stop(old);
    env.check_outputs = true;

    // This release, on what the previous one left.
    let new = WorkerProcesses::spawn(&env, 1);
    env.publish(&platform.closed(&assigned[1].0)).await;
    let out = env.outputs(1, WAIT).await;
    assert_eq!(
        out[0]["data"]["conversation_id"],
        waiting[1].as_str(),
        "the next in the old queue: {out:?}"
    );
    assert_eq!(out[0]["data"]["reason"], "backlog");
    // The previous release published no sequence: this release's first decision is number 1.
    assert_eq!(out[0]["sequence"], "00000000000000000001");
    // The conversation closed under the previous release comes back: its agent is full again
    // (the backlog took its place), and so is the other, so it waits.
    env.publish(&platform.event(
        "message.received",
        json!({"conversation_id": first_closed, "visitor_id": format!("v-{first_closed}")}),
    ))
    .await;
    let out = env.outputs(1, WAIT).await;
    assert_eq!(
        out[0]["data"]["conversation_id"],
        first_closed.as_str(),
        "{out:?}"
    );
    assert_eq!(
        out[0]["type"], "conversation.queued",
        "{first_holder} is full: {out:?}"
    );
    // The queue the previous release filled is served in its order, where the reopened
    // conversation keeps its first arrival.
    let waiting = next_waiting(&store).await;
    assert_eq!(waiting.len(), 3);
    env.publish_many(&platform.agents(&[("c", 4)])).await;
    let out = env.outputs(3, WAIT).await;
    let served: Vec<&str> = out
        .iter()
        .map(|o| o["data"]["conversation_id"].as_str().unwrap())
        .collect();
    assert_eq!(served, waiting, "{out:?}");
    assert_consistent(&store, &project).await;

    // A redelivery of an event the previous release applied is replayed from its record: the
    // outputs it published then, with the same ids.
    let replayed_conversation = &assigned[2].0;
    let index: usize = replayed_conversation[1..].parse().unwrap();
    let event = decode(&created[index]).unwrap();
    let now = switchboard::clock::Clock::now_ms(&switchboard::clock::SystemClock);
    let replayed = store
        .apply_batch(
            &[Delivered {
                event: &event,
                redelivered: true,
            }],
            now,
        )
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(replayed.outcome, Outcome::Replayed);
    let published = first
        .iter()
        .find(|o| o["data"]["conversation_id"] == replayed_conversation.as_str())
        .unwrap();
    assert_eq!(replayed.outputs.len(), 1);
    assert_eq!(
        serde_json::to_value(&replayed.outputs[0].data).unwrap(),
        published["data"]
    );
    // Once those are confirmed, the same event again (a platform retry) publishes nothing.
    store
        .confirm(&project, std::slice::from_ref(&replayed.record))
        .await
        .unwrap();
    let retried = store.apply(&event, now).await.unwrap();
    assert_eq!(retried.outcome, Outcome::Duplicate, "{retried:?}");
    assert_consistent(&store, &project).await;

    // A visitor the previous release served (its memory in that release's layout) comes back
    // with a new conversation once its agent has room: it goes back to that agent.
    let (kept, holder) = assigned[3].clone();
    let full = store.load(&project, &holder).await.unwrap();
    env.publish(&platform.closed(&kept)).await;
    // A worker may apply two events in flight at once: the creation waits for the close.
    wait_until(|| async { store.load(&project, &holder).await.unwrap() < full }).await;
    env.publish(&platform.event(
        "conversation.created",
        json!({"conversation_id": "returning", "visitor_id": format!("v-{kept}")}),
    ))
    .await;
    let out = env.outputs(1, WAIT).await;
    assert_eq!(out[0]["data"]["conversation_id"], "returning", "{out:?}");
    assert_eq!(out[0]["data"]["agent_id"], holder.as_str(), "{out:?}");
    assert_eq!(out[0]["data"]["reason"], "returning", "{out:?}");
    assert_consistent(&store, &project).await;

    // With no earlier release left, records may be written as MessagePack: a worker doing so
    // carries on with what both releases wrote in JSON.
    stop(new);
    let mut compact = env.config.clone();
    compact.store_layout = 2;
    let _compact = WorkerProcesses::of(vec![worker_process(&compact, 0)]);
    env.publish(&platform.event(
        "message.received",
        json!({"conversation_id": kept, "visitor_id": format!("v-{kept}")}),
    ))
    .await;
    let out = env.outputs(1, WAIT).await;
    assert_eq!(out[0]["data"]["conversation_id"], kept.as_str(), "{out:?}");
    let convs = switchboard::store::keys::project_key(&project, "convs");
    let stored: Vec<u8> = store
        .query(redis::cmd("HGET").arg(&convs).arg(&kept))
        .await
        .unwrap();
    assert_ne!(stored[0], b'{', "written as MessagePack");
    let reopened = if out[0]["type"] == "conversation.assigned" {
        "open"
    } else {
        "waiting"
    };
    let state = store.conversation(&project, &kept).await.unwrap().unwrap();
    assert_eq!(state.state, reopened, "{out:?}");
    assert_consistent(&store, &project).await;
    env.cleanup().await;
}

/// A rolling deploy: a worker of each release on the same queue, under a burst of creations
/// and closes. No agent is overfilled, no capacity leaks, every conversation is decided once.
#[tokio::test]
async fn both_releases_side_by_side_keep_every_invariant() {
    let previous = previous_release();
    let mut env = Env::new().await;
    env.check_outputs = false;
    let mut platform = Platform::new();
    let project = platform.id();
    let _workers = WorkerProcesses::of(vec![
        worker_process_of(&previous, &env.config, 0),
        env.spawn_process(),
    ]);
    env.team(&mut platform, &[("a", 5), ("b", 5), ("c", 5)])
        .await;
    let created = platform.created_each(0..60);
    env.publish_many(&created).await;
    let all_decided = |out: &[Value]| {
        decisions(out)
            .iter()
            .map(|d| d.0)
            .collect::<HashSet<_>>()
            .len()
            == 60
    };
    let out = env.outputs_until(all_decided, WAIT).await;
    // Each conversation decided once: a repeat would carry the same id.
    let mut ids_by_conversation: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
    for o in &out {
        if o["type"] == "conversation.assigned" || o["type"] == "conversation.queued" {
            ids_by_conversation
                .entry(o["data"]["conversation_id"].as_str().unwrap())
                .or_default()
                .insert(o["id"].as_str().unwrap());
        }
    }
    assert_eq!(ids_by_conversation.len(), 60);
    assert!(
        ids_by_conversation.values().all(|ids| ids.len() == 1),
        "{ids_by_conversation:?}"
    );
    // Half of them close: each close of an open one hands its place to the next waiting.
    let closed = platform.closed_each((0..60).step_by(2));
    env.publish_many(&closed).await;
    let store = store().await;
    // Wait for the closes, then the state must be consistent.
    for _ in 0..100 {
        if env.depth(&env.config.work_queue.clone()).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_consistent(&store, &project).await;
    let open: usize = store
        .open_conversations(&project)
        .await
        .unwrap()
        .values()
        .map(Vec::len)
        .sum();
    assert_eq!(
        open, 15,
        "every agent full: 30 conversations are still open for 15 places"
    );
    env.cleanup().await;
}

/// An agent a worker of the previous release took offline (or busy) gets nothing from this
/// release: placing an agent again after its assignment no longer reads its status, because a
/// strategy chooses only among agents the pools hold as eligible, and both releases take an
/// agent out of the pools when it stops receiving. First one release after the other, then
/// both side by side, as during a rolling deploy.
#[tokio::test]
async fn agents_the_previous_release_took_away_get_nothing_from_this_one() {
    let previous = previous_release();
    let mut env = Env::new().await;
    env.check_outputs = false;
    let mut platform = Platform::new();
    let project = platform.id();
    let store = store().await;
    let status_of = |agent: &'static str| {
        let (store, project) = (store.clone(), project.clone());
        async move { store.status(&project, agent).await.unwrap() }
    };
    let status = |platform: &mut Platform, agent: &str, status: &str| {
        platform.event(
            "agent.status_changed",
            json!({"agent_id": agent, "status": status}),
        )
    };
    let assigned_to = |out: &[Value]| {
        let mut by_agent: BTreeMap<String, usize> = BTreeMap::new();
        for o in out.iter().filter(|o| o["type"] == "conversation.assigned") {
            *by_agent
                .entry(o["data"]["agent_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        by_agent
    };

    // The previous release: three agents online, then b offline and c busy.
    let old = WorkerProcesses::of(vec![worker_process_of(&previous, &env.config, 0)]);
    env.team(&mut platform, &[("a", 5), ("b", 5), ("c", 5)])
        .await;
    env.publish_many(&[
        status(&mut platform, "b", "offline"),
        status(&mut platform, "c", "busy"),
    ])
    .await;
    wait_until(|| async { status_of("b").await == "offline" && status_of("c").await == "busy" })
        .await;
    stop(old);

    // This release alone: a takes everything it has room for; b and c nothing.
    let new = WorkerProcesses::spawn(&env, 1);
    env.publish_many(&platform.created_each(0..7)).await;
    let out = env
        .outputs_until(|out| decisions(out).len() == 7, WAIT)
        .await;
    assert_eq!(
        assigned_to(&out),
        BTreeMap::from([("a".to_string(), 5)]),
        "{out:?}"
    );
    let held_by_a: Vec<&str> = of_type(&out, "conversation.assigned")
        .iter()
        .map(|o| o["data"]["conversation_id"].as_str().unwrap())
        .collect();
    // b back online under this release takes the two waiting.
    env.publish(&status(&mut platform, "b", "online")).await;
    let out = env
        .outputs_until(|out| of_type(out, "conversation.assigned").len() == 2, WAIT)
        .await;
    assert_eq!(
        assigned_to(&out),
        BTreeMap::from([("b".to_string(), 2)]),
        "{out:?}"
    );
    assert_consistent(&store, &project).await;

    // Both releases side by side: a goes offline and gives back room it cannot use, c comes
    // online. Of a burst of creations, c takes what it has room for, b what it has left, and
    // a nothing.
    let _both = WorkerProcesses::of(vec![worker_process_of(&previous, &env.config, 0)]);
    env.publish_many(&[
        status(&mut platform, "a", "offline"),
        status(&mut platform, "c", "online"),
    ])
    .await;
    wait_until(|| async { status_of("a").await == "offline" && status_of("c").await == "online" })
        .await;
    let closes: Vec<Vec<u8>> = held_by_a[..3].iter().map(|c| platform.closed(c)).collect();
    env.publish_many(&closes).await;
    wait_until(|| async { store.load(&project, "a").await.unwrap() == 2 }).await;
    env.publish_many(&platform.created_each(7..17)).await;
    let out = env
        .outputs_until(|out| decisions(out).len() == 10, WAIT)
        .await;
    assert_eq!(
        assigned_to(&out),
        BTreeMap::from([("b".to_string(), 3), ("c".to_string(), 5)]),
        "{out:?}"
    );
    assert_eq!(store.load(&project, "a").await.unwrap(), 2);
    assert_consistent(&store, &project).await;
    stop(new);
    env.cleanup().await;
}
