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

/// Every connection of this process to one of `ports` on loopback: whether it sends at once
/// (`TCP_NODELAY`), how long the kernel lets the peer leave data unacknowledged before it gives
/// the connection up (`TCP_USER_TIMEOUT`, ms) and whether it probes an idle peer
/// (`SO_KEEPALIVE`). Each test runs in a process of its own, so these are its connections.
fn tcp_options_to(ports: &[u16]) -> Vec<(bool, i32, bool)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let Some(fd) = entry
            .unwrap()
            .file_name()
            .to_str()
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        // SAFETY: plain reads of a descriptor this process holds into buffers of the sizes
        // given; a descriptor that is not a connected socket only makes the calls fail.
        unsafe {
            let mut address: libc::sockaddr_storage = std::mem::zeroed();
            let mut length = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            if libc::getpeername(fd, (&raw mut address).cast(), &mut length) != 0 {
                continue;
            }
            let port = match i32::from(address.ss_family) {
                libc::AF_INET => (*(&raw const address).cast::<libc::sockaddr_in>()).sin_port,
                libc::AF_INET6 => (*(&raw const address).cast::<libc::sockaddr_in6>()).sin6_port,
                _ => continue,
            };
            if !ports.contains(&u16::from_be(port)) {
                continue;
            }
            let option = |level, name| {
                let mut value: libc::c_int = 0;
                let mut size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut size);
                value
            };
            found.push((
                option(libc::IPPROTO_TCP, libc::TCP_NODELAY) != 0,
                option(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
                option(libc::SOL_SOCKET, libc::SO_KEEPALIVE) != 0,
            ));
        }
    }
    found
}

/// A Redis that stops answering without a reset (a NAT or load balancer that forgot the
/// connection, a node gone from the network) must not hold a worker's connection for the
/// kernel's default of about 15 minutes of retransmissions, every call on it timing out while
/// a new connection would go through: the store's connections, to a node or to every node of a
/// cluster, give up data left unacknowledged for 10 s and probe an idle peer, and send a
/// call's last bytes at once. (Dropping a peer's packets needs a firewall this machine does
/// not have, so this checks the sockets.)
#[tokio::test]
async fn the_stores_connections_give_up_a_silent_redis_and_send_at_once() {
    let url = redis_url();
    let ports: Vec<u16> = url
        .split(',')
        .map(|node| url::Url::parse(node.trim()).unwrap().port().unwrap_or(6379))
        .collect();
    let store = store_with(
        &url,
        switchboard::store::StoreOptions {
            connections: 2,
            ..Default::default()
        },
    )
    .await;
    let project = Platform::new().id();
    for _ in 0..2 {
        store.settings(&project).await.unwrap();
    }
    let options = tcp_options_to(&ports);
    assert!(!options.is_empty(), "no connection to Redis at {ports:?}");
    for (nodelay, user_timeout_ms, keepalive) in options {
        assert!(nodelay, "TCP_NODELAY");
        assert_eq!(user_timeout_ms, 10_000, "TCP_USER_TIMEOUT");
        assert!(keepalive, "SO_KEEPALIVE");
    }
}
