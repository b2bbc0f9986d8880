//! Workers on runtimes of different sizes (`SWITCHBOARD_WORKER_THREADS`) decide as one: a
//! `switchboard run` process on one runtime thread (the default) beside one on four fill each
//! agent exactly to its capacity, and each reports on `/metrics` the threads it was given.

use std::time::Duration;

use switchboard::config::Config;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn workers_on_one_and_on_four_threads_assign_each_conversation_once() {
    let mut env = Env::new().await;
    let four = Config {
        worker_threads: 4,
        ..env.config.clone()
    };
    let workers = WorkerProcesses::configured(&[env.config.clone(), four]);
    let addrs = workers.addrs();
    for addr in &addrs {
        readiness_within(*addr, WAIT).await.unwrap();
    }
    let mut platform = Platform::new();
    env.burst_fills_the_team(&mut platform, &[("a", 5), ("b", 7), ("c", 8)])
        .await;
    workers.settled(&env).await;
    for addr in &addrs {
        assert!(
            events_handled(&[*addr]).await > 0,
            "both workers took part of the burst"
        );
    }
    for (addr, threads) in addrs.iter().zip([1.0, 4.0]) {
        let metrics = http_get(*addr, "/metrics").await.unwrap_or_default();
        assert_eq!(
            metric_sum(&metrics, "switchboard_runtime_threads", ""),
            threads,
            "the runtime threads /metrics reports (1 by default, then SWITCHBOARD_WORKER_THREADS=4)"
        );
    }
    drop(workers);
    env.cleanup().await;
}
