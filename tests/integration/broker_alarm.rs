//! A RabbitMQ resource alarm (memory here; a disk below its free limit does the same) blocks
//! every connection that publishes (`connection.blocked`) and stops reading from it until the
//! alarm clears: the worker's outputs wait unconfirmed and its events unacked, so nothing is
//! lost, but no assignment reaches the platform, and the connection looks healthy. On a private
//! node, since an alarm blocks every publisher of its broker.

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::private_rabbit::PrivateRabbit;

const WAIT: Duration = Duration::from_secs(20);
/// Events the worker holds when the alarm is raised.
const EVENTS: usize = 3;

/// A worker process holding `EVENTS` creations it cannot publish the decisions of: the broker
/// has blocked its connection, and the worker has said so (or the time to say it has passed).
struct Blocked {
    rabbit: PrivateRabbit,
    env: Env,
    /// Killed when dropped, so that a failing test leaves no process behind.
    worker: WorkerProcesses,
    readyz: SocketAddr,
    /// Its standard error, read as it comes (the pipe never fills).
    log: JoinHandle<String>,
    /// `/readyz` and `switchboard_broker_blocked` once blocked.
    readyz_blocked: String,
    gauge_blocked: Option<f64>,
}

impl Blocked {
    async fn start() -> Blocked {
        let rabbit = PrivateRabbit::start();
        let env = Env::with_amqp_url(rabbit.amqp_url()).await;
        let (mut child, readyz) = logged_worker_process(&env.config);
        let mut stderr = child.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            let mut log = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut log);
            log
        });
        let worker = WorkerProcesses::of(vec![child]);
        readiness_within(readyz, WAIT)
            .await
            .expect("ready on the private node");
        let mut platform = Platform::new();
        env.team(&mut platform, &[("a", 10)]).await;
        // Frozen while the events are published and the alarm raised (the platform could not
        // publish under it either): the worker meets the alarm with the events in hand.
        worker.signal("STOP");
        env.publish_many(&platform.created_each(0..EVENTS)).await;
        let raised = rabbit.ctl(&["set_vm_memory_high_watermark", "0.0001"]);
        assert!(raised.status.success(), "{raised:?}");
        for _ in 0..50 {
            let alarms = rabbit.ctl(&["eval", "rabbit_alarm:get_alarms()."]);
            if String::from_utf8_lossy(&alarms.stdout).contains("memory") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        worker.signal("CONT");
        let (mut readyz_blocked, mut gauge_blocked) = (String::new(), None);
        for _ in 0..100 {
            readyz_blocked = http_get(readyz, "/readyz").await.unwrap_or_default();
            gauge_blocked = broker_blocked(readyz).await;
            if readyz_blocked.starts_with("HTTP/1.1 503") && gauge_blocked == Some(1.0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Blocked {
            rabbit,
            env,
            worker,
            readyz,
            log,
            readyz_blocked,
            gauge_blocked,
        }
    }

    fn clear_alarm(&self) {
        let cleared = self.rabbit.ctl(&["set_vm_memory_high_watermark", "0.4"]);
        assert!(cleared.status.success(), "{cleared:?}");
    }

    /// Kills the worker if it still runs; its log.
    fn stop(mut self) -> (Env, PrivateRabbit, String) {
        self.worker.kill();
        let log = self.log.join().unwrap();
        (self.env, self.rabbit, log)
    }
}

/// `switchboard_broker_blocked` as the worker serving HTTP at `addr` reports it.
async fn broker_blocked(addr: SocketAddr) -> Option<f64> {
    let metrics = http_get(addr, "/metrics").await.unwrap_or_default();
    let value = series(&metrics, "switchboard_broker_blocked")
        .map(|(_, value)| value)
        .next();
    value
}

fn warned_blocked(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("WARN") && l.contains("blocks publishing"))
        .filter(|l| l.contains("low on memory"))
        .count()
}

