//! What Redis holds, and how compactly: a conversation's record leaves out what it can (it
//! stays for the whole closed retention) and still keeps its two versions apart; both store
//! layouts' records share a Redis; and layout 2 moves the agents' loads into a key each.

use serde_json::{json, Value};
use switchboard::config::StoreLayout;
use switchboard::contract::InboundEvent;
use switchboard::store::{keys, Store, StoreOptions};

use crate::helpers::*;

/// The event, stamped with a platform `time` (us).
fn at(mut event: InboundEvent, time_us: i64) -> InboundEvent {
    event.time_us = Some(time_us);
    event
}

/// The record as Redis holds it.
async fn stored_record(p: &Project, conversation: &str) -> Value {
    let key = p.key("convs");
    let raw: String = p
        .store
        .query(redis::cmd("HGET").arg(key).arg(conversation))
        .await
        .unwrap();
    serde_json::from_str(&raw).unwrap()
}

async fn holder(p: &Project, conversation: &str) -> Option<String> {
    let project = p.project();
    p.store.conversations(&project).await.unwrap()[conversation]
        .agent
        .clone()
}

#[tokio::test]
async fn a_record_leaves_out_what_it_can_and_keeps_its_versions_apart() {
    // Layout 1's JSON, whatever layout the other tests run in.
    let p = Project::on(writing(StoreLayout::Original).await);
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
    // Layout 1's JSON, whatever layout the other tests run in.
    let p = Project::on(writing(StoreLayout::Original).await);
    p.online_agents(&[("a", 5), ("b", 5)]).await;
    p.create("c1").await;
    let first = holder(&p, "c1").await.expect("assigned at creation");
    let other = if first == "a" { "b" } else { "a" };
    let key = p.key("convs");
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

/// How Redis keeps `key` ("listpack", "hashtable", "skiplist"…).
async fn encoding(p: &Project, key: String) -> String {
    p.store
        .query(redis::cmd("OBJECT").arg("ENCODING").arg(key))
        .await
        .unwrap()
}

/// A store whose workers write `layout`.
async fn writing(layout: StoreLayout) -> Store {
    let options = StoreOptions {
        store_layout: layout,
        ..StoreOptions::default()
    };
    store_with(&redis_url(), options).await
}

/// Workers writing records as JSON (layout 1) and as MessagePack (layout 2) share a Redis
/// (while the setting rolls out): each reads what the other wrote, versions and priority
/// included, and so does the read API.
#[tokio::test]
async fn records_of_either_layout_are_read_by_workers_writing_the_other() {
    for (first, then) in [
        (StoreLayout::Compact, StoreLayout::Original),
        (StoreLayout::Original, StoreLayout::Compact),
    ] {
        let p = Project::on(writing(first).await);
        let other_store = writing(then).await;
        p.online_agents(&[("a", 5), ("b", 5)]).await;
        p.apply_event(&at(
            p.event(
                "conversation.created",
                json!({"conversation_id": "c1", "visitor_id": "v1"}),
            ),
            1_000,
        ))
        .await;
        p.apply(
            "conversation.created",
            json!({"conversation_id": "c2", "visitor_id": "v2", "priority": 3}),
        )
        .await;
        let key = p.key("convs");
        let raw = |conversation: &'static str| {
            let (store, key) = (p.store.clone(), key.clone());
            async move {
                let raw: Vec<u8> = store
                    .query(redis::cmd("HGET").arg(key).arg(conversation))
                    .await
                    .unwrap();
                raw
            }
        };
        let json_first = raw("c1").await[0] == b'{';
        assert_eq!(json_first, first == StoreLayout::Original, "{first:?}");
        let first_agent = holder(&p, "c1").await.unwrap();
        let other = if first_agent == "a" { "b" } else { "a" };

        // The other layout's workers take over.
        let apply = |event: InboundEvent| {
            let (store, now) = (other_store.clone(), p.now_ms);
            async move { store.apply(&event, now).await.unwrap() }
        };
        let message = p.event(
            "message.received",
            json!({"conversation_id": "c1", "visitor_id": "v1"}),
        );
        apply(at(message, 3_000)).await;
        let transfer = p.event(
            "conversation.transfer_requested",
            json!({"conversation_id": "c1", "to_agent_id": other}),
        );
        apply(at(transfer, 2_000)).await;
        let back = p.event(
            "conversation.transfer_requested",
            json!({"conversation_id": "c1", "to_agent_id": first_agent}),
        );
        let stale = apply(at(back, 1_500)).await;
        assert!(stale.outputs.is_empty(), "{first:?}: {:?}", stale.outputs);
        assert_eq!(raw("c1").await[0] == b'{', then == StoreLayout::Original);

        let project = p.project();
        let states = other_store.conversations(&project).await.unwrap();
        assert_eq!(states["c1"].agent.as_deref(), Some(other), "{first:?}");
        assert_eq!(states["c1"].state, "open");
        assert_eq!(states["c2"].priority, 3);
        assert_eq!(states["c2"].visitor.as_deref(), Some("v2"));
        assert_eq!(states["c1"].sequence, 2, "{first:?}");
    }
}

