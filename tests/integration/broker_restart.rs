//! A real RabbitMQ restart under load, on a private node (the machine's shared node stays up for
//! the tests running beside this one): the workers reconnect and redeclare their topology,
//! every event published before and after the restart is applied exactly once, nothing is
//! assigned twice, and the loads in Redis match the assignments.
//!
//! To make the stop hit the workers in the middle of their work, whatever the machine's speed,
//! both worker processes are frozen (SIGSTOP) while the first burst is published: the broker
//! hands each its prefetch of deliveries and keeps the rest in the queue. They are thawed
//! (SIGCONT) and, as soon as the first decisions show in Redis, the node is sent SIGTERM (a
//! graceful stop that begins at once; `rabbitmqctl stop` starts a CLI first, by which time the
//! burst is over). Events decided in Redis whose outputs were not confirmed, or that were not
//! acked, come again once the node is back and must be replayed (same outputs, same ids), not
//! decided a second time; the events still in the queue must survive the restart.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::Value;
use switchboard::contract::Id;

use crate::helpers::*;
use crate::private_rabbit::{PrivateRabbit, Stop};

/// Conversations created before the restart, and after it.
const BEFORE: usize = 150;
const AFTER: usize = 150;
const TEAM: [(&str, u64); 2] = [("a", 40), ("b", 40)];
const WORKERS: usize = 2;

async fn get(port: u16, path: &str) -> Option<String> {
    http_get(([127, 0, 0, 1], port).into(), path).await
}

async fn wait_ready(port: u16, within: Duration) {
    if let Err(last) = readiness_within(([127, 0, 0, 1], port).into(), within).await {
        panic!("the worker on port {port} was not ready within {within:?}: {last:?}");
    }
}

/// Conversations of `project` assigned or waiting, in Redis.
async fn decided_in_redis(store: &switchboard::store::Store, project: &str) -> i64 {
    let project = Id::parse(project).unwrap();
    let open = store.open_count(&project).await.unwrap();
    let waiting = store.waiting_count(&project).await.unwrap();
    (open + waiting) as i64
}

fn decided_conversations(outputs: &[Value]) -> HashSet<String> {
    outputs
        .iter()
        .filter(|o| o["type"] == "conversation.assigned" || o["type"] == "conversation.queued")
        .map(|o| o["data"]["conversation_id"].as_str().unwrap().to_string())
        .collect()
}

/// Per queue of the node: (ready, unacknowledged) messages.
fn queue_stats(node: &PrivateRabbit) -> HashMap<String, (u64, u64)> {
    let listed = node.ctl(&[
        "list_queues",
        "--quiet",
        "--no-table-headers",
        "name",
        "messages_ready",
        "messages_unacknowledged",
    ]);
    assert!(listed.status.success(), "list_queues: {listed:?}");
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, ready, unacked] = fields[..] else {
                return None;
            };
            Some((
                name.to_string(),
                (ready.parse().ok()?, unacked.parse().ok()?),
            ))
        })
        .collect()
}

/// Consumers of `queue`. (The `consumers` column of `list_queues` says 0 for a quorum queue
/// that has consumers, on 3.10: `list_consumers` is right.)
fn consumers(node: &PrivateRabbit, queue: &str) -> usize {
    let listed = node.ctl(&[
        "list_consumers",
        "--quiet",
        "--no-table-headers",
        "queue_name",
    ]);
    assert!(listed.status.success(), "list_consumers: {listed:?}");
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|line| line.trim() == queue)
        .count()
}

/// A durable quorum queue bound to the outbound exchange: it keeps every output the workers
/// publish (persistent messages, confirmed before the worker acks) across the restart, to be
/// read once the workers are done.
async fn declare_collector(url: &str, exchange: &str, queue: &str) {
    let connection = lapin::Connection::connect(url, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "declared".into()).await;
}

