//! The worker through the broker: dead letters, confirms and acks, idempotency, several
//! workers at once, and workers that die or stop.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use switchboard::clock::Clock;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn every_rejection_reaches_dead_letters_with_its_reason_and_body_untouched() {
    let env = Env::new().await;
    let _worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    let oversized = platform.event(
        "conversation.created",
        json!({"conversation_id": "c1", "visitor_id": "v", "padding": "x".repeat(70_000)}),
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{definitely not json".to_vec(), "invalid JSON"),
        (oversized, "larger than the 64 KiB limit"),
        (
            platform.event("conversation.exploded", json!({})),
            "unknown event type",
        ),
        (
            platform.event("conversation.created", json!({"visitor_id": "v"})),
            "missing required field `conversation_id`",
        ),
        (
            platform.event(
                "conversation.created",
                json!({"conversation_id": "c}1", "visitor_id": "v"}),
            ),
            "invalid field `conversation_id`",
        ),
        (
            platform.event(
                "agent.status_changed",
                json!({"agent_id": "a", "status": "sleeping"}),
            ),
            "invalid field `status`",
        ),
        (
            platform.event("project.configured", json!({"mode": "chaos"})),
            "invalid field `mode`",
        ),
        (
            Platform::of("bad project!")
                .event("conversation.closed", json!({"conversation_id": "c"})),
            "invalid field `project`",
        ),
    ];
    for (body, _) in &cases {
        env.publish(body).await;
    }
    let letters = env.dead_letters(cases.len(), WAIT).await;
    assert_eq!(letters.len(), cases.len());
    // Events handled side by side (in batches, concurrently) reach dead letters in any order.
    for (body, expected) in &cases {
        let letter = letters
            .iter()
            .find(|letter| &letter.body == body)
            .expect("every rejected event is dead-lettered, its body untouched");
        let reason = letter.reason.as_deref().unwrap_or("");
        assert!(
            reason.contains(expected),
            "{reason:?} should contain {expected:?}"
        );
    }
    // The worker kept going: a valid event after them is applied.
    let mut env = env;
    env.team(&mut platform, &[("a", 1)]).await;
    env.publish(&platform.created("ok")).await;
    let out = env.outputs(1, WAIT).await;
    assert_eq!(out[0]["type"], "conversation.assigned");
    assert_eq!(env.depth(&env.config.work_queue.clone()).await, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn outputs_are_cloudevents_caused_by_the_inbound_event() {
    let mut env = Env::new().await;
    let _worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 1)]).await;
    let created = platform.created("c1");
    env.publish(&created).await;
    let out = env.outputs(1, WAIT).await;
    let event = &out[0];
    let inbound: Value = serde_json::from_slice(&created).unwrap();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["source"], "switchboard");
    assert_eq!(event["type"], "conversation.assigned");
    assert_eq!(event["project"], json!(platform.project));
    assert_eq!(event["causationid"], inbound["id"]);
    assert_eq!(
        event["data"],
        json!({"conversation_id": "c1", "agent_id": "a", "reason": "new", "strategy": "least_loaded"})
    );
    assert!(event["id"].as_str().is_some_and(|id| !id.is_empty()));
    env.cleanup().await;
}

/// A platform retry that arrives while the first copy may still be in flight: whether it finds
/// the first copy's outputs confirmed (nothing to publish) or not yet (the same output again),
/// it never causes a second decision. (order.rs pins each case down on its own.)
#[tokio::test]
async fn a_repeat_arriving_at_once_publishes_the_same_output_or_nothing() {
    let mut env = Env::new().await;
    let _worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 5)]).await;
    let created = platform.created("c1");
    env.publish(&created).await;
    env.publish(&created).await; // a platform retry: same project, same id
    let out = env.outputs_for(Duration::from_secs(2)).await;
    assert!(matches!(out.len(), 1 | 2), "{out:?}");
    assert!(
        out.iter().all(|o| o == &out[0]),
        "a repeat carries the same id and content"
    );
    let store = store().await;
    assert_eq!(load_of(&store, &platform.project, "a").await, 1);
    env.cleanup().await;
}