/// MessagePack keeps an assigned conversation in a third less than JSON.
#[tokio::test]
async fn a_messagepack_record_is_a_third_smaller() {
    let mut sizes = vec![];
    for layout in [StoreLayout::Original, StoreLayout::Compact] {
        let p = Project::on(writing(layout).await);
        p.online_agents(&[("a", 5)]).await;
        p.apply_event(&at(
            p.event(
                "conversation.created",
                json!({"conversation_id": "c12345", "visitor_id": "v12345"}),
            ),
            1_796_361_818_396_000,
        ))
        .await;
        let key = p.key("convs");
        let length: usize = p
            .store
            .query(redis::cmd("HSTRLEN").arg(key).arg("c12345"))
            .await
            .unwrap();
        sizes.push(length);
    }
    assert!(
        sizes[1] * 3 <= sizes[0] * 2,
        "JSON {} B, MessagePack {} B",
        sizes[0],
        sizes[1]
    );
}

/// The loads a project kept in `owned` (layout 1) move to one key per agent on the first call
/// of a worker writing layout 2, exactly; from then on a layout-1 worker of this release counts
/// them there too, and an agent leaving takes its key with it.
#[tokio::test]
async fn loads_move_to_one_key_per_agent_once_and_stay_exact() {
    let p = Project::on(writing(StoreLayout::Original).await);
    let compact = writing(StoreLayout::Compact).await;
    let project = p.project();
    let key = |name| p.key(name);
    let exists = |key: String| {
        let store = p.store.clone();
        async move {
            let n: i64 = store.query(redis::cmd("EXISTS").arg(key)).await.unwrap();
            n == 1
        }
    };
    p.online_agents(&[("a", 3), ("b", 3)]).await;
    for i in 1..=5 {
        p.create(&format!("c{i}")).await;
    }
    p.close("c1").await;
    let before = p.store.open_conversations(&project).await.unwrap();
    assert_eq!(before.values().map(Vec::len).sum::<usize>(), 4);
    assert!(exists(key("owned")).await);

    // A worker writing layout 2 moves them, and then assigns c6.
    let created = p.event(
        "conversation.created",
        json!({"conversation_id": "c6", "visitor_id": "v6"}),
    );
    let out = compact.apply(&created, p.now_ms).await.unwrap().outputs;
    assert!(!exists(key("owned")).await, "owned is split, not copied");
    for agent in ["a", "b"] {
        assert!(exists(keys::agent_load_key(&project, agent)).await);
    }
    let after = p.store.open_conversations(&project).await.unwrap();
    let mut expected = before.clone();
    let holder = out[0].data["agent_id"].as_str().unwrap().to_string();
    expected.get_mut(&holder).unwrap().push("c6".into());
    for held in expected.values_mut() {
        held.sort();
    }
    let mut after_sorted = after.clone();
    for held in after_sorted.values_mut() {
        held.sort();
    }
    assert_eq!(after_sorted, expected);
    assert_eq!(p.store.open_count(&project).await.unwrap(), 5);

    // A layout-1 worker of this release counts in the agents' keys now.
    let load = p.load(&holder).await;
    p.close("c6").await;
    assert_eq!(p.load(&holder).await, load - 1);
    assert!(!exists(key("owned")).await);

    // An agent leaving takes its key: of the four open conversations, a (room for 3) holds
    // three and one waits.
    p.apply("agent.removed", json!({"agent_id": "b"})).await;
    assert!(!exists(keys::agent_load_key(&project, "b")).await);
    let states = p.store.conversations(&project).await.unwrap();
    let count = |state: &str| states.values().filter(|c| c.state == state).count();
    assert_eq!((count("open"), count("waiting")), (3, 1), "{states:?}");
    assert_eq!(p.load("a").await, 3);
    let open = p.store.open_conversations(&project).await.unwrap();
    assert_eq!(open.keys().collect::<Vec<_>>(), ["a"]);
}

