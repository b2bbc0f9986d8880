//! Redis and the broker going away: work pauses, nothing is acked that was not applied, and
//! everything resumes when they return.

use std::collections::HashSet;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

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
    let mut env = Env::on_redis(&redis).await;
    let worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 5)]).await;
    env.publish(&platform.created("before")).await;
    assert_eq!(
        env.outputs(1, WAIT).await[0]["type"],
        "conversation.assigned"
    );

    redis.kill();
    let during = platform.created_each(0..20);
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
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(load_of(&store, &platform.project, "a").await, 5);
    assert_eq!(env.depth(&env.config.work_queue.clone()).await, 0);
    worker.stop().await;
    env.cleanup().await;
}

/// A connection of the test's own to a private Redis.
async fn connect(redis: &PrivateRedis) -> MultiplexedConnection {
    let client = redis::Client::open(redis.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// Sends one command on `connection`.
async fn send(connection: &mut MultiplexedConnection, args: &[&str]) -> redis::Value {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(connection).await.unwrap()
}

/// Sends one command to a private Redis, on a connection of its own.
async fn command(redis: &PrivateRedis, args: &[&str]) -> redis::Value {
    send(&mut connect(redis).await, args).await
}

/// A number `INFO <section>` reports.
async fn info_number(connection: &mut MultiplexedConnection, section: &str, field: &str) -> u64 {
    let info: String = redis::from_redis_value(send(connection, &["INFO", section]).await).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO {section} names {field}"))
}

/// Nothing is decided for two seconds and nothing went to dead letters: the events are held.
async fn assert_held(env: &mut Env, case: &str) {
    let out = env.outputs_for(Duration::from_secs(2)).await;
    assert!(
        out.is_empty(),
        "{case}: nothing decided while Redis refuses"
    );
    env.assert_no_dead_letters(case).await;
}

/// The worker never says it is ready within `window`, looked at every 100 ms: while Redis
/// refuses its calls, nothing it takes can be applied. The window is longer than the 5 s
/// between two probes of its Redis watch while calls go through, so that watch looks at least
/// once within it.
async fn assert_not_ready_throughout(worker: &WorkerHandle, window: Duration, case: &str) {
    let deadline = std::time::Instant::now() + window;
    while std::time::Instant::now() < deadline {
        assert!(
            !worker.readiness.is_ready(),
            "{case}: the worker said it was ready while Redis refused its calls"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `count` conversations are decided, each once, and nothing went to dead letters. Returns
/// the decisions.
async fn assert_decided_once(env: &mut Env, count: usize, case: &str) -> HashSet<String> {
    let decided = decided_conversations(&env.outputs(count, WAIT).await);
    assert_eq!(decided.len(), count, "{case}: each event decided");
    let again = env.outputs_for(Duration::from_millis(500)).await;
    assert!(again.is_empty(), "{case}: decided once");
    env.assert_no_dead_letters(case).await;
    decided
}

/// A master demoted while the worker waits for its replica (`WAIT`, with
/// `SWITCHBOARD_REDIS_WAIT_REPLICAS=1`): Redis ends the wait with `UNBLOCKED`, as it does in a
/// manual failover or when a crashed master rejoins its cluster. That says nothing about the
/// event: the worker holds it, as in any outage, and decides it once a master with a replica
/// is back, instead of dead-lettering it.
#[tokio::test]
async fn a_master_demoted_while_the_worker_waits_for_its_replica_holds_the_event() {
    if crate::tls_support::second_pass() {
        return;
    }
    let master = PrivateRedis::start();
    let other = PrivateRedis::start();
    let mut env = Env::on_redis(&master).await;
    env.config.redis_wait_replicas = 1;
    env.config.redis_wait_timeout_ms = 30_000;
    let worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.publish(&platform.created("c1")).await;

    // The call is made; the worker now waits for a replica the master does not have.
    let watch = connect(&master).await;
    wait_until(|| {
        let mut watch = watch.clone();
        async move { info_number(&mut watch, "clients", "blocked_clients").await > 0 }
    })
    .await;
    let port = other.port.to_string();
    command(&master, &["REPLICAOF", "127.0.0.1", &port]).await;
    // Demoted, it takes the other server's (empty) data: the call made on it is gone, and
    // nothing of it was published.
    assert_held(&mut env, "demoted").await;

    // Master again, now with a replica.
    command(&master, &["REPLICAOF", "NO", "ONE"]).await;
    let port = master.port.to_string();
    command(&other, &["REPLICAOF", "127.0.0.1", &port]).await;
    let decided = assert_decided_once(&mut env, 1, "master again").await;
    assert_eq!(decided, HashSet::from(["c1".to_string()]));
    assert_eq!(env.depth(&env.config.work_queue.clone()).await, 0);
    worker.stop().await;
    env.cleanup().await;
}

/// Why a master refuses writes for a while.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// Fewer replicas than its `min-replicas-to-write`, which managed Redis services often set.
    NoReplicas,
    /// Full: `maxmemory` reached, no eviction.
    OutOfMemory,
    /// A snapshot failed (a full disk, say) and `stop-writes-on-bgsave-error` is on.
    SnapshotFailed,
}

impl Refusal {
    /// The error code the master answers a write with.
    fn code(self) -> &'static str {
        match self {
            Refusal::NoReplicas => "NOREPLICAS",
            Refusal::OutOfMemory => "OOM",
            Refusal::SnapshotFailed => "MISCONF",
        }
    }

    /// Makes `master` refuse writes, and waits until it answers a write with the code.
    async fn refuse(self, master: &PrivateRedis) {
        let mut admin = connect(master).await;
        match self {
            Refusal::NoReplicas => {
                send(&mut admin, &["CONFIG", "SET", "min-replicas-to-write", "1"]).await;
            }
            Refusal::OutOfMemory => {
                send(&mut admin, &["CONFIG", "SET", "maxmemory", "1"]).await;
            }
            Refusal::SnapshotFailed => {
                // A snapshot made slow (a key to save, 10 s per key), whose process is killed.
                send(&mut admin, &["CONFIG", "SET", "save", "3600 1"]).await;
                send(&mut admin, &["SET", "refusal", "probe"]).await;
                send(
                    &mut admin,
                    &["CONFIG", "SET", "rdb-key-save-delay", "10000000"],
                )
                .await;
                send(&mut admin, &["BGSAVE"]).await;
                let server = info_number(&mut admin, "server", "process_id").await;
                let killed = std::process::Command::new("pkill")
                    .args(["-KILL", "-P", &server.to_string()])
                    .status()
                    .expect("pkill runs");
                assert!(killed.success(), "the snapshot's process was killed");
            }
        }
        // Until a write is refused with the code.
        wait_until(|| {
            let mut admin = admin.clone();
            async move {
                let write: redis::RedisResult<()> = redis::cmd("SET")
                    .arg("refusal")
                    .arg("probe")
                    .query_async(&mut admin)
                    .await;
                matches!(write, Err(error) if error.code() == Some(self.code()))
            }
        })
        .await;
    }

    /// Makes `master` take writes again.
    async fn lift(self, master: &PrivateRedis) {
        let setting = match self {
            Refusal::NoReplicas => ["min-replicas-to-write", "0"],
            Refusal::OutOfMemory => ["maxmemory", "0"],
            Refusal::SnapshotFailed => ["stop-writes-on-bgsave-error", "no"],
        };
        command(master, &["CONFIG", "SET", setting[0], setting[1]]).await;
    }
}

/// A master that refuses writes for a while (see `Refusal`) answers the call with an error code
/// of its own, having applied nothing. No event is at fault: the worker holds the events until
/// the master takes writes again, then decides each once, instead of dead-lettering them. It
/// says it is not ready all the while, although Redis answers PING in most of these.
#[tokio::test]
async fn a_master_refusing_writes_holds_the_events_until_it_takes_them_again() {
    if crate::tls_support::second_pass() {
        return;
    }
    let refusals = [
        Refusal::NoReplicas,
        Refusal::OutOfMemory,
        Refusal::SnapshotFailed,
    ];
    for refusal in refusals {
        let master = PrivateRedis::start();
        let mut env = Env::on_redis(&master).await;
        let worker = env.spawn_worker().await;
        refusal.refuse(&master).await;
        let mut platform = Platform::new();
        env.publish_many(&platform.created_each(0..3)).await;
        assert_held(&mut env, refusal.code()).await;
        assert_not_ready_throughout(&worker, Duration::from_secs(6), refusal.code()).await;
        refusal.lift(&master).await;
        assert_decided_once(&mut env, 3, refusal.code()).await;
        wait_until(|| async { worker.readiness.is_ready() }).await;
        worker.stop().await;
        env.cleanup().await;
    }
}

/// A Redis at its `maxclients` refuses a worker's reconnection with `ERR max number of clients
/// reached` (another application leaking connections, a deploy surge): an outage like any
/// other, so the events are held until the worker gets a connection, not dead-lettered.
#[tokio::test]
async fn a_redis_full_of_clients_holds_the_events_until_the_worker_gets_in() {
    if crate::tls_support::second_pass() {
        return;
    }
    let redis = PrivateRedis::start();
    let mut env = Env::on_redis(&redis).await;
    let worker = env.spawn_worker().await;
    // The one connection left to the server: this test's.
    let mut admin = connect(&redis).await;
    send(&mut admin, &["CONFIG", "SET", "maxclients", "1"]).await;
    send(
        &mut admin,
        &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"],
    )
    .await;
    let mut platform = Platform::new();
    env.publish_many(&platform.created_each(0..3)).await;
    assert_held(&mut env, "maxclients").await;
    let rejected = info_number(&mut admin, "stats", "rejected_connections").await;
    assert!(rejected > 0, "the worker's reconnection was refused");
    send(&mut admin, &["CONFIG", "SET", "maxclients", "100"]).await;
    assert_decided_once(&mut env, 3, "maxclients").await;
    worker.stop().await;
    env.cleanup().await;
}

/// `switchboard_redis_evicts_keys` on the worker's `/metrics` (`None` until it has read the
/// policy).
async fn evicts_keys(worker: &WorkerHandle) -> Option<f64> {
    let metrics = http_get(worker.http_addr, "/metrics").await?;
    let value = series(&metrics, "switchboard_redis_evicts_keys")
        .map(|(_, value)| value)
        .next();
    value
}

/// A Redis that deletes keys when it is full (any `maxmemory-policy` but `noeviction`, as some
/// managed services set by default) can take an agent's load or an event's record away without
/// an error anywhere. The worker says so as soon as it reads the policy (an error line, and
/// `switchboard_redis_evicts_keys` 1), and says it is fixed when the policy is `noeviction`.
#[tokio::test]
async fn a_redis_that_evicts_keys_when_full_is_reported_until_it_no_longer_does() {
    if crate::tls_support::second_pass() {
        return;
    }
    let redis = PrivateRedis::start();
    let mut admin = connect(&redis).await;
    send(
        &mut admin,
        &["CONFIG", "SET", "maxmemory-policy", "volatile-lru"],
    )
    .await;
    let env = Env::on_redis(&redis).await;
    let worker = env.spawn_worker().await;
    wait_until(|| async { evicts_keys(&worker).await == Some(1.0) }).await;
    // The watch reads it again at its next probe (every 5 s while Redis takes calls).
    send(
        &mut admin,
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
    )
    .await;
    wait_until(|| async { evicts_keys(&worker).await == Some(0.0) }).await;
    worker.stop().await;
    env.cleanup().await;
}

/// A Redis whose ACL does not let the worker run `INFO` keeps its eviction policy to itself. The
/// worker still works (INFO is not on the path of any event), and says once, at warning level,
/// that the policy is unchecked, not at every probe.
#[tokio::test]
async fn a_redis_that_will_not_tell_its_eviction_policy_is_said_once_to_be_unchecked() {
    if crate::tls_support::second_pass() {
        return;
    }
    let redis = PrivateRedis::start();
    let mut admin = connect(&redis).await;
    send(
        &mut admin,
        &[
            "ACL", "SETUSER", "sb", "on", ">sb-pass", "~*", "&*", "+@all", "-info",
        ],
    )
    .await;
    let mut config = Env::config_on(amqp_url());
    config.redis_url = format!("redis://sb:sb-pass@127.0.0.1:{}", redis.port).into();
    let (worker, readyz) = logged_worker_process(&config);
    let ready = readiness_within(readyz, Duration::from_secs(15)).await;
    // Two more probes of the Redis watch (every 5 s), which read the policy each time.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let still_ready = http_get(readyz, "/readyz")
        .await
        .unwrap_or_default()
        .starts_with("HTTP/1.1 200");
    let (_connection, channel) = broker_channel(&config).await;
    let log = stop_process(worker, &channel, &config).await;
    ready.expect("ready: INFO is not needed to apply events");
    assert!(still_ready, "still ready:\n{log}");
    let unchecked = log
        .lines()
        .filter(|l| {
            l.contains("WARN") && l.contains("maxmemory-policy") && l.contains("no permissions")
        })
        .count();
    assert_eq!(unchecked, 1, "said once, naming the refusal:\n{log}");
}

/// A work queue that already exists, declared otherwise than Switchboard declares it (here a
/// classic queue, as an operator or another tool may have made it): RabbitMQ refuses the
/// declaration (406 PRECONDITION_FAILED), and will until someone acts. The worker says so at
/// error level and retries slowly, as for refused credentials, instead of reporting a lost
/// connection and retrying ten times a second; once the queue is gone it declares its own and
/// becomes ready.
#[tokio::test]
async fn a_work_queue_declared_otherwise_is_a_refusal_until_it_is_gone() {
    refused_until_gone(|config| config.work_queue.clone()).await;
}

/// The same for a queue of the timer ladder (here a classic queue without the step's TTL and
/// dead-lettering, as an earlier tool or a hand-made queue may be): the worker does not start
/// consuming with a timer it could not arm, only to fail at the first event that arms one. The
/// ladder's declarations are sent together; the shortest step's goes first, so the broker's
/// refusal meets the others still in flight, and is still the error the worker reports.
#[tokio::test]
async fn a_delay_queue_declared_otherwise_is_a_refusal_until_it_is_gone() {
    refused_until_gone(|config| {
        switchboard::broker::delay::ladder_queue_names(&config.work_queue)[0].clone()
    })
    .await;
}

/// A channel of the test's own on the broker of `config` (with its connection, kept open while
/// the channel is used).
async fn broker_channel(
    config: &switchboard::config::Config,
) -> (lapin::Connection, lapin::Channel) {
    let connection = lapin::Connection::connect(config.amqp_url.as_str(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

/// Kills a worker process of [`worker_process`], deletes the topology it declared (on
/// `channel`) and returns its log. Called before a test asserts, so that a failing test leaves
/// no process behind.
async fn stop_process(
    mut worker: std::process::Child,
    channel: &lapin::Channel,
    config: &switchboard::config::Config,
) -> String {
    let _ = worker.kill();
    let output = worker.wait_with_output().unwrap();
    let _ = switchboard::broker::topology::delete(channel, config).await;
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Declares the queue `in_the_way` names (of a fresh topology) as a plain durable classic
/// queue, starts a worker, and checks that it is not ready and says so as a refusal, retried
/// slowly, until the queue is deleted; then that it becomes ready.
async fn refused_until_gone(in_the_way: impl Fn(&switchboard::config::Config) -> String) {
    // Its topology's names, nothing declared yet.
    let config = Env::config_on(amqp_url());
    let queue = in_the_way(&config);
    let (_connection, channel) = broker_channel(&config).await;
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.as_str().into(), durable, Default::default())
        .await
        .unwrap();
    let (worker, readyz) = logged_worker_process(&config);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ready_in_the_way = http_get(readyz, "/readyz")
        .await
        .unwrap_or_default()
        .starts_with("HTTP/1.1 200");
    channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await
        .unwrap();
    // The next slow retry (2 s, then 4 s) declares Switchboard's own queue.
    let ready_once_gone = readiness_within(readyz, Duration::from_secs(15)).await;
    // The worker goes before any assertion, so that a failing one leaves no process behind.
    let log = stop_process(worker, &channel, &config).await;
    assert!(!ready_in_the_way, "not ready while {queue} is in the way");
    ready_once_gone.expect("ready once the queue is gone");
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("ERROR") && l.contains("refused") && l.contains("declared otherwise")
        })
        .collect();
    assert!(!refusals.is_empty(), "said at error level:\n{log}");
    assert!(
        refusals.len() <= 3,
        "retried slowly (2 s, then 4 s), not as an outage:\n{log}"
    );
    assert!(
        refusals.iter().any(|l| l.contains(queue.as_str())),
        "the line names {queue}:\n{log}"
    );
    assert!(
        !log.contains("connection lost"),
        "not reported as a lost connection:\n{log}"
    );
}

#[tokio::test]
async fn a_cut_broker_connection_is_rebuilt_and_nothing_is_lost() {
    let mut env = Env::new().await;
    let worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 50)]).await;
    let first = platform.created_each(0..100);
    env.publish_many(&first).await;
    close_broker_connection(&worker.connection_name);
    let second = platform.created_each(100..200);
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
    // An operator finds it by RabbitMQ's reason.
    env.depth_becomes(&env.config.dead_letter_queue, 1).await;
    let found = switchboard::cli::dead_letters::look(
        &env.config,
        &switchboard::cli::dead_letters::DeadLettersArgs {
            replay: false,
            reason: Some("delivery_limit".into()),
            project: None,
            json: false,
            limit: 10,
        },
    )
    .await
    .unwrap();
    assert_eq!(found.matched.len(), 1, "{:?}", found.matched);
    assert_eq!(
        found.matched[0].event_id.as_deref(),
        Some(platform.last_id().as_str())
    );
    let letters = env.dead_letters(1, WAIT).await;
    assert_eq!(letters.len(), 1, "the poison event reached dead letters");
    assert_eq!(letters[0].body, poison);
    let _ = connection.close(200, "done".into()).await;
    env.cleanup().await;
}

/// A broker gone silent (the network path drops everything and resets nothing: a NAT or load
/// balancer that forgot the connection, a frozen host) is noticed by the heartbeat the worker
/// asks for, 10 s unless its URL says otherwise: it is not ready within about 20 s, not after
/// the two minutes RabbitMQ's default heartbeat of 60 s would take, and works again once the
/// broker answers.
#[tokio::test]
async fn a_broker_gone_silent_is_noticed_within_the_heartbeat_and_work_resumes() {
    if crate::tls_support::second_pass() {
        return;
    }
    let (relay, relayed_url) = relayed_broker().await;
    let mut env = Env::new().await;
    env.config.amqp_url = relayed_url.into();
    let worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 5)]).await;
    env.publish(&platform.created("before")).await;
    let mut outputs = env.outputs(1, WAIT).await;

    relay.freeze();
    let frozen = std::time::Instant::now();
    while worker.readiness.is_ready() && frozen.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let noticed_in = frozen.elapsed();
    relay.thaw();
    let ready_again = readiness_within(worker.http_addr, WAIT).await;
    env.publish(&platform.created("after")).await;
    // "before" comes again if its ack was caught in the silence: redelivered, it is replayed
    // with the same id.
    let after_came = |outputs: &[serde_json::Value]| decisions(outputs).contains_key("after");
    outputs.extend(env.outputs_until(after_came, WAIT).await);
    worker.stop().await;
    let decided = decisions(&outputs);
    assert!(
        ["before", "after"]
            .iter()
            .all(|c| decided.get(*c).is_some_and(|ids| ids.len() == 1)),
        "each decided once: {decided:?}"
    );
    assert!(
        noticed_in < Duration::from_secs(30),
        "not ready {noticed_in:?} after the broker went silent"
    );
    assert!(ready_again.is_ok(), "ready again once the broker answers");
    env.cleanup().await;
}