#[tokio::test]
async fn a_burst_through_three_workers_fills_exactly_the_capacity() {
    let mut env = Env::new().await;
    let workers = [
        env.spawn_worker().await,
        env.spawn_worker().await,
        env.spawn_worker().await,
    ];
    let mut platform = Platform::new();
    let capacity = [("a", 3u64), ("b", 5), ("c", 2), ("d", 7)];
    env.team(&mut platform, &capacity).await;
    let burst = platform.created_each(0..60);
    env.publish_many(&burst).await;
    let out = env.outputs(60, WAIT).await;
    assert_eq!(out.len(), 60);
    let assigned = of_type(&out, "conversation.assigned");
    let queued = of_type(&out, "conversation.queued");
    assert_eq!(assigned.len(), 17, "exactly sum(max_concurrent) assigned");
    assert_eq!(queued.len(), 43);
    let mut per_agent: HashMap<&str, u64> = HashMap::new();
    for a in &assigned {
        *per_agent
            .entry(a["data"]["agent_id"].as_str().unwrap())
            .or_default() += 1;
    }
    let store = store().await;
    for (agent, max) in capacity {
        assert_eq!(per_agent.get(agent).copied().unwrap_or(0), max, "{agent}");
        assert_eq!(load_of(&store, &platform.project, agent).await, max as i64);
    }
    for worker in workers {
        worker.stop().await;
    }
    env.cleanup().await;
}

#[tokio::test]
async fn created_and_closed_interleaved_across_workers_leave_no_load() {
    let mut env = Env::new().await;
    let _w1 = env.spawn_worker().await;
    let _w2 = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 1000), ("b", 1000)]).await;
    // Half the conversations have their close published before their creation.
    let mut events = vec![];
    for i in 0..100 {
        let id = format!("c{i}");
        if i % 2 == 0 {
            events.push(platform.closed(&id));
            events.push(platform.created(&id));
        } else {
            events.push(platform.created(&id));
            events.push(platform.closed(&id));
        }
    }
    env.publish_many(&events).await;
    // Wait until the work queue is drained and nothing is in flight.
    let store = store().await;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if env.depth(&env.config.work_queue.clone()).await == 0 {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = load_of(&store, &platform.project, "a").await;
    let b = load_of(&store, &platform.project, "b").await;
    assert_eq!((a, b), (0, 0), "no capacity leaked");
    // No conversation was assigned twice.
    let out = env.outputs_for(Duration::from_millis(500)).await;
    let assigned: Vec<&str> = of_type(&out, "conversation.assigned")
        .iter()
        .map(|o| o["data"]["conversation_id"].as_str().unwrap())
        .collect();
    let distinct: HashSet<&str> = assigned.iter().copied().collect();
    assert_eq!(assigned.len(), distinct.len());
    env.cleanup().await;
}

#[tokio::test]
async fn a_worker_killed_mid_burst_loses_nothing_and_assigns_nothing_twice() {
    let mut env = Env::new().await;
    let mut platform = Platform::new();
    let mut victim = WorkerProcesses::spawn(&env, 1);
    let survivor = WorkerProcesses::spawn(&env, 1);
    env.team(&mut platform, &[("a", 40), ("b", 40)]).await;
    let burst = platform.created_each(0..300);
    let (first, second) = burst.split_at(150);
    env.publish_many(first).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    victim.kill();
    env.publish_many(second).await;
    // Every conversation ends up either assigned or queued, exactly once as a decision
    // (a replayed decision repeats the same output id).
    let all_decided = |out: &[Value]| decided_count(out) == 300;
    let out = env
        .outputs_until(all_decided, Duration::from_secs(30))
        .await;
    let decided = decisions(&out);
    assert_eq!(decided.len(), 300, "no conversation lost");
    for (conversation, ids) in &decided {
        assert_eq!(ids.len(), 1, "{conversation} decided more than once");
    }
    let assigned: HashSet<&str> = of_type(&out, "conversation.assigned")
        .iter()
        .map(|o| o["data"]["conversation_id"].as_str().unwrap())
        .collect();
    assert_eq!(assigned.len(), 80, "exactly the capacity assigned");
    let store = store().await;
    assert_eq!(load_of(&store, &platform.project, "a").await, 40);
    assert_eq!(load_of(&store, &platform.project, "b").await, 40);
    drop(survivor);
    env.cleanup().await;
}