/// Layout 2 spreads the visitors a project remembers over small buckets, which Redis keeps as
/// listpacks, growing them a bucket at a time; every visitor is still recognised, by workers
/// writing either layout, and those remembered in `visitors` before are read there and move
/// to their bucket when they come back.
#[tokio::test]
async fn visitors_spread_over_small_buckets_and_are_all_still_recognised() {
    let p = Project::on(writing(StoreLayout::Original).await);
    let compact = writing(StoreLayout::Compact).await;
    let project = p.project();
    let key = |name: &str| p.key(name);
    p.online_agents(&[("a", 1000), ("b", 1000), ("c", 1000)])
        .await;
    let mut served_by = std::collections::BTreeMap::new();
    let create = |store: Store, conversation: String, visitor: String| {
        let event = p.event(
            "conversation.created",
            json!({"conversation_id": conversation, "visitor_id": visitor}),
        );
        let now = p.now_ms;
        async move {
            let out = store.apply(&event, now).await.unwrap().outputs;
            assert_eq!(out.len(), 1, "{out:?}");
            let data = &out[0].data;
            (
                data["agent_id"].as_str().unwrap().to_string(),
                data["reason"].as_str().unwrap().to_string(),
            )
        }
    };
    // Ten visitors remembered in the one hash, by a worker writing layout 1...
    for i in 0..10 {
        let (agent, _) = create(p.store.clone(), format!("c{i}"), format!("v{i}")).await;
        served_by.insert(format!("v{i}"), agent);
    }
    // ...then 400 by a worker writing layout 2.
    for i in 10..410 {
        let (agent, _) = create(compact.clone(), format!("c{i}"), format!("v{i}")).await;
        served_by.insert(format!("v{i}"), agent);
    }
    let (buckets, in_buckets) = p.visitor_spread().await;
    assert_eq!(in_buckets, 400);
    // A few dozen visitors a bucket at most, so each stays a listpack (checked below).
    assert!((400 / 32..=400 / 8).contains(&buckets), "{buckets}");
    for n in 0..buckets {
        let bucket = keys::bucket_key(&project, "visitors", n);
        assert_eq!(
            encoding(&p, bucket).await,
            "listpack",
            "bucket {n} of {buckets}"
        );
    }
    let everyone: Vec<String> = served_by.keys().cloned().collect(); // sorted, as a BTreeMap
    assert_eq!(p.remembered_visitors().await, everyone);

    // Each comes back, to the worker writing layout 1: recognised, wherever remembered.
    for (i, (visitor, agent)) in served_by.iter().enumerate() {
        let back = create(p.store.clone(), format!("back{i}"), visitor.clone()).await;
        assert_eq!(back, (agent.clone(), "returning".to_string()), "{visitor}");
    }
    let left_in_hash: i64 = p
        .store
        .query(redis::cmd("EXISTS").arg(key("visitors")))
        .await
        .unwrap();
    assert_eq!(left_in_hash, 0, "the first ten moved to their buckets");
    assert_eq!(p.remembered_visitors().await, everyone);
    let (buckets, in_buckets) = p.visitor_spread().await;
    assert_eq!(in_buckets, 410);

    // Past the visitor memory (30 days by default), and a round of the buckets later, the
    // sweep has gone through every bucket, one per forgetting event (one event in 16, by the
    // call's seed: 1,000 events bring about 60).
    let mut p = p;
    p.now_ms += 31 * 86_400_000;
    for i in 0..1000 {
        p.status("a", if i % 2 == 0 { "busy" } else { "online" })
            .await;
    }
    assert_eq!(p.remembered_visitors().await, Vec::<String>::new());
    assert_eq!(p.visitor_spread().await, (buckets, 0));
}

