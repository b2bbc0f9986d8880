//! Redis for the tests: the store as the workers configure it, an agent's load read through
//! the store's read API, and private servers that a test may crash.

use std::time::Duration;

use switchboard::config::StoreLayout;
use switchboard::contract::Id;
use switchboard::store::{Store, StoreOptions};

use super::names::{free_port, redis_url, store_layout, unique};

pub async fn store() -> Store {
    store_at(&redis_url()).await
}

pub async fn store_at(url: &str) -> Store {
    // The workers' defaults, so that the tests read the records the workers write.
    let options = StoreOptions {
        store_layout: StoreLayout::from_number(store_layout()).expect("store layout 1 or 2"),
        ..StoreOptions::default()
    };
    store_with(url, options).await
}

/// The store on `url` (one node, or a cluster's nodes separated by commas) with `options`.
pub async fn store_with(url: &str, options: StoreOptions) -> Store {
    let nodes: Vec<String> = url.split(',').map(|s| s.trim().to_string()).collect();
    Store::connect(&nodes, options)
        .await
        .expect("Redis is reachable")
}

/// The open load of an agent of `project`.
pub async fn load_of(store: &Store, project: &str, agent: &str) -> i64 {
    let project = Id::parse(project).unwrap();
    store.load(&project, agent).await.unwrap() as i64
}

/// A private `redis-server` on a free loopback port, persisting to a temporary directory so
/// that a restart keeps its data (like a production Redis with AOF).
pub struct PrivateRedis {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let dir = std::env::temp_dir().join(unique("redis"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = PrivateRedis {
            port: free_port(),
            dir,
            child: None,
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