#[tokio::test]
async fn sigterm_finishes_in_flight_events_and_exits_zero() {
    let mut env = Env::new().await;
    let mut platform = Platform::new();
    let mut worker = WorkerProcesses::spawn(&env, 1);
    env.team(&mut platform, &[("a", 500)]).await;
    let burst = platform.created_each(0..200);
    env.publish_many(&burst).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let status = worker.terminate().remove(0);
    assert!(status.success(), "exit status {status:?}");
    // Whatever it did not finish is still in the queue; whatever it acked was published.
    let out = env.outputs_for(Duration::from_secs(2)).await;
    let left = env.depth(&env.config.work_queue.clone()).await as usize;
    let published = of_type(&out, "conversation.assigned").len();
    assert_eq!(
        published + left,
        200,
        "published {published} + queued {left}"
    );
    let store = store().await;
    assert_eq!(
        load_of(&store, &platform.project, "a").await as usize,
        published
    );
    // A new worker finishes the rest.
    let _worker = env.spawn_worker().await;
    let rest = env.outputs(left, WAIT).await;
    assert_eq!(rest.len(), left);
    env.cleanup().await;
}

#[tokio::test]
async fn readiness_and_metrics_are_served() {
    let mut env = Env::new().await;
    let worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 1)]).await;
    env.publish(&platform.created("c1")).await;
    env.outputs(1, WAIT).await;
    let ready = http_get(worker.http_addr, "/readyz").await.unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(http_get(worker.http_addr, "/healthz")
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    // The output is published before the event is acked and counted: give the count a moment.
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = http_get(worker.http_addr, "/metrics").await.unwrap();
        if metrics.contains("switchboard_assignments_total{reason=\"new\"}") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metrics.contains("switchboard_events_total"), "{metrics}");
    assert!(
        metrics.contains("switchboard_assignments_total{reason=\"new\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("switchboard_decision_seconds_bucket"));
    env.cleanup().await;
}

/// `/metrics` reports each project's waiting queue as it is in Redis when scraped, also after
/// another worker has changed it.
#[tokio::test]
async fn the_backlog_metric_counts_waiting_conversations_at_scrape_time() {
    let mut env = Env::new().await;
    let worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 1)]).await;
    let created: Vec<Vec<u8>> = ["c1", "c2", "c3"]
        .iter()
        .map(|c| platform.created(c))
        .collect();
    env.publish_many(&created).await;
    env.outputs(3, WAIT).await;
    let label = format!("project=\"{}\"", platform.project);
    let waiting = |metrics: &str| -> Option<f64> {
        series(metrics, "switchboard_waiting_conversations")
            .find(|(line, _)| line.contains(&label))
            .map(|(_, value)| value)
    };
    let metrics = http_get(worker.http_addr, "/metrics").await.unwrap();
    assert!(
        metrics.contains("# TYPE switchboard_waiting_conversations gauge"),
        "{metrics}"
    );
    assert_eq!(waiting(&metrics), Some(2.0), "{metrics}");

    // Another worker (here: the store, directly) closes c1; c2 takes the freed place.
    let closed = platform.inbound("conversation.closed", json!({"conversation_id": "c1"}));
    store()
        .await
        .apply(&closed, switchboard::clock::SystemClock.now_ms())
        .await
        .unwrap();
    let metrics = http_get(worker.http_addr, "/metrics").await.unwrap();
    assert_eq!(waiting(&metrics), Some(1.0), "{metrics}");
    env.cleanup().await;
}