/// The pool's least_loaded scores, as Redis returns them.
async fn load_scores(p: &Project) -> Vec<(String, String)> {
    let key = p.key("by_load");
    p.store
        .query(
            redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES"),
        )
        .await
        .unwrap()
}

fn whole(score: &str) -> bool {
    score.bytes().all(|b| b.is_ascii_digit())
}

/// The one of `conversations` that `agent` holds.
async fn held_by(p: &Project, agent: &str, conversations: &[&str]) -> String {
    for conversation in conversations {
        if holder(p, conversation).await.as_deref() == Some(agent) {
            return conversation.to_string();
        }
    }
    panic!("{agent} holds none of {conversations:?}")
}

/// Once a project keeps loads per agent, its pools score loads in whole numbers, the tie
/// within them. The switch scores every agent again in the same call, so the two scales never
/// share a pool, and the least loaded agent is still the one chosen, by workers writing either
/// layout.
#[tokio::test]
async fn loads_kept_per_agent_are_scored_in_whole_numbers_and_still_choose_the_least_loaded() {
    let p = Project::on(writing(StoreLayout::Original).await);
    let compact = writing(StoreLayout::Compact).await;
    p.online_agents(&[("a", 5), ("b", 5), ("c", 5)]).await;
    let first = ["c1", "c2", "c3"];
    for conversation in first {
        p.create(conversation).await;
    }
    let scores = load_scores(&p).await;
    assert_eq!(scores.len(), 3);
    assert!(
        scores.iter().any(|(_, score)| !whole(score)),
        "layout 1 breaks ties with a fraction: {scores:?}"
    );

    // Loads a 0, b 1, c 1: a worker writing layout 2 switches the project and gives c4 to a.
    p.close(&held_by(&p, "a", &first).await).await;
    let created = p.event(
        "conversation.created",
        json!({"conversation_id": "c4", "visitor_id": "v4"}),
    );
    let out = compact.apply(&created, p.now_ms).await.unwrap().outputs;
    assert_eq!(out[0].data["agent_id"], "a", "{out:?}");
    let scores = load_scores(&p).await;
    assert_eq!(scores.len(), 3);
    assert!(scores.iter().all(|(_, score)| whole(score)), "{scores:?}");

    // A layout-1 worker of this release follows: b's close makes b the least loaded, with a
    // whole score, and the next conversation is b's.
    p.close(&held_by(&p, "b", &first).await).await;
    assert_eq!(p.create("c5").await[0].data["agent_id"], "b");
    let scores = load_scores(&p).await;
    assert!(scores.iter().all(|(_, score)| whole(score)), "{scores:?}");
}

/// The members of the sorted set `key`, sorted.
async fn members(p: &Project, key: String) -> Vec<String> {
    let mut members: Vec<String> = p
        .store
        .query(redis::cmd("ZRANGE").arg(key).arg(0).arg(-1))
        .await
        .unwrap();
    members.sort();
    members
}

