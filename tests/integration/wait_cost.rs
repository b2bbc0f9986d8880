//! What `SWITCHBOARD_REDIS_WAIT_REPLICAS=1` costs, measured, not asserted (it depends on the
//! machine): store calls with and without a `WAIT` for one replica, taking turns, against a
//! TLS Redis Cluster of 3 masters with one replica each on this machine. Run it with
//! `cargo nextest run --test integration wait_cost --run-ignored only --no-capture`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::store::{Store, StoreOptions};

use crate::helpers::Platform;
use crate::tls_support::{tls_files, Certificates, TlsRedis};

const SEQUENTIAL_CALLS: usize = 2000;
const CONCURRENT_TASKS: usize = 16;
const CALLS_PER_TASK: usize = 250;

async fn store(cluster: &TlsRedis, certificates: &Certificates, wait_replicas: u16) -> Store {
    let options = StoreOptions {
        tls: tls_files(certificates),
        wait_replicas,
        ..StoreOptions::default()
    };
    Store::connect(&[cluster.url()], options).await.unwrap()
}

/// One `conversation.created` of `project`, applied alone; its duration.
async fn one_call(store: &Store, project: &mut Platform, n: usize) -> Duration {
    let created = project.inbound(
        "conversation.created",
        json!({"conversation_id": format!("c{n}"), "visitor_id": format!("v{n}")}),
    );
    let started = Instant::now();
    store.apply(&created, 1_795_000_000_000).await.unwrap();
    started.elapsed()
}

fn summary(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    eprintln!(
        "{label}: mean {:.0} µs, p50 {:.0} µs, p99 {:.0} µs",
        mean.as_secs_f64() * 1e6,
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6
    );
}

#[tokio::test]
#[ignore = "a measurement, run by hand"]
async fn measure_the_cost_of_waiting_for_a_replica() {
    let certificates = Certificates::generate();
    let cluster = TlsRedis::start_cluster(&certificates, 3, 1);
    let plain = store(&cluster, &certificates, 0).await;
    let waiting = store(&cluster, &certificates, 1).await;
    let mut project = Platform::new();
    // Warm up: the function library is loaded on every master.
    for n in 0..50 {
        one_call(&plain, &mut project, n).await;
        one_call(&waiting, &mut project, 1_000_000 + n).await;
    }
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for n in 0..SEQUENTIAL_CALLS {
        without.push(one_call(&plain, &mut project, 10_000 + n).await);
        with.push(one_call(&waiting, &mut project, 20_000 + n).await);
    }
    summary("one call at a time, no WAIT     ", without);
    summary("one call at a time, WAIT 1      ", with);

    for (label, store) in [("no WAIT", plain), ("WAIT 1 ", waiting)] {
        let store = Arc::new(store);
        let started = Instant::now();
        let tasks: Vec<_> = (0..CONCURRENT_TASKS)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut project = Platform::new();
                    for n in 0..CALLS_PER_TASK {
                        one_call(&store, &mut project, task * 100_000 + n).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let calls = (CONCURRENT_TASKS * CALLS_PER_TASK) as f64;
        eprintln!(
            "{CONCURRENT_TASKS} projects side by side, {label}: {:.0} calls/s",
            calls / started.elapsed().as_secs_f64()
        );
    }
}