/// A backlog waiting when the worker starts arrives in batches: events of two projects and
/// bad events mixed. Each bad one is dead-lettered alone; every other is decided once.
#[tokio::test]
async fn a_backlog_handled_in_batches_decides_each_event_once_and_rejects_only_the_bad() {
    let mut env = Env::new().await;
    let (mut first, mut second) = (Platform::new(), Platform::new());
    let mut backlog = first.agents(&[("a", 3)]);
    backlog.extend(second.agents(&[("b", 3)]));
    for i in 1..=3 {
        backlog.push(first.created(&format!("c{i}")));
        backlog.push(second.created(&format!("c{i}")));
        if i == 2 {
            backlog.push(b"{not json".to_vec());
            backlog.push(first.event(
                "conversation.created",
                json!({"conversation_id": "bad}id", "visitor_id": "v"}),
            ));
        }
    }
    env.publish_many(&backlog).await;
    let worker = WorkerProcesses::spawn(&env, 1);
    let port = worker.http_ports[0];

    // Setup and conversations may be applied in either order across batches (a conversation
    // then waits for the team): what counts is each conversation's last decision.
    let assigned_to = |outputs: &[Value]| {
        let mut last: HashMap<(String, String), String> = HashMap::new();
        for output in of_type(outputs, "conversation.assigned") {
            let key = (
                output["project"].as_str().unwrap().to_string(),
                output["data"]["conversation_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
            last.insert(
                key,
                output["data"]["agent_id"].as_str().unwrap().to_string(),
            );
        }
        last
    };
    let outputs = env
        .outputs_until(|outputs| assigned_to(outputs).len() == 6, WAIT)
        .await;
    let last = assigned_to(&outputs);
    for i in 1..=3 {
        let conversation = format!("c{i}");
        assert_eq!(last[&(first.project.clone(), conversation.clone())], "a");
        assert_eq!(last[&(second.project.clone(), conversation)], "b");
    }
    assert_eq!(
        of_type(&outputs, "conversation.assigned").len(),
        6,
        "each once"
    );
    let letters = env.dead_letters(3, Duration::from_secs(2)).await;
    assert_eq!(letters.len(), 2, "only the two bad events");
    assert!(letters.iter().any(|letter| letter.body == b"{not json"));

    // The worker did handle several events in one batch.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let metrics = http_get(addr, "/metrics").await.unwrap_or_default();
    let (events, batches) = (
        metric_sum(&metrics, "switchboard_batch_events_sum", ""),
        metric_sum(&metrics, "switchboard_batch_events_count", ""),
    );
    assert!(events > batches, "{events} events in {batches} batches");
    drop(worker);
    env.cleanup().await;
}

/// A clock that, while its gate is closed, holds whoever asks it the time (for 5 s at most):
/// a stand-in for a decision that takes long (a slow Redis) while more events arrive. The bound
/// keeps a worker that decides many batches at once from blocking every runtime thread for
/// good: the test then fails on its count instead of hanging.
#[derive(Default)]
struct GatedClock {
    closed: std::sync::atomic::AtomicBool,
    held: std::sync::atomic::AtomicBool,
}

impl Clock for GatedClock {
    fn now_ms(&self) -> i64 {
        use std::sync::atomic::Ordering::SeqCst;
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while self.closed.load(SeqCst) && std::time::Instant::now() < until {
            self.held.store(true, SeqCst);
            std::thread::sleep(Duration::from_millis(5));
        }
        switchboard::clock::SystemClock.now_ms()
    }
}

/// While a batch is being decided the next one is not taken off the consumer: events that
/// arrive meanwhile wait and are decided together, in one batch, instead of one call each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_arriving_while_a_batch_is_decided_form_the_next_batch_together() {
    use std::sync::atomic::Ordering::SeqCst;
    let mut env = Env::new().await;
    env.config.batch_size = 16;
    env.config.decisions_in_flight = 1;
    let clock = std::sync::Arc::new(GatedClock::default());
    let worker = env.spawn_worker_with_clock(clock.clone()).await;
    let mut platform = Platform::new();
    let created = platform.created_each(1..=17);

    clock.closed.store(true, SeqCst);
    env.publish(&created[0]).await;
    while !clock.held.load(SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The first batch is being decided; sixteen more events reach the worker meanwhile.
    env.publish_many(&created[1..]).await;
    while env.depth(&env.config.work_queue).await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    clock.closed.store(false, SeqCst);

    let outputs = env.outputs(17, WAIT).await;
    assert_eq!(
        of_type(&outputs, "conversation.queued").len(),
        17,
        "{outputs:?}"
    );
    let metrics = http_get(worker.http_addr, "/metrics").await.unwrap();
    assert_eq!(
        metric_sum(&metrics, "switchboard_batch_events_sum", ""),
        17.0,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "switchboard_batch_events_count", ""),
        2.0,
        "the first event alone, then the sixteen that waited for it: {metrics}"
    );
    worker.stop().await;
    env.cleanup().await;
}

/// A clock that panics when asked to arm a timer of about `delay_ms`: a stand-in for a bug
/// that strikes one event while the worker prepares its outputs.
struct PanicsArmingTimer {
    delay_ms: i64,
}

impl Clock for PanicsArmingTimer {
    fn now_ms(&self) -> i64 {
        switchboard::clock::SystemClock.now_ms()
    }

    fn to_real_ms(&self, ms: i64) -> i64 {
        if (self.delay_ms - 60_000..=self.delay_ms).contains(&ms) {
            panic!("test: a bug while arming a timer");
        }
        ms
    }
}

/// A bug (a panic) while handling one event of a batch costs only that event: its neighbours
/// are handled one by one and published once each, and the event that panics goes back to the
/// queue until the delivery limit dead-letters it, decided once in Redis however often it came.
#[tokio::test]
async fn a_panic_costs_only_its_own_event_which_is_dead_lettered_at_the_delivery_limit() {
    let mut env = Env::new().await; // delivery limit 5
    let (mut poisoned, mut healthy) = (Platform::new(), Platform::new());
    // Only the poisoned project's assignments arm a reply timer, the one the clock fails on.
    let mut backlog =
        vec![poisoned.event("project.configured", json!({"reply_timeout_seconds": 3600}))];
    backlog.extend(poisoned.agents(&[("a", 5)]));
    backlog.extend(healthy.agents(&[("b", 5)]));
    backlog.push(healthy.created("c1"));
    let poison = poisoned.created("c1");
    backlog.push(poison.clone());
    backlog.push(healthy.created("c2"));
    backlog.push(healthy.created("c3"));
    env.publish_many(&backlog).await;
    let worker = env
        .spawn_worker_with_clock(std::sync::Arc::new(PanicsArmingTimer {
            delay_ms: 3_600_000,
        }))
        .await;

    let letters = env.dead_letters(1, WAIT).await;
    assert_eq!(
        letters.len(),
        1,
        "the event that panics reached dead letters"
    );
    assert_eq!(letters[0].body, poison);
    let outputs = env.outputs_for(Duration::from_secs(1)).await;
    let assigned = of_type(&outputs, "conversation.assigned");
    let mut healthy_ones: Vec<&str> = assigned
        .iter()
        .filter(|o| o["project"] == healthy.project.as_str())
        .map(|o| o["data"]["conversation_id"].as_str().unwrap())
        .collect();
    healthy_ones.sort();
    assert_eq!(
        healthy_ones,
        ["c1", "c2", "c3"],
        "each neighbour published once"
    );
    assert!(
        assigned
            .iter()
            .all(|o| o["project"] != poisoned.project.as_str()),
        "nothing of the event that panics was published"
    );
    let store = store_at(&env.config.redis_url).await;
    assert_eq!(
        load_of(&store, &poisoned.project, "a").await,
        1,
        "decided once, replayed on every redelivery"
    );
    assert_eq!(env.depth(&env.config.work_queue).await, 0);
    assert!(worker.readiness.is_ready(), "still consuming");
    worker.stop().await;
    env.cleanup().await;
}

/// A platform's queue of outputs that refuses messages when full (`x-overflow:
/// reject-publish`, as a max-length policy may set) makes the broker nack the worker's outputs
/// that would go there. That is no fault of the events: the worker keeps them unacked and
/// publishes the refused outputs again until the queue has room, so the events never reach the
/// delivery limit and dead letters, and each is decided once.
#[tokio::test]
async fn outputs_a_full_queue_refuses_are_published_again_once_it_has_room() {
    use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable};

    let env = Env::new().await; // delivery limit 5
    let worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 10)]).await;
    // The platform's queue: room for one assignment, refusing more; exclusive, so it goes with
    // this test's connection whatever happens.
    let connection = lapin::Connection::connect(&env.config.amqp_url, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = format!("{}.platform", env.config.work_queue);
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongInt(1));
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.as_str().into(), exclusive, arguments)
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            env.config.outbound_exchange.as_str().into(),
            "conversation.assigned".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    env.publish_many(&platform.created_each(0..4)).await;
    // Time enough for events redelivered at each refusal to reach the delivery limit.
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Meanwhile the worker says it cannot get its decisions through.
    let refusing = http_get(worker.http_addr, "/readyz")
        .await
        .unwrap_or_default();
    assert!(
        refusing.starts_with("HTTP/1.1 503") && refusing.contains("broker: refusing publishes"),
        "{refusing}"
    );
    // The platform takes its assignments one at a time, as the queue holds them.
    let mut taken: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while decisions(&taken).len() < 4 && tokio::time::Instant::now() < deadline {
        let got = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        match got {
            Some(message) => taken.push(serde_json::from_slice(&message.delivery.data).unwrap()),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let letters = env.dead_letters(1, Duration::from_secs(1)).await;
    // Every output through, it is ready again.
    let ready = readiness_within(worker.http_addr, WAIT).await;
    worker.stop().await;
    let _ = connection.close(200, "done".into()).await;
    assert_eq!(ready, Ok(()), "ready once the queue had room");
    let dead: Vec<String> = letters
        .iter()
        .map(|l| String::from_utf8_lossy(&l.body).into_owned())
        .collect();
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    let decided = decisions(&taken);
    assert_eq!(
        decided.len(),
        4,
        "each assignment reached the platform: {taken:?}"
    );
    assert!(
        decided.values().all(|ids| ids.len() == 1),
        "each decided once: {decided:?}"
    );
    env.cleanup().await;
}

/// The dead-letter queue deleted while the worker runs (by hand, a clean-up script): a dead
/// letter sent to it by name would be routed nowhere, and RabbitMQ confirms and drops such a
/// message, so the event would be acked and gone. The worker publishes what it sends to a
/// queue by name as mandatory: the broker gives it back, the worker opens its session again,
/// which declares the queue, and the event reaches dead letters on its redelivery.
#[tokio::test]
async fn a_dead_letter_queue_deleted_under_the_worker_is_declared_again_and_loses_nothing() {
    use lapin::options::QueueDeleteOptions;

    let env = Env::new().await;
    let worker = env.spawn_worker().await;
    wait_until(|| async { worker.readiness.is_ready() }).await;
    let connection = lapin::Connection::connect(&env.config.amqp_url, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_delete(
            env.config.dead_letter_queue.as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    let body = b"{not json, and no dead-letter queue".to_vec();
    env.publish(&body).await;
    // Until the queue is there again.
    let mut declared_again = false;
    for _ in 0..100 {
        if queue_exists(&connection, &env.config.dead_letter_queue).await {
            declared_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let letters = if declared_again {
        env.dead_letters(1, WAIT).await
    } else {
        Vec::new()
    };
    worker.stop().await;
    let _ = connection.close(200, "done".into()).await;
    assert!(
        declared_again,
        "the dead-letter queue was not declared again"
    );
    assert_eq!(letters.len(), 1, "the event reached dead letters");
    assert_eq!(letters[0].body, body);
    assert!(
        letters[0]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("invalid JSON"),
        "with its reason: {:?}",
        letters[0].reason
    );
    env.cleanup().await;
}