/// What every assignment writes again (the pool's loads, the day's counts) and reads (the
/// agents' configurations) is kept as a table once the team is large enough that a listpack,
/// which each write reads from its start, costs more than a table's memory; a small team's stay
/// listpacks. The entry that makes a table is never left in it, and a pool Redis made compact
/// again (an earlier release's, or its data loaded from disk) becomes a table when an agent
/// next joins it.
#[tokio::test]
async fn what_each_assignment_rewrites_is_kept_as_a_table_holding_only_the_team() {
    let small = Project::new().await;
    small.online_agents(&[("a", 5), ("b", 5), ("c", 5)]).await;
    small.create("c1").await;
    for key in ["by_load", "agents", "daily"] {
        assert_eq!(encoding(&small, small.key(key)).await, "listpack", "{key}");
    }

    let p = Project::new().await;
    let team: Vec<String> = (10..50).map(|i| format!("agent-{i}")).collect();
    let limits: Vec<(&str, u64)> = team.iter().map(|agent| (agent.as_str(), 5)).collect();
    p.online_agents(&limits).await;
    // The least loaded first: each agent takes one.
    for i in 0..team.len() {
        p.create(&format!("c{i}")).await;
    }
    let (by_load, agents, daily) = (p.key("by_load"), p.key("agents"), p.key("daily"));
    assert_eq!(encoding(&p, by_load.clone()).await, "skiplist");
    assert_eq!(encoding(&p, agents.clone()).await, "hashtable");
    assert_eq!(encoding(&p, daily.clone()).await, "hashtable");
    assert_eq!(members(&p, by_load.clone()).await, team);
    assert_eq!(p.fields(&agents).await, team);
    assert_eq!(p.fields(&daily).await, team);

    // The pool as Redis keeps it when it loads its data from disk: the same members and
    // scores, compact. It stays so while agents only take conversations...
    let scores = load_scores(&p).await;
    let mut compact = redis::cmd("ZADD");
    compact.arg(&by_load);
    for (agent, score) in &scores {
        compact.arg(score).arg(agent);
    }
    let _: () = p
        .store
        .query(redis::cmd("DEL").arg(&by_load))
        .await
        .unwrap();
    let _: () = p.store.query(&compact).await.unwrap();
    assert_eq!(encoding(&p, by_load.clone()).await, "listpack");
    p.create("c-late").await;
    assert_eq!(encoding(&p, by_load.clone()).await, "listpack");
    // ...and becomes a table when one joins it again.
    p.status(&team[0], "offline").await;
    p.status(&team[0], "online").await;
    assert_eq!(encoding(&p, by_load.clone()).await, "skiplist");
    assert_eq!(members(&p, by_load).await, team);
}

/// A visitor whose first conversation makes one more bucket (the 17th visitor of a single
/// bucket) and who lands in the new bucket is still recognised by their next conversation in
/// the same call, and remembered once: within a call the library remembers the last visitor's
/// bucket, and a split must make it look again.
#[tokio::test]
async fn a_visitor_moved_by_their_own_bucket_split_is_recognised_later_in_the_same_batch() {
    let team = [("a", 1000), ("b", 1000), ("c", 1000)];
    let create = |p: &Project, conversation: &str, visitor: &str| {
        p.event(
            "conversation.created",
            json!({"conversation_id": conversation, "visitor_id": visitor}),
        )
    };
    // Which of v1..v16 lie in bucket 1 once a 17th visitor splits the first bucket (the
    // bucket of an id depends on the id alone).
    let scratch = Project::on(writing(StoreLayout::Compact).await);
    scratch.online_agents(&team).await;
    for i in 1..=17 {
        let event = create(&scratch, &format!("c{i}"), &format!("v{i}"));
        scratch.apply_event(&event).await;
    }
    assert_eq!(scratch.visitor_spread().await.0, 2);
    let bucket_1 = keys::bucket_key(&scratch.project(), "visitors", 1);
    let moved: Vec<String> = scratch
        .store
        .query(redis::cmd("HKEYS").arg(bucket_1))
        .await
        .unwrap();
    let visitor = (1..=16)
        .map(|i| format!("v{i}"))
        .find(|v| moved.contains(v))
        .expect("a split moves some of 16 visitors");

    // Here the 16 others come first; then one batch: `visitor`'s first conversation (the
    // 17th visitor: the split moves them to bucket 1) and their second.
    let p = Project::on(writing(StoreLayout::Compact).await);
    p.online_agents(&team).await;
    for i in 1..=17 {
        let other = format!("v{i}");
        if other != visitor {
            p.apply_event(&create(&p, &format!("c{i}"), &other)).await;
        }
    }
    assert_eq!(p.visitor_spread().await, (1, 16));
    let first = create(&p, "first", &visitor);
    let second = create(&p, "second", &visitor);
    let applied = super::batches::apply_batch(&p, &[&first, &second]).await;
    assert_eq!(p.visitor_spread().await, (2, 17));
    let (took_first, took_second) = (&applied[0].outputs[0].data, &applied[1].outputs[0].data);
    assert_eq!(took_second["reason"], "returning", "{took_second}");
    assert_eq!(took_second["agent_id"], took_first["agent_id"]);
    let remembered = p.remembered_visitors().await;
    assert_eq!(
        remembered.iter().filter(|v| **v == visitor).count(),
        1,
        "{remembered:?}"
    );
}
