//! Layered configuration: built-in defaults, then an optional TOML file, then `SWITCHBOARD_`
//! environment variables (the last one wins).
//!
//! The environment names are the contract's (`SWITCHBOARD_AMQP_URL`, `SWITCHBOARD_REDIS_URL`,
//! `SWITCHBOARD_HTTP_ADDR`); every other field maps the same way: `work_queue` is
//! `SWITCHBOARD_WORK_QUEUE`, and so on.

use std::path::PathBuf;

use serde::Deserialize;

pub use crate::secret::{redact_url, SecretUrl};
pub use error::SettingError;

use crate::contract::names;

mod checks;
pub mod error;
pub mod tls;

/// Everything a worker needs to know to run.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where RabbitMQ is: `amqp://` or `amqps://` (TLS), with the user, password and vhost.
    /// Never shown as is: `Debug` and log lines redact the password.
    pub amqp_url: SecretUrl,
    /// One Redis URL, or several comma-separated node URLs of one Redis Cluster; `redis://` or
    /// `rediss://` (TLS), `redis://user:password@…` for an ACL user. Never shown as is.
    pub redis_url: SecretUrl,
    /// Address of the `/metrics`, `/healthz` and `/readyz` server; port 0 takes a free port.
    pub http_addr: String,
    /// PEM certificates trusted for TLS servers (`amqps://`, `rediss://`) besides the system's
    /// trust store: a private CA, a managed service's own CA.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to TLS servers that ask for a client certificate (with
    /// `tls_key_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file` (PKCS#8, PKCS#1 or SEC1, unencrypted).
    pub tls_key_file: Option<PathBuf>,
    /// After each store call, wait until this many replicas of the Redis node hold its writes
    /// (`WAIT`) before the outputs are published. 0 (the default) does not wait: a failover may
    /// then lose the last decisions the old master had not yet replicated (see the README).
    pub redis_wait_replicas: u16,
    /// How long one `WAIT` may take. When fewer replicas confirm in time, the call counts as
    /// failed and the events are retried (and replayed, not decided twice).
    pub redis_wait_timeout_ms: u64,
    /// Multiplexed connections to Redis, each store call taking the next in turn (1 to 64).
    /// One carries every call of a worker; more let Redis read one connection's calls while
    /// it answers another's.
    pub redis_connections: u16,
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
    /// At most this many batches are decided (in their Redis call) at once; deliveries that
    /// arrive meanwhile wait and form the next batch. Under load batches then grow to
    /// `batch_size` instead of many calls of one or two events each (1 to 64).
    pub decisions_in_flight: u16,
    /// Threads of the worker's async runtime (1 to 64). One thread does a worker's share of the
    /// work (decoding, publishing and acknowledging cost it about 40 µs of CPU per event, and
    /// its Redis calls are taken one after another by default), and leaves every other core to
    /// Redis and RabbitMQ when they share the machine: on a 2-core host a second runtime thread
    /// doubled the worker's latency tail at 2,000 events/s (see the README's Performance).
    /// More threads help only a worker whose own CPU is the bottleneck; more workers scale
    /// further, since they share nothing.
    pub worker_threads: u16,
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
    /// What this worker writes in Redis: layout 1, what every release reads, or layout 2 (from
    /// this release on): records as MessagePack, and each agent's load in a key of its own,
    /// into which a project's loads move on its first call. Both are read whatever this says.
    pub store_layout: u8,
}

/// What a worker writes in Redis (`SWITCHBOARD_STORE_LAYOUT`). A worker reads both layouts
/// whatever it writes, so workers of this release with either share a Redis; an earlier
/// release reads layout 1 only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StoreLayout {
    /// Layout 1: records as JSON, every agent's load in one sorted set (`owned`).
    #[default]
    Original,
    /// Layout 2: records as MessagePack (a third smaller), and each agent's load in a sorted
    /// set of its own (`owned:<agent>`, a few bytes per conversation where `owned` costs 104).
    /// A project's loads move there on its first call by such a worker, once for all.
    Compact,
}

impl StoreLayout {
    /// The layout's number, as the setting and the library spell it.
    pub fn number(self) -> u8 {
        match self {
            StoreLayout::Original => 1,
            StoreLayout::Compact => 2,
        }
    }

    /// The layout a number names.
    pub fn from_number(number: u8) -> Option<StoreLayout> {
        [StoreLayout::Original, StoreLayout::Compact]
            .into_iter()
            .find(|layout| layout.number() == number)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            http_addr: "127.0.0.1:9464".into(),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            redis_wait_replicas: 0,
            redis_wait_timeout_ms: 1000,
            redis_connections: 1,
            inbound_exchange: names::INBOUND_EXCHANGE.into(),
            work_queue: names::WORK_QUEUE.into(),
            outbound_exchange: names::OUTBOUND_EXCHANGE.into(),
            dead_letter_queue: names::DEAD_LETTER_QUEUE.into(),
            prefetch: 64,
            batch_size: 16,
            decisions_in_flight: 1,
            worker_threads: 1,
            delivery_limit: 20,
            dedupe_ttl_seconds: 7 * 24 * 3600,
            closed_retention_seconds: 7 * 24 * 3600,
            log_format: "text".into(),
            store_layout: StoreLayout::Original.number(),
        }
    }
}