/// Publishes as a platform does (persistent, routing key = type), with confirms and
/// `mandatory` (an unroutable event would be returned, not silently dropped). A batch that is
/// not entirely confirmed is published again on a new connection: the events keep their ids,
/// so a copy that had got through is only a duplicate the workers ignore.
async fn publish_confirmed(url: &str, exchange: &str, bodies: &[Vec<u8>]) {
    for attempt in 1..=20 {
        match try_publish(url, exchange, bodies).await {
            Ok(()) => return,
            Err(error) => {
                eprintln!("publishing failed (attempt {attempt}), publishing again: {error}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    panic!("could not publish {} events to {url}", bodies.len());
}

async fn try_publish(url: &str, exchange: &str, bodies: &[Vec<u8>]) -> Result<(), String> {
    let connection = lapin::Connection::connect(url, Default::default())
        .await
        .map_err(|e| e.to_string())?;
    let published = async {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut confirms = Vec::with_capacity(bodies.len());
        for body in bodies {
            let event: Value = serde_json::from_slice(body).unwrap();
            let key = event["type"].as_str().unwrap();
            confirms.push(
                channel
                    .basic_publish(
                        exchange.into(),
                        key.into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        body,
                        switchboard::broker::json_properties(),
                    )
                    .await?,
            );
        }
        let mut refused = 0;
        for confirm in confirms {
            let confirmation = confirm.await?;
            if confirmation.is_nack() || confirmation.take_message().is_some() {
                refused += 1;
            }
        }
        Ok::<usize, lapin::Error>(refused)
    }
    .await;
    let _ = connection.close(200, "published".into()).await;
    match published {
        Ok(0) => Ok(()),
        Ok(refused) => Err(format!("{refused} events nacked or unroutable")),
        Err(error) => Err(error.to_string()),
    }
}

/// Reads the collector queue until every conversation is decided (or `wait` runs out), then a
/// second more: a late duplicate would show up there.
async fn collect_outputs(
    url: &str,
    queue: &str,
    conversations: usize,
    wait: Duration,
) -> Vec<Value> {
    let connection = lapin::Connection::connect(url, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "collector".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + wait;
    let mut outputs = vec![];
    let mut grace_until = None;
    loop {
        if grace_until.is_none() && decided_conversations(&outputs).len() >= conversations {
            grace_until = Some(tokio::time::Instant::now() + Duration::from_secs(1));
        }
        let until = grace_until.unwrap_or(deadline).min(deadline);
        match tokio::time::timeout_at(until, consumer.next()).await {
            Ok(Some(Ok(delivery))) => {
                let output: Value = serde_json::from_slice(&delivery.data).unwrap();
                assert_valid_output(&output);
                outputs.push(output);
            }
            Ok(other) => panic!("the collector's consumer ended: {other:?}"),
            Err(_) => break,
        }
    }
    let _ = connection.close(200, "collected".into()).await;
    outputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_rabbitmq_restart_under_load_loses_nothing() {
    let started = std::time::Instant::now();
    let node = tokio::task::spawn_blocking(PrivateRabbit::start)
        .await
        .unwrap();
    let url = node.amqp_url();
    eprintln!("private node {} at {url}", node.node());
    let env = Env::with_amqp_url(url.clone()).await;
    let config = env.config.clone();
    let collector = format!("{}.collected", config.outbound_exchange);
    declare_collector(&url, &config.outbound_exchange, &collector).await;

    // Killed when dropped, so a failed test leaves none behind. They are in the test's
    // process group; one frozen (SIGSTOP, for about a second of this test) when the test
    // process dies is ended by nextest's SIGKILL after its grace period.
    let workers = WorkerProcesses::spawn(&env, WORKERS);
    let ports = workers.http_ports.clone();
    for port in ports.iter().copied() {
        wait_ready(port, Duration::from_secs(20)).await;
    }
    let mut platform = Platform::new();
    env.team(&mut platform, &TEAM).await;
    let store = store().await;
    // The team is applied once it shows in Redis, but its events may not be acked yet: wait
    // until the queue is empty, so that what it holds below is the burst alone.
    let mut settled = (u64::MAX, u64::MAX);
    for _ in 0..100 {
        settled = queue_stats(&node)[&config.work_queue];
        if settled == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        settled,
        (0, 0),
        "the team's events are acked before the burst"
    );

    // Freeze the workers, then publish the first burst (confirmed: it is in the quorum queue).
    workers.signal("STOP");
    let before = platform.created_each(0..BEFORE);
    env.publish_many(&before).await;
    // Wait until the broker has handed the workers their prefetch.
    let full = WORKERS as u64 * config.prefetch as u64;
    let mut held = (0, 0);
    for _ in 0..50 {
        held = queue_stats(&node)[&config.work_queue];
        if held.1 >= full {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ready, unacked) = held;
    eprintln!("frozen workers hold {unacked} unacked deliveries; {ready} events wait in the queue");
    assert_eq!(
        ready + unacked,
        BEFORE as u64,
        "a frozen worker acks nothing"
    );
    assert!(unacked > 0, "the workers hold deliveries");
    assert!(ready > 0, "events wait in the queue");

    // Thaw the workers and stop the node as soon as they are at it. Once it is down, count
    // what they decided (the decisions whose outputs or acks did not reach the broker will be
    // replayed).
    workers.signal("CONT");
    let project = platform.project.clone();
    for _ in 0..5000 {
        if decided_in_redis(&store, &project).await >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let down_store = store.clone();
    let runtime = tokio::runtime::Handle::current();
    let (node, decided_at_stop) = tokio::task::spawn_blocking(move || {
        let mut node = node;
        let decided = node.restart_with(Stop::Sigterm, || {
            runtime.block_on(decided_in_redis(&down_store, &project))
        });
        (node, decided)
    })
    .await
    .unwrap();
    eprintln!("{decided_at_stop} of the first {BEFORE} events were decided when the node stopped");

    // The node is back: the second burst, published by a new connection with `mandatory` (the
    // test declares nothing again: the recovered topology must route it). A worker is ready
    // once its new session has declared the topology again and consumes.
    let after = platform.created_each(BEFORE..BEFORE + AFTER);
    publish_confirmed(&url, &config.inbound_exchange, &after).await;
    for port in ports.iter().copied() {
        wait_ready(port, Duration::from_secs(30)).await;
    }

    let wait = Duration::from_secs(40);
    let outputs = collect_outputs(&url, &collector, BEFORE + AFTER, wait).await;
    let decided = decided_conversations(&outputs);
    let expected: HashSet<String> = (0..BEFORE + AFTER).map(|i| format!("c{i}")).collect();
    let missing: Vec<&String> = expected.difference(&decided).collect();
    assert!(missing.is_empty(), "never decided: {missing:?}");
    assert_eq!(decided.len(), BEFORE + AFTER, "every event applied");

    // Replays repeat an output with its id; never a second decision for a conversation.
    let mut by_id: HashMap<&str, &Value> = HashMap::new();
    for output in &outputs {
        let id = output["id"].as_str().unwrap();
        if let Some(first) = by_id.insert(id, output) {
            assert_eq!(
                (&first["type"], &first["data"]),
                (&output["type"], &output["data"]),
                "output {id} published twice with different contents"
            );
        }
    }
    let mut owner_of: HashMap<String, String> = HashMap::new();
    let mut assignment_ids = HashSet::new();
    let assigned = of_type(&outputs, "conversation.assigned");
    for output in &assigned {
        assignment_ids.insert(output["id"].as_str().unwrap().to_string());
        let conversation = output["data"]["conversation_id"].as_str().unwrap();
        let agent = output["data"]["agent_id"].as_str().unwrap();
        if let Some(previous) = owner_of.insert(conversation.to_string(), agent.to_string()) {
            assert_eq!(previous, agent, "{conversation} assigned to two agents");
        }
    }
    let capacity: u64 = TEAM.iter().map(|(_, max)| max).sum();
    assert_eq!(
        assignment_ids.len() as u64,
        capacity,
        "exactly the capacity assigned"
    );
    assert_eq!(
        owner_of.len() as u64,
        capacity,
        "one assignment per conversation"
    );
    let queued: HashSet<String> = of_type(&outputs, "conversation.queued")
        .iter()
        .map(|o| o["data"]["conversation_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        queued.iter().all(|c| !owner_of.contains_key(c)),
        "no conversation both assigned and queued"
    );
    eprintln!(
        "{} outputs collected ({} distinct): {} assignments ({} distinct), {} queued ({} \
         distinct)",
        outputs.len(),
        by_id.len(),
        assigned.len(),
        assignment_ids.len(),
        of_type(&outputs, "conversation.queued").len(),
        queued.len()
    );

    // Redis agrees with the outputs.
    for (agent, max) in TEAM {
        assert_eq!(
            load_of(&store, &platform.project, agent).await,
            max as i64,
            "load of {agent}"
        );
        let owned = owner_of.values().filter(|a| *a == agent).count() as u64;
        assert_eq!(owned, max, "assignments to {agent}");
    }
    let project = platform.id();
    let owned: HashMap<String, String> = store
        .open_conversations(&project)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|(agent, conversations)| {
            conversations
                .into_iter()
                .map(move |conversation| (conversation, agent.clone()))
        })
        .collect();
    assert_eq!(owned, owner_of, "Redis owns what was assigned");
    let waiting = store.waiting_count(&project).await.unwrap() as usize;
    assert_eq!(waiting, queued.len(), "Redis waits for what was queued");

    // The broker is drained: nothing ready or unacked, nothing dead-lettered, both workers
    // consuming again.
    let mut stats = (u64::MAX, u64::MAX);
    for _ in 0..100 {
        stats = queue_stats(&node)[&config.work_queue];
        if stats == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stats, (0, 0), "the work queue is empty (ready, unacked)");
    assert_eq!(
        queue_stats(&node)[&config.dead_letter_queue],
        (0, 0),
        "nothing dead-lettered"
    );
    assert_eq!(
        consumers(&node, &config.work_queue),
        WORKERS,
        "both workers consume the work queue again"
    );

    let mut replayed = 0.0;
    for port in ports.iter().copied() {
        let metrics = get(port, "/metrics").await.unwrap_or_default();
        let reconnects = metric_sum(
            &metrics,
            "switchboard_reconnects_total",
            "target=\"broker\"",
        );
        assert!(
            reconnects >= 1.0,
            "the worker on {port} reconnected:\n{metrics}"
        );
        replayed += metric_sum(&metrics, "switchboard_events_total", "outcome=\"replayed\"");
        // Every delivery of the broken sessions was finished (none left hanging on a dead
        // channel).
        let mut in_flight = f64::NAN;
        for _ in 0..40 {
            let metrics = get(port, "/metrics").await.unwrap_or_default();
            in_flight = metric_sum(&metrics, "switchboard_in_flight_events", "");
            if in_flight == 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            in_flight, 0.0,
            "events in flight in the idle worker on {port}"
        );
        let ready = get(port, "/readyz").await.unwrap_or_default();
        assert!(
            ready.starts_with("HTTP/1.1 200"),
            "the worker on {port} is ready: {ready}"
        );
    }
    eprintln!(
        "{replayed} events replayed after the restart; the test took {:.1?}",
        started.elapsed()
    );
    drop(workers);
    drop(env);
    tokio::task::spawn_blocking(move || drop(node))
        .await
        .unwrap();
}
