//! Where the services are, and names no other test uses.

pub fn redis_url() -> String {
    std::env::var("SWITCHBOARD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The store layout the tests' workers and stores write (`SWITCHBOARD_STORE_LAYOUT`, default
/// 1): the test command runs the integration tests once more in layout 2.
pub fn store_layout() -> u8 {
    std::env::var("SWITCHBOARD_STORE_LAYOUT")
        .ok()
        .and_then(|layout| layout.parse().ok())
        .unwrap_or(1)
}

pub fn amqp_url() -> String {
    std::env::var("SWITCHBOARD_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A fresh id (a project's, a topology's tag), so tests never see each other's state.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A free loopback port.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` free loopback ports, all different: each is held until all are drawn (a port drawn and
/// let go may be drawn again before whoever it is for binds it).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|listener| listener.local_addr().unwrap().port())
        .collect()
}
