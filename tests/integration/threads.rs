//! Workers on runtimes of different sizes (`SWITCHBOARD_WORKER_THREADS`) decide as one: a
//! `switchboard run` process on one runtime thread (the default) beside one on four fill each
//! agent exactly to its capacity, and each reports on `/metrics` the threads it was given.

use std::net::SocketAddr;
use std::time::Duration;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(15);

/// The runtime threads a worker reports on `/metrics` (`switchboard_runtime_threads`).
async fn runtime_threads(addr: SocketAddr) -> f64 {
    let metrics = http_get(addr, "/metrics").await.unwrap_or_default();
    let mut values = series(&metrics, "switchboard_runtime_threads").map(|(_, value)| value);
    values
        .next()
        .expect("switchboard_runtime_threads is reported")
}

#[tokio::test]
async fn workers_on_one_and_on_four_threads_assign_each_conversation_once() {
    let mut env = Env::new().await;
    let http_ports = vec![free_port(), free_port()];
    let one = worker_process(&env.config, http_ports[0]);
    env.config.worker_threads = 4;
    let four = worker_process(&env.config, http_ports[1]);
    let workers = WorkerProcesses {
        children: vec![one, four],
        http_ports,
    };
    let addrs: Vec<SocketAddr> = workers
        .http_ports
        .iter()
        .map(|port| SocketAddr::from(([127, 0, 0, 1], *port)))
        .collect();
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
    assert_eq!(
        runtime_threads(addrs[0]).await,
        1.0,
        "the default runtime has one thread"
    );
    assert_eq!(
        runtime_threads(addrs[1]).await,
        4.0,
        "SWITCHBOARD_WORKER_THREADS=4"
    );
    drop(workers);
    env.cleanup().await;
}
