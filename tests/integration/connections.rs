//! A worker with several Redis connections (`SWITCHBOARD_REDIS_CONNECTIONS`) decides as one
//! with a single connection: calls taken in turn by the connections still fill each agent
//! exactly to its capacity and free it on close.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn a_worker_with_four_redis_connections_assigns_each_conversation_once() {
    let mut env = Env::new().await;
    env.config.redis_connections = 4;
    let worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    let capacity = [("a", 5u64), ("b", 7), ("c", 8)];
    env.burst_fills_the_team(&mut platform, &capacity).await;
    let store = store().await;
    // Closing every conversation frees every agent (the waiting ones are assigned and closed
    // in turn, whichever connection carries each call).
    let closes = platform.closed_each(0..60);
    env.publish_many(&closes).await;
    let mut freed = false;
    for _ in 0..400 {
        let mut load = 0;
        for (agent, _) in capacity {
            load += load_of(&store, &platform.project, agent).await;
        }
        if load == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        freed,
        "every agent is free once every conversation is closed"
    );
    worker.stop().await;
    env.cleanup().await;
}
