//! Layered configuration: built-in defaults, then an optional TOML file, then `SWITCHBOARD_`
//! environment variables (the last one wins).
//!
//! The environment names are the contract's (`SWITCHBOARD_AMQP_URL`, `SWITCHBOARD_REDIS_URL`,
//! `SWITCHBOARD_HTTP_ADDR`); every other field maps the same way: `work_queue` is
//! `SWITCHBOARD_WORK_QUEUE`, and so on.

use serde::Deserialize;

/// Everything a worker needs to know to run.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where RabbitMQ is. Holds a password: never logged as is (see [`redact_url`]).
    pub amqp_url: String,
    /// One Redis URL, or several comma-separated node URLs of one Redis Cluster.
    pub redis_url: String,
    /// Address of the `/metrics`, `/healthz` and `/readyz` server.
    pub http_addr: String,
    /// Topic exchange the platforms publish to.
    pub inbound_exchange: String,
    /// Quorum queue every worker consumes.
    pub work_queue: String,
    /// Topic exchange the workers publish their decisions to.
    pub outbound_exchange: String,
    /// Quorum queue holding every event that could not be processed.
    pub dead_letter_queue: String,
    /// How many unacknowledged events one worker handles at once.
    pub prefetch: u16,
    /// At most this many events that arrived together are applied in one Redis call (grouped
    /// by project). A quiet queue gives batches of one, so batching adds no waiting; a backlog
    /// costs one round trip per batch instead of per event. 1 turns batching off; at most 1000.
    pub batch_size: u16,
    /// After this many deliveries of one event RabbitMQ dead-letters it (a poison message that
    /// kills workers cannot loop forever).
    pub delivery_limit: u32,
    /// How long an event id is remembered, so that a redelivery or a platform retry has no
    /// second effect.
    pub dedupe_ttl_seconds: u64,
    /// How long a closed conversation is remembered, so that late events about it (a
    /// `conversation.created` processed after its `conversation.closed`) change nothing.
    pub closed_retention_seconds: u64,
    /// `text` or `json` log lines.
    pub log_format: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            http_addr: "127.0.0.1:9464".into(),
            inbound_exchange: "switchboard.in".into(),
            work_queue: "switchboard.work".into(),
            outbound_exchange: "switchboard.out".into(),
            dead_letter_queue: "switchboard.dead".into(),
            prefetch: 64,
            batch_size: 16,
            delivery_limit: 20,
            dedupe_ttl_seconds: 7 * 24 * 3600,
            closed_retention_seconds: 7 * 24 * 3600,
            log_format: "text".into(),
        }
    }
}

impl Config {
    /// Reads the layers: defaults, then `file` (if given), then `SWITCHBOARD_*` variables.
    pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Config> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SWITCHBOARD")
                .prefix_separator("_")
                .try_parsing(true),
        );
        let config: Config = builder.build()?.try_deserialize()?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.prefetch > 0, "prefetch must be at least 1");
        // The apply function reads a batch's records with one MGET of its keys, and Lua unpacks
        // at most a few thousand values; a batch never holds more than batch_size events.
        anyhow::ensure!(
            (1..=1000).contains(&self.batch_size),
            "batch_size must be between 1 and 1000"
        );
        anyhow::ensure!(self.delivery_limit > 0, "delivery_limit must be at least 1");
        anyhow::ensure!(
            matches!(self.log_format.as_str(), "text" | "json"),
            "log_format must be `text` or `json`"
        );
        for name in [
            &self.inbound_exchange,
            &self.work_queue,
            &self.outbound_exchange,
            &self.dead_letter_queue,
        ] {
            anyhow::ensure!(
                !name.is_empty() && name.len() <= 255,
                "exchange and queue names must be 1-255 bytes"
            );
        }
        Ok(())
    }

    /// The Redis node URLs: one for a single node, several for a cluster.
    pub fn redis_nodes(&self) -> Vec<String> {
        self.redis_url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }
}

/// A URL fit for a log line: the password, if any, replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_log_line() {
        assert_eq!(
            redact_url("amqp://guest:s3cret@rabbit:5672/%2f"),
            "amqp://guest:***@rabbit:5672/%2f"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("redis://:pw@h:1"), "redis://:***@h:1");
    }

    #[test]
    fn batch_size_is_bounded() {
        for (batch_size, valid) in [(0, false), (1, true), (1000, true), (1001, false)] {
            let config = Config {
                batch_size,
                ..Config::default()
            };
            assert_eq!(config.validate().is_ok(), valid, "batch_size {batch_size}");
        }
    }

    #[test]
    fn several_redis_urls_mean_a_cluster() {
        let config = Config {
            redis_url: "redis://a:1, redis://b:2,redis://c:3".into(),
            ..Config::default()
        };
        assert_eq!(config.redis_nodes().len(), 3);
    }
}
