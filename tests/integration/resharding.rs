//! A project's cluster slot moved to another node while its events flow (resharding, as a
//! cluster grows or is rebalanced): a TLS Redis Cluster of 3 masters, one worker, and the slot
//! moved by hand the way `redis-cli --cluster reshard` moves it (`CLUSTER SETSLOT … IMPORTING`
//! / `MIGRATING`, then `MIGRATE` key by key, then `SETSLOT … NODE`), stopped halfway.

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::store::keys;

use crate::helpers::{of_type, wait_until, Env, Platform};
use crate::tls_support::{cluster_store, use_redis, Certificates, TlsRedis, USER};

/// A conversation created while its project's slot is halfway to another node, with some of
/// the project's keys moved and the keys its calls declare still on the old node, as in a
/// project that has run for a while (its settings, and event records kept as seen in this
/// generation and the one before). Redis would start the call on the old node and stop it at
/// the first key already moved ("Script attempted to access a non local key"): the worker
/// dead-lettered the event. Now Redis answers TRYAGAIN before the call starts, the worker holds
/// the event, and decides it once when the move is over.
#[tokio::test]
async fn a_conversation_created_while_its_slot_moves_is_decided_once_the_move_is_over() {
    if crate::tls_support::second_pass() {
        return;
    }
    let certificates = Certificates::generate();
    let cluster = TlsRedis::start_cluster(&certificates, 3, 0);
    let mut env = Env::new().await;
    use_redis(&mut env.config, &cluster, &certificates);
    let worker = env.spawn_worker().await;
    let store = cluster_store(&cluster, &certificates).await;
    let mut platform = Platform::new();
    let project = platform.id();

    env.publish_many(&platform.agents(&[("a", 1)])).await;
    // The team, then the settings, applied (as read from the cluster).
    wait_until(|| async { store.eligible(&project).await.is_ok_and(|a| a.len() == 1) }).await;
    // Without a `time`, the settings' event is kept as seen in this generation's records.
    env.publish(&platform.event_at(
        "project.configured",
        json!({"reply_timeout_seconds": 0}),
        None,
    ))
    .await;
    wait_until(|| async {
        store
            .settings(&project)
            .await
            .is_ok_and(|s| s.get("reply_timeout_seconds") == Some(&json!(0)))
    })
    .await;
    env.publish(&platform.created("c1")).await;
    let first = env.outputs(1, Duration::from_secs(10)).await;
    assert_eq!(of_type(&first, "conversation.assigned").len(), 1);

    let prefix = keys::project_prefix(&project);
    let node = cluster.ports[0];
    let ask = |port: u16, args: &[&str]| cluster.ask(&certificates, port, args);
    // The generation before this one holds records too in a project older than a generation
    // (7 days by default): written here, as nothing but time makes one.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // The store's generations, as the worker (of the same default dedupe TTL) counts them.
    let (generation, _) = store.generation(now_ms);
    let current = keys::events_key(&project, generation);
    let previous = keys::events_key(&project, generation - 1);
    let slot = cluster.slot_of(&certificates, &project);
    let from = cluster.master_of(&certificates, node, slot).unwrap();
    ask(from, &["hset", &previous, "seen-before-the-move", ""]);
    let to = *cluster.ports.iter().find(|p| **p != from).unwrap();
    let id = |port: u16| ask(port, &["cluster", "myid"]).trim().to_string();
    let (from_id, to_id) = (id(from), id(to));
    let slot_text = slot.to_string();
    for key in [keys::project_key(&project, "settings"), current, previous] {
        assert_eq!(ask(from, &["exists", &key]).trim(), "1", "{key} exists");
    }

    // The move starts, and the conversations' records go first.
    ask(
        to,
        &["cluster", "setslot", &slot_text, "importing", &from_id],
    );
    ask(
        from,
        &["cluster", "setslot", &slot_text, "migrating", &to_id],
    );
    let migrate = |key: &str| {
        let port = to.to_string();
        let moved = ask(
            from,
            &[
                "migrate",
                "127.0.0.1",
                &port,
                key,
                "0",
                "5000",
                "AUTH2",
                USER,
                &cluster.password,
            ],
        );
        assert_eq!(moved.trim(), "OK", "MIGRATE {key}");
    };
    migrate(&format!("{prefix}convs"));
    env.publish(&platform.created("c2")).await;
    assert!(
        env.outputs_for(Duration::from_secs(2)).await.is_empty(),
        "nothing is decided while the slot moves"
    );
    env.assert_no_dead_letters("while the slot moves").await;

    // The move ends: the rest of the keys, then the slot's new owner, told to every master.
    loop {
        let left = ask(from, &["cluster", "getkeysinslot", &slot_text, "100"]);
        let left: Vec<&str> = left.split_whitespace().collect();
        if left.is_empty() {
            break;
        }
        for key in left {
            migrate(key);
        }
    }
    for port in &cluster.ports {
        ask(*port, &["cluster", "setslot", &slot_text, "node", &to_id]);
    }
    let out = env.outputs(1, Duration::from_secs(20)).await;
    let queued: Vec<&Value> = of_type(&out, "conversation.queued");
    assert_eq!(queued.len(), 1, "c2 waits: a holds c1, its one slot");
    assert_eq!(queued[0]["data"]["conversation_id"], "c2");
    assert!(
        env.outputs_for(Duration::from_millis(500)).await.is_empty(),
        "decided once"
    );
    env.assert_no_dead_letters("after the move").await;
    assert_eq!(cluster.master_of(&certificates, node, slot), Some(to));
    worker.stop().await;
    env.cleanup().await;
}
