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

/// Deletes every key of `project`.
pub async fn forget_project(config: &Config, project: &str) {
    let project = Id::parse(project).unwrap();
    forget_keys(config, &format!("{}*", keys::project_prefix(&project))).await;
}

/// Deletes the keys matching `pattern`.
async fn forget_keys(config: &Config, pattern: &str) {
    let client = redis::Client::open(config.redis_url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut connection)
                .await
                .unwrap();
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}