/// The worker says it is blocked while it lasts (not ready, a warning with the broker's reason,
/// `switchboard_broker_blocked` 1), then each decision goes out once and it is ready again.
#[tokio::test]
async fn a_blocked_worker_says_so_until_the_broker_unblocks_it_and_loses_nothing() {
    if crate::tls_support::second_pass() {
        return;
    }
    let mut blocked = Blocked::start().await;
    let while_blocked = blocked.env.outputs_for(Duration::from_secs(2)).await;
    blocked.clear_alarm();
    let decided = decisions(&blocked.env.outputs(EVENTS, WAIT).await);
    let again = blocked.env.outputs_for(Duration::from_millis(500)).await;
    let ready_again = readiness_within(blocked.readyz, WAIT).await;
    let gauge_after = broker_blocked(blocked.readyz).await;
    let (readyz_blocked, gauge_blocked) = (blocked.readyz_blocked.clone(), blocked.gauge_blocked);
    let (env, _rabbit, log) = blocked.stop();
    assert!(
        readyz_blocked.starts_with("HTTP/1.1 503") && readyz_blocked.contains("blocked"),
        "not ready while blocked, saying why: {readyz_blocked}\n{log}"
    );
    assert_eq!(gauge_blocked, Some(1.0), "the gauge while blocked\n{log}");
    assert_eq!(
        warned_blocked(&log),
        1,
        "one warning, with the broker's reason:\n{log}"
    );
    assert!(
        while_blocked.is_empty(),
        "published while blocked: {while_blocked:?}"
    );
    assert_eq!(
        decided.len(),
        EVENTS,
        "each event decided once unblocked\n{log}"
    );
    assert!(again.is_empty(), "each decided once: {again:?}");
    ready_again.expect("ready once unblocked");
    assert_eq!(gauge_after, Some(0.0), "the gauge once unblocked\n{log}");
    env.assert_no_dead_letters("after the alarm").await;
    env.cleanup().await;
}

/// Stopped while blocked (a deploy during the alarm), the worker cannot finish its events: their
/// confirms, its acks and even its goodbye go unread. It leaves them to the broker after a grace
/// period and exits 0, well within a container's usual 30 s, instead of hanging until the
/// alarm clears or it is killed. Once the alarm clears, the broker redelivers them to the next
/// worker, which replays the recorded decisions (same ids) instead of deciding again.
#[tokio::test]
async fn a_worker_stopped_while_blocked_exits_and_its_events_are_decided_once() {
    if crate::tls_support::second_pass() {
        return;
    }
    let mut blocked = Blocked::start().await;
    let stopping = Instant::now();
    blocked.worker.signal("TERM");
    let mut exited: Option<ExitStatus> = None;
    while exited.is_none() && stopping.elapsed() < Duration::from_secs(30) {
        exited = blocked.worker.children[0].try_wait().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopped_in = stopping.elapsed();
    blocked.clear_alarm();
    let gauge_blocked = blocked.gauge_blocked;
    let (mut env, _rabbit, log) = blocked.stop();
    let next = env.spawn_worker().await;
    let outputs = env.outputs_for(Duration::from_secs(5)).await;
    next.stop().await;
    assert_eq!(gauge_blocked, Some(1.0), "blocked before the stop\n{log}");
    let status = exited.unwrap_or_else(|| panic!("still running 30 s after SIGTERM:\n{log}"));
    assert!(status.success(), "exit status {status:?}:\n{log}");
    assert!(
        stopped_in < Duration::from_secs(20),
        "stopped in {stopped_in:?}:\n{log}"
    );
    let decided = decisions(&outputs);
    assert_eq!(decided.len(), EVENTS, "each event decided: {outputs:?}");
    assert!(
        decided.values().all(|ids| ids.len() == 1),
        "each decided once (a repeated output has the same id): {decided:?}"
    );
    env.assert_no_dead_letters("after the stop").await;
    env.cleanup().await;
}
