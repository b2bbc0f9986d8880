//! Redis and the broker going away: work pauses, nothing is acked that was not applied, and
//! everything resumes when they return.

use std::collections::HashSet;
use std::time::Duration;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

fn decided_conversations(outputs: &[serde_json::Value]) -> HashSet<String> {
    outputs
        .iter()
        .filter(|o| o["type"] == "conversation.assigned" || o["type"] == "conversation.queued")
        .map(|o| o["data"]["conversation_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_redis_crash_pauses_work_and_loses_nothing() {
    let mut redis = PrivateRedis::start();
    let mut env = Env::new().await;
    env.config.redis_url = redis.url();
    let worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 5)]).await;
    env.publish(&platform.created("before")).await;
    assert_eq!(
        env.outputs(1, WAIT).await[0]["type"],
        "conversation.assigned"
    );

    redis.kill();
    let during: Vec<Vec<u8>> = (0..20)
        .map(|i| platform.created(&format!("c{i}")))
        .collect();
    env.publish_many(&during).await;
    // Nothing can be decided, so nothing is published, and the worker says it is not ready.
    assert!(env.outputs_for(Duration::from_secs(2)).await.is_empty());
    assert!(!worker.readiness.is_ready());

    redis.restart();
    let out = env.outputs(20, WAIT).await;
    assert_eq!(
        decided_conversations(&out).len(),
        20,
        "every event applied once Redis is back"
    );
    assert_eq!(
        of_type(&out, "conversation.assigned").len(),
        4,
        "the capacity left: 5 - 1"
    );
    let store = switchboard::store::Store::connect(
        &[redis.url()],
        switchboard::store::StoreOptions {
            dedupe_ttl: Duration::from_secs(60),
            closed_retention: Duration::from_secs(60),
        },
    )
    .await
    .unwrap();
    assert_eq!(load_of(&store, &platform.project, "a").await, 5);
    assert_eq!(env.depth(&env.config.work_queue.clone()).await, 0);
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_cut_broker_connection_is_rebuilt_and_nothing_is_lost() {
    let mut env = Env::new().await;
    let worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 50)]).await;
    let first: Vec<Vec<u8>> = (0..100)
        .map(|i| platform.created(&format!("c{i}")))
        .collect();
    env.publish_many(&first).await;
    close_broker_connection(&worker.connection_name);
    let second: Vec<Vec<u8>> = (100..200)
        .map(|i| platform.created(&format!("c{i}")))
        .collect();
    env.publish_many(&second).await;
    let out = env
        .outputs_until(
            |out| decided_conversations(out).len() == 200,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(decided_conversations(&out).len(), 200, "no event lost");
    // Replays after the cut repeat earlier outputs with the same ids, never new decisions.
    let assigned: HashSet<&str> = of_type(&out, "conversation.assigned")
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(assigned.len(), 50);
    let store = store().await;
    assert_eq!(load_of(&store, &platform.project, "a").await, 50);
    assert!(
        worker.readiness.is_ready(),
        "reconnected and consuming again"
    );
    worker.stop().await;
    env.cleanup().await;
}