impl Config {
    /// Reads the layers: defaults, then `file` (if given), then `SWITCHBOARD_*` variables; then
    /// checks every setting that can be checked before connecting, TLS files included.
    pub fn load(file: Option<&std::path::Path>) -> Result<Config, SettingError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        // SWITCHBOARD_CONFIG names the file (the command line reads it); it is not a setting.
        let variables = std::env::vars()
            .filter(|(name, _)| name != "SWITCHBOARD_CONFIG")
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("SWITCHBOARD")
                .prefix_separator("_")
                .try_parsing(true)
                .source(Some(variables)),
        );
        let config: Config = builder
            .build()
            .and_then(|layers| layers.try_deserialize())
            .map_err(|error| checks::layer_error(error, file))?;
        config.validate()?;
        config.tls_files().load()?;
        Ok(config)
    }

    /// Checks what can be checked without I/O.
    pub fn validate(&self) -> Result<(), SettingError> {
        let ensure = |ok: bool, field: &str, problem: &str| {
            if ok {
                Ok(())
            } else {
                Err(SettingError::new(field, problem))
            }
        };
        ensure(self.prefetch > 0, "prefetch", "must be at least 1")?;
        // The apply function reads a batch's records with one MGET of its keys, and Lua unpacks
        // at most a few thousand values; a batch never holds more than batch_size events.
        ensure(
            (1..=1000).contains(&self.batch_size),
            "batch_size",
            "must be between 1 and 1000",
        )?;
        ensure(
            (1..=64).contains(&self.decisions_in_flight),
            "decisions_in_flight",
            "must be between 1 and 64",
        )?;
        ensure(
            (1..=64).contains(&self.worker_threads),
            "worker_threads",
            "must be between 1 and 64",
        )?;
        ensure(
            self.delivery_limit > 0,
            "delivery_limit",
            "must be at least 1",
        )?;
        ensure(
            matches!(self.log_format.as_str(), "text" | "json"),
            "log_format",
            "must be `text` or `json`",
        )?;
        ensure(
            StoreLayout::from_number(self.store_layout).is_some(),
            "store_layout",
            "must be 1 or 2",
        )?;
        for (field, name) in [
            ("inbound_exchange", &self.inbound_exchange),
            ("work_queue", &self.work_queue),
            ("outbound_exchange", &self.outbound_exchange),
            ("dead_letter_queue", &self.dead_letter_queue),
        ] {
            ensure(
                !name.is_empty() && name.len() <= 255,
                field,
                "exchange and queue names must be 1-255 bytes",
            )?;
        }
        ensure(
            self.redis_wait_replicas == 0 || self.redis_wait_timeout_ms > 0,
            "redis_wait_timeout_ms",
            "must be at least 1 when SWITCHBOARD_REDIS_WAIT_REPLICAS is set",
        )?;
        ensure(
            (1..=64).contains(&self.redis_connections),
            "redis_connections",
            "must be between 1 and 64",
        )?;
        checks::check_amqp_url(&self.amqp_url)?;
        checks::check_redis_urls(&self.redis_url)?;
        checks::check_http_addr(&self.http_addr)?;
        Ok(())
    }

    /// The TLS material the settings name (read and checked by
    /// [`TlsFiles::load`](tls::TlsFiles::load)).
    pub fn tls_files(&self) -> tls::TlsFiles {
        tls::TlsFiles {
            ca_file: self.tls_ca_file.clone(),
            cert_file: self.tls_cert_file.clone(),
            key_file: self.tls_key_file.clone(),
        }
    }

    /// The Redis node URLs: one for a single node, several for a cluster.
    pub fn redis_nodes(&self) -> Vec<String> {
        self.redis_url
            .nodes()
            .into_iter()
            .map(String::from)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_printed_configuration_shows_no_password() {
        let config = Config {
            amqp_url: "amqps://sb:amqp-pw@mq:5671/prod".into(),
            redis_url: "rediss://sb:redis-pw@a:6380,rediss://sb:redis-pw@b:6380".into(),
            ..Config::default()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("-pw"), "{printed}");
        assert!(printed.contains("rediss://sb:***@b:6380"), "{printed}");
    }

    #[test]
    fn a_setting_error_names_the_variable() {
        let error = SettingError::new("tls_ca_file", "cannot read /x: gone");
        assert_eq!(
            error.to_string(),
            "SWITCHBOARD_TLS_CA_FILE: cannot read /x: gone"
        );
    }

    /// `validate` accepts `set(value)` exactly for the values marked valid.
    fn assert_bounds<T: Copy + std::fmt::Display>(
        field: &str,
        cases: [(T, bool); 4],
        set: impl Fn(T) -> Config,
    ) {
        for (value, valid) in cases {
            assert_eq!(set(value).validate().is_ok(), valid, "{field} {value}");
        }
    }

    #[test]
    fn batch_size_is_bounded() {
        let cases = [(0, false), (1, true), (1000, true), (1001, false)];
        assert_bounds("batch_size", cases, |batch_size| Config {
            batch_size,
            ..Config::default()
        });
    }

    #[test]
    fn decisions_in_flight_are_bounded() {
        let cases = [(0, false), (1, true), (64, true), (65, false)];
        assert_bounds("decisions_in_flight", cases, |decisions_in_flight| Config {
            decisions_in_flight,
            ..Config::default()
        });
    }

    #[test]
    fn worker_threads_are_bounded() {
        let cases = [(0, false), (1, true), (64, true), (65, false)];
        assert_bounds("worker_threads", cases, |worker_threads| Config {
            worker_threads,
            ..Config::default()
        });
        assert_eq!(Config::default().worker_threads, 1);
    }

    #[test]
    fn redis_connections_are_bounded() {
        let cases = [(0, false), (1, true), (64, true), (65, false)];
        assert_bounds("redis_connections", cases, |redis_connections| Config {
            redis_connections,
            ..Config::default()
        });
    }

    #[test]
    fn store_layout_is_1_or_2() {
        let cases = [(0, false), (1, true), (2, true), (3, false)];
        assert_bounds("store_layout", cases, |store_layout| Config {
            store_layout,
            ..Config::default()
        });
        assert_eq!(Config::default().store_layout, 1);
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
