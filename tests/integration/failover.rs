//! Redis failing over under load: a TLS Redis Cluster of 3 masters and 3 replicas, two
//! workers waiting for one replica after each call (`SWITCHBOARD_REDIS_WAIT_REPLICAS=1`), and
//! the master of one project's slot killed (SIGKILL) in the middle of a burst. The workers
//! follow the promotion; every conversation is decided once; Redis agrees with every decision
//! published, so capacity neither leaks nor is handed out twice.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard::store::Store;

use crate::helpers::{load_of, of_type, Env, Platform};
use crate::tls_support::{cluster_store, use_redis, Certificates, TlsRedis};

const PROJECTS: usize = 4;
const AGENTS: [(&str, u64); 3] = [("a", 5), ("b", 5), ("c", 5)];
const CONVERSATIONS: usize = 40;

/// Waits until every project's team is online in Redis.
async fn wait_for_teams(store: &Store, platforms: &[Platform]) {
    for platform in platforms {
        let project = platform.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let online = store
                .eligible(&project)
                .await
                .map_or(0, |agents| agents.len());
            if online == AGENTS.len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the team of {} is not online",
                platform.project
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn decided(outputs: &[Value]) -> HashSet<String> {
    outputs
        .iter()
        .filter(|o| o["type"] == "conversation.assigned" || o["type"] == "conversation.queued")
        .map(|o| format!("{}/{}", o["project"], o["data"]["conversation_id"]))
        .collect()
}

#[tokio::test]
async fn a_master_killed_in_a_burst_is_followed_and_nothing_is_lost() {
    if crate::tls_support::second_pass() {
        return;
    }
    let certificates = Certificates::generate();
    let mut cluster = TlsRedis::start_cluster(&certificates, 3, 1);
    let mut env = Env::new().await;
    use_redis(&mut env.config, &cluster, &certificates);
    env.config.redis_wait_replicas = 1;
    let workers = [env.spawn_worker().await, env.spawn_worker().await];
    let store = cluster_store(&cluster, &certificates).await;

    let mut platforms: Vec<Platform> = (0..PROJECTS).map(|_| Platform::new()).collect();
    for platform in platforms.iter_mut() {
        env.publish_many(&platform.agents(&AGENTS)).await;
    }
    wait_for_teams(&store, &platforms).await;

    // The burst, the projects interleaved.
    let mut burst = Vec::new();
    for i in 0..CONVERSATIONS {
        for platform in platforms.iter_mut() {
            burst.push(platform.created(&format!("c{i}")));
        }
    }
    // The slot of the first project's keys, all of which carry its hash tag.
    let victim = platforms[0].id();
    let slot = cluster.slot_of(&certificates, &victim);
    let master = cluster
        .master_of(&certificates, cluster.ports[0], slot)
        .expect("the slot has a master");
    env.publish_many(&burst).await;
    let mut outputs = env.outputs(20, Duration::from_secs(20)).await;
    assert_eq!(outputs.len(), 20, "the burst is under way");
    cluster.kill(master);
    let killed = Instant::now();
    let survivor = *cluster.ports.iter().find(|p| **p != master).unwrap();
    // Promotion: the master's replica takes the slot.
    let promoted = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match cluster.master_of(&certificates, survivor, slot) {
            Some(now) if now != master => break now,
            _ => {}
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no failover within 30 s"
        );
    };
    eprintln!(
        "master {master} killed; {promoted} promoted after {:.1?}",
        killed.elapsed()
    );
    // The crashed node comes back as the new master's replica, so that its shard can confirm
    // writes again (with SWITCHBOARD_REDIS_WAIT_REPLICAS=1 a shard without a replica holds
    // its events: durability before availability).
    cluster.restart(&certificates, master);

    let expected = PROJECTS * CONVERSATIONS;
    while decided(&outputs).len() < expected && killed.elapsed() < Duration::from_secs(90) {
        outputs.extend(env.outputs_for(Duration::from_secs(1)).await);
        let done = decided(&outputs).len();
        eprintln!(
            "{done} of {expected} decided, {:.1?} after the kill",
            killed.elapsed()
        );
    }
    outputs.extend(env.outputs_for(Duration::from_millis(500)).await);
    // A failover is an outage: no event is the worker's to give up.
    env.assert_no_dead_letters("the failover").await;
    assert_eq!(
        decided(&outputs).len(),
        expected,
        "every conversation decided"
    );

    // A repeated output (a replay) is the same output: same id, same content.
    let mut by_id: HashMap<&str, &Value> = HashMap::new();
    for output in &outputs {
        let id = output["id"].as_str().unwrap();
        if let Some(earlier) = by_id.insert(id, output) {
            assert_eq!(
                earlier["data"], output["data"],
                "output {id} changed on replay"
            );
        }
    }
    // Redis (the promoted master included) agrees with every decision published.
    let store = cluster_store(&cluster, &certificates).await;
    for platform in &platforms {
        let mine: Vec<Value> = by_id
            .values()
            .filter(|o| o["project"] == platform.project.as_str())
            .map(|o| (*o).clone())
            .collect();
        let assigned = of_type(&mine, "conversation.assigned");
        assert_eq!(
            assigned.len(),
            15,
            "{}: the team's capacity",
            platform.project
        );
        for (agent, max) in AGENTS {
            let published = assigned
                .iter()
                .filter(|o| o["data"]["agent_id"] == agent)
                .count();
            assert!(published as u64 <= max, "{agent} over its limit");
            let load = load_of(&store, &platform.project, agent).await;
            assert_eq!(
                load, published as i64,
                "{}: {agent}'s load in Redis",
                platform.project
            );
        }
        let project = platform.id();
        let waiting = store.waiting_count(&project).await.unwrap() as usize;
        assert_eq!(
            waiting,
            CONVERSATIONS - 15,
            "{}: the waiting queue",
            platform.project
        );
    }
    assert_eq!(
        env.depth(&env.config.work_queue.clone()).await,
        0,
        "every event acked"
    );
    for worker in workers {
        assert!(
            worker.readiness.is_ready(),
            "the worker follows the promotion"
        );
        worker.stop().await;
    }
    env.cleanup().await;
}