/// An event that keeps failing (here: a consumer that always returns it, as a worker that
/// panics on it does) is dead-lettered by the queue's delivery limit instead of looping forever.
#[tokio::test]
async fn a_poison_event_is_dead_lettered_after_the_delivery_limit() {
    use futures_util::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicNackOptions};

    let env = Env::new().await; // delivery limit 5
    let mut platform = Platform::new();
    let poison = platform.created("c1");
    env.publish(&poison).await;
    let connection = lapin::Connection::connect(&env.config.amqp_url, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut consumer = channel
        .basic_consume(
            env.config.work_queue.as_str().into(),
            "poison".into(),
            BasicConsumeOptions::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let mut deliveries = 0;
    while let Ok(Some(Ok(delivery))) =
        tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
    {
        deliveries += 1;
        delivery
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(
            deliveries <= 10,
            "still redelivered after {deliveries} deliveries"
        );
    }
    assert!(deliveries >= 5, "delivered {deliveries} times");
    let letters = env.dead_letters(1, WAIT).await;
    assert_eq!(letters.len(), 1, "the poison event reached dead letters");
    assert_eq!(letters[0].body, poison);
    let _ = connection.close(200, "done".into()).await;
    env.cleanup().await;
}

/// A worker process with its HTTP endpoints on a known port, so the test can read its metrics.
fn worker_on_port(config: &switchboard::config::Config) -> (std::process::Child, u16) {
    let port = free_port();
    (worker_process(config, port), port)
}

async fn get(port: u16, path: &str) -> Option<String> {
    http_get(([127, 0, 0, 1], port).into(), path).await
}

async fn events_handled(port: u16) -> f64 {
    get(port, "/metrics")
        .await
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("switchboard_events_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_ready(port: u16, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if get(port, "/readyz")
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the worker on port {port} was not ready within {within:?}");
}

/// The broker itself restarts (a private node: the machine's shared one stays up) while two
/// workers are busy with a burst. They reconnect and redeclare; every event published before
/// and after is applied once; nothing is assigned twice; loads match the assignments.
#[tokio::test]
async fn a_rabbitmq_restart_under_load_loses_nothing() {
    use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
    use switchboard::broker::Session;

    let mut node = crate::broker_node::PrivateRabbit::start();
    let tag = unique("t");
    let config = switchboard::config::Config {
        amqp_url: node.amqp_url(),
        redis_url: redis_url(),
        inbound_exchange: format!("{tag}.in"),
        work_queue: format!("{tag}.work"),
        outbound_exchange: format!("{tag}.out"),
        dead_letter_queue: format!("{tag}.dead"),
        ..Default::default()
    };
    // The platform's side: the topology, and a durable queue that keeps every output across
    // the restart (outputs are persistent messages).
    let platform_session = Session::open(&config, "tests").await.unwrap();
    let collected = format!("{tag}.collected");
    let connection = lapin::Connection::connect(&config.amqp_url, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare(
            collected.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            collected.as_str().into(),
            config.outbound_exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            Default::default(),
        )
        .await
        .unwrap();

    let workers: Vec<(std::process::Child, u16)> =
        (0..2).map(|_| worker_on_port(&config)).collect();
    for (_, port) in &workers {
        wait_ready(*port, Duration::from_secs(20)).await;
    }
    let mut platform = Platform::new();
    let publish = |session: &Session, bodies: Vec<Vec<u8>>| {
        let publisher = session.publisher();
        let exchange = config.inbound_exchange.clone();
        async move {
            let keys: Vec<String> = bodies
                .iter()
                .map(|b| {
                    serde_json::from_slice::<serde_json::Value>(b).unwrap()["type"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            let messages = bodies
                .iter()
                .zip(&keys)
                .map(|(body, key)| switchboard::broker::Message {
                    exchange: &exchange,
                    routing_key: key,
                    body,
                    properties: switchboard::broker::json_properties(),
                })
                .collect();
            publisher.publish_all(messages).await.unwrap();
        }
    };
    publish(&platform_session, platform.agents(&[("a", 40), ("b", 40)])).await;
    let store = store().await;
    let pool = format!("sb:{{{}}}:pool:load", platform.project);
    for _ in 0..400 {
        let eligible: usize = store.query(redis::cmd("ZCARD").arg(&pool)).await.unwrap();
        if eligible == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let before: Vec<Vec<u8>> = (0..150)
        .map(|i| platform.created(&format!("c{i}")))
        .collect();
    publish(&platform_session, before).await;
    // Restart right after the burst is published: the workers are in the middle of it (how far
    // they had got is printed; the assertions below hold wherever the restart falls).
    let mut handled_before = 0.0;
    for (_, port) in &workers {
        handled_before += events_handled(*port).await;
    }
    eprintln!("events handled before the restart: {handled_before} of 152");
    node.restart();
    drop(channel);
    drop(connection);
    drop(platform_session);
    for (_, port) in &workers {
        wait_ready(*port, Duration::from_secs(60)).await;
    }
    let platform_session = Session::open(&config, "tests").await.unwrap();
    let after: Vec<Vec<u8>> = (150..300)
        .map(|i| platform.created(&format!("c{i}")))
        .collect();
    publish(&platform_session, after).await;

    let connection = lapin::Connection::connect(&config.amqp_url, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut outputs = vec![];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut quiet_since = None;
    while tokio::time::Instant::now() < deadline {
        let got = channel
            .basic_get(collected.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        match got {
            Some(message) => {
                outputs.push(
                    serde_json::from_slice::<serde_json::Value>(&message.delivery.data).unwrap(),
                );
                quiet_since = None;
            }
            None => {
                // Complete, and nothing more (a late duplicate would show) for a moment.
                if decided_conversations(&outputs).len() == 300 {
                    let since = *quiet_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() > Duration::from_millis(500) {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert_eq!(
        decided_conversations(&outputs).len(),
        300,
        "every event applied"
    );
    // Replays repeat an output with its id; never a second decision for a conversation.
    let mut owner_of: std::collections::HashMap<String, String> = Default::default();
    let mut assignment_ids = HashSet::new();
    for output in of_type(&outputs, "conversation.assigned") {
        assignment_ids.insert(output["id"].as_str().unwrap().to_string());
        let conversation = output["data"]["conversation_id"]
            .as_str()
            .unwrap()
            .to_string();
        let agent = output["data"]["agent_id"].as_str().unwrap().to_string();
        let previous = owner_of.insert(conversation.clone(), agent.clone());
        assert!(
            previous.is_none_or(|p| p == agent),
            "{conversation} assigned twice"
        );
    }
    assert_eq!(assignment_ids.len(), 80, "exactly the capacity assigned");
    assert_eq!(owner_of.len(), 80);
    assert_eq!(load_of(&store, &platform.project, "a").await, 40);
    assert_eq!(load_of(&store, &platform.project, "b").await, 40);
    let work = channel
        .queue_declare(
            config.work_queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(work.message_count(), 0, "the work queue is drained");
    for (mut child, port) in workers {
        let metrics = get(port, "/metrics").await.unwrap_or_default();
        let reconnects: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("switchboard_reconnects_total{target=\"broker\"}"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(reconnects >= 1.0, "the worker reconnected: {metrics}");
        let _ = child.kill();
        let _ = child.wait();
    }
}