/// A broker that takes the connection and then answers nothing (a host frozen mid-handshake,
/// the old address of a managed broker that failed over) does not hold the worker for ever:
/// the attempt is given up after 20 s, said, and tried again, and the worker is ready once the
/// broker answers.
#[tokio::test]
async fn a_broker_silent_from_the_start_is_tried_again_and_said() {
    if crate::tls_support::second_pass() {
        return;
    }
    let (relay, relayed_url) = relayed_broker().await;
    relay.freeze();
    let direct = Env::config_on(amqp_url());
    let mut config = direct.clone();
    config.amqp_url = relayed_url.into();
    let (worker, readyz) = logged_worker_process(&config);
    tokio::time::sleep(Duration::from_secs(25)).await;
    let ready_while_silent = http_get(readyz, "/readyz")
        .await
        .unwrap_or_default()
        .starts_with("HTTP/1.1 200");
    relay.thaw();
    let ready = readiness_within(readyz, WAIT).await;
    let (_connection, channel) = broker_channel(&direct).await;
    let log = stop_process(worker, &channel, &config).await;
    assert!(!ready_while_silent, "not ready while the broker is silent");
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("did not answer within 20s")),
        "the silent attempt given up and said:\n{log}"
    );
    ready.expect("ready once the broker answers");
}

/// A relay in front of the machine's broker, and the AMQP URL that reaches the broker through
/// it.
async fn relayed_broker() -> (SilentRelay, String) {
    let broker: lapin::uri::AMQPUri = amqp_url().parse().unwrap();
    let address = format!("{}:{}", broker.authority.host, broker.authority.port);
    let relay = SilentRelay::to(address.parse().unwrap()).await;
    let user = &broker.authority.userinfo;
    let vhost = broker.vhost.replace('%', "%25").replace('/', "%2f");
    let url = format!(
        "amqp://{}:{}@127.0.0.1:{}/{vhost}",
        user.username,
        user.password,
        relay.port()
    );
    (relay, url)
}
