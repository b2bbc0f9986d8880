//! The function library in Redis: the keys it touches, loading it again when Redis lost it,
//! what it keeps between calls; and `switchboard inspect`, which reads what it wrote.

use serde_json::json;
use switchboard::store::{interface, keys};

use crate::helpers::*;

#[tokio::test]
async fn inspect_shows_agents_loads_the_waiting_queue_and_settings() {
    let p = Project::new().await;
    p.configure(json!({"new_visitors": "round_robin"})).await;
    p.online_agents(&[("alice", 2), ("bob", 1)]).await;
    p.apply("agent.upserted", json!({"agents": [{"agent_id": "carol", "max_concurrent": 3, "skills": ["es"], "channels": ["whatsapp"]}]})).await;
    for i in 0..5 {
        p.create(&format!("c{i}")).await;
    }
    let project = p.project();
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
async fn without_levels_rules_or_channel_rights_the_script_touches_only_keys_the_interface_names() {
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
    let project = p.project();
    let (generation, _) = p.store.generation(p.now_ms);
    // In store layout 2 each agent's load has a key of its own, and the visitors are spread
    // over buckets, named by the library.
    let agents = ["a", "b", "c"].into_iter().filter(|_| store_layout() == 2);
    let buckets =
        (0..p.visitor_spread().await.0).map(|n| keys::bucket_key(&project, "visitors", n));
    // The generations' keys, and every other key of the catalogue (the library names those
    // from the project's prefix).
    let fixed = interface::PROJECT_KEYS
        .iter()
        .filter(|key| !key.suffix.contains('<'))
        .map(|key| keys::project_key(&project, key.name));
    let named: std::collections::BTreeSet<String> =
        keys::apply_keys(&project, generation, std::iter::empty())
            .into_iter()
            .chain(fixed)
            .chain(agents.map(|agent| keys::agent_load_key(&project, agent)))
            .chain(buckets)
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
            assert!(
                named.contains(&key),
                "a key the interface does not name: {key}"
            );
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

/// The library keeps the settings it decoded by their stored text, for the next calls of any
/// project that stores the same text. A project that changes its settings must not change the
/// table another project reads, and a text written by someone else (a worker of an earlier
/// release) must be read as written.
#[tokio::test]
async fn settings_read_again_stay_each_projects_own_and_follow_whoever_wrote_them() {
    let (a, b) = (Project::new().await, Project::new().await);
    for p in [&a, &b] {
        p.configure(json!({"max_waiting": 1})).await;
        p.online_agents(&[("x", 1)]).await;
        p.create("c0").await;
        p.create("c1").await;
        assert_eq!(p.waiting().await, ["c1"]);
    }
    // Both store the same text; `a` changes its own.
    a.configure(json!({"max_waiting": 3})).await;
    assert_eq!(types(&b.create("c2").await), ["conversation.overflowed"]);
    a.create("c2").await;
    assert_eq!(a.waiting().await, ["c1", "c2"]);
    // Another writer's text, set as it is.
    let _: () = b
        .store
        .query(
            redis::cmd("SET")
                .arg(b.key("settings"))
                .arg(r#"{"max_waiting":2}"#),
        )
        .await
        .unwrap();
    b.create("c3").await;
    assert_eq!(b.waiting().await, ["c1", "c3"]);
    assert_eq!(types(&b.create("c4").await), ["conversation.overflowed"]);
}
