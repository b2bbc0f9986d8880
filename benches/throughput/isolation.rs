//! Each drain runs on exchanges, queues and a project of its own, deleted after, so that runs
//! never see each other and repeated runs do not fill the machine's RabbitMQ and Redis.

use switchboard::broker::{self, topology};
use switchboard::config::Config;
use switchboard::contract::Id;
use switchboard::store::keys;

/// A fresh tag: the name of a drain's exchanges and queues, and its project's id.
pub fn new_tag() -> String {
    format!("bench-{}", uuid::Uuid::new_v4().simple())
}

/// A loopback port free now, for a process the benchmark starts (a worker's HTTP server, a
/// private redis-server).
pub fn free_port() -> std::io::Result<u16> {
    Ok(free_ports(1)?[0])
}

/// `n` loopback ports free now, all different: each is held until all are drawn (a port drawn
/// and let go may be drawn again before the process it is for binds it).
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let held = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    held.iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

/// The configuration of a drain tagged `tag`: the machine's services, its own names.
pub fn config(tag: &str) -> Config {
    Config {
        inbound_exchange: format!("{tag}.in"),
        work_queue: format!("{tag}.work"),
        outbound_exchange: format!("{tag}.out"),
        dead_letter_queue: format!("{tag}.dead"),
        ..Config::default()
    }
}

/// Deletes a drain's topology, its project's keys and the relay's counters.
pub async fn cleanup(config: &Config) {
    let tag = config.work_queue.trim_end_matches(".work");
    forget_project(config, tag).await;
    forget_keys(config, &format!("{{bench}}:{}*", config.work_queue)).await;
    let connection = broker::open_connection(config, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let _ = topology::delete(&channel, config).await;
    let _ = connection.close(200, "done".into()).await;
}

/// Deletes this build's function library, which the benchmark's workers loaded into the
/// machine's Redis (a few hundred KB per build). A worker still running against that Redis
/// loads it again at its next call.
pub async fn forget_library(config: &Config) {
    let mut connection = redis_connection(config).await;
    let deleted: redis::RedisResult<()> = redis::cmd("FUNCTION")
        .arg("DELETE")
        .arg(&switchboard::store::script::LIBRARY.name)
        .query_async(&mut connection)
        .await;
    match deleted {
        Ok(()) => {}
        // Parts that run no worker never loaded it.
        Err(error) if error.to_string().contains("not found") => {}
        Err(error) => eprintln!("the function library was not deleted: {error}"),
    }
}

/// Deletes every key of `project`.
pub async fn forget_project(config: &Config, project: &str) {
    let project = Id::parse(project).unwrap();
    forget_keys(config, &format!("{}*", keys::project_prefix(&project))).await;
}

/// Deletes the keys matching `pattern`.
async fn forget_keys(config: &Config, pattern: &str) {
    let mut connection = redis_connection(config).await;
    for keys in scan(&mut connection, pattern).await.chunks(1000) {
        let _: i64 = redis::cmd("UNLINK")
            .arg(keys)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
}

/// The names of the keys matching `pattern`.
pub async fn keys_matching(config: &Config, pattern: &str) -> Vec<String> {
    scan(&mut redis_connection(config).await, pattern).await
}

/// A connection to the machine's Redis of `config`.
pub async fn redis_connection(config: &Config) -> redis::aio::MultiplexedConnection {
    redis::Client::open(config.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A `SCAN` for `pattern`, to the end.
async fn scan(connection: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut cursor = 0u64;
    let mut found = vec![];
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(connection)
            .await
            .unwrap();
        found.extend(keys);
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}
