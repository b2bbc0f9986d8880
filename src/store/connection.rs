//! Building the Redis connection: one node or a cluster, plain or TLS (`rediss://`, trusting the
//! system's roots plus `SWITCHBOARD_TLS_CA_FILE`, with an optional client certificate), an ACL
//! user from the URL; telling a refusal (credentials, permissions, certificates) from an
//! outage; and waiting for replicas after a call, so that a failover cannot take back a
//! decision already published.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{ErrorKind, RedisError, ServerErrorKind};

use super::{keys, Connection, Store, StoreError};
use crate::config::tls::TlsFiles;
use crate::contract::Id;

/// Redis error codes that mean "not with these credentials or permissions".
const REFUSAL_CODES: [&str; 3] = ["WRONGPASS", "NOAUTH", "NOPERM"];

/// How every connection to Redis is set up at the TCP level. Without a reset from the other
/// side (a NAT or load balancer that forgot the connection, a node gone from the network) the
/// kernel retransmits a request for about 15 minutes before it gives the connection up, and
/// until then every call on it times out and is retried on it: the worker's work stalls,
/// though a new connection would go through. With `TCP_USER_TIMEOUT` the kernel gives up on
/// data Redis has not acknowledged within 10 s (Redis's kernel acknowledges a request at once,
/// however long the call runs), and keepalive probes find a dead idle connection the same way;
/// the connection is then dropped and the next call opens a new one. `TCP_NODELAY` sends a
/// call's last bytes at once instead of holding them for an acknowledgement: a batch's call
/// spans several packets on a real network.
fn tcp_settings() -> redis::io::tcp::TcpSettings {
    use redis::io::tcp::{socket2::TcpKeepalive, TcpSettings};
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5));
    TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
        .set_user_timeout(DEAD_CONNECTION_TIMEOUT)
}

/// How long Redis may leave what a worker sent unacknowledged before the connection is given
/// up (see `tcp_settings`).
const DEAD_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to one node (lazily: a worker starts, not ready, while Redis is down), or to the
/// cluster the node URLs belong to.
pub(super) async fn open(nodes: &[&str], tls: &TlsFiles) -> Result<Connection, StoreError> {
    let certificates = if nodes.iter().any(|node| node.starts_with("rediss://")) {
        Some(tls.load()?.redis()?)
    } else {
        None
    };
    match nodes {
        [] => Err(StoreError::Reply("no Redis URL configured".into())),
        [url] => {
            let info = redis::IntoConnectionInfo::into_connection_info(*url)
                .map_err(StoreError::Script)?
                .set_tcp_settings(tcp_settings());
            let client = match certificates {
                Some(certificates) => redis::Client::build_with_tls(info, certificates),
                None => redis::Client::open(info),
            }
            .map_err(StoreError::Script)?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(5)))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_secs(2));
            Ok(Connection::Single(ConnectionManager::new_lazy_with_config(
                client, config,
            )?))
        }
        urls => {
            let mut builder = redis::cluster::ClusterClient::builder(urls.to_vec())
                .connection_timeout(Duration::from_secs(2))
                .response_timeout(Duration::from_secs(5))
                .tcp_settings(tcp_settings());
            if let Some(certificates) = certificates {
                builder = builder.certs(certificates);
            }
            let client = builder.build().map_err(StoreError::Script)?;
            Ok(Connection::Cluster(client.get_async_connection().await?))
        }
    }
}

impl Connection {
    /// Runs `cmd` (called `name` in an error) on the node that holds `project`'s keys: the
    /// only one, or in a cluster the master of its hash tag's slot, named explicitly, since
    /// the commands sent this way (`WAIT`, `SCAN`) name no key a cluster could route them by.
    pub(super) async fn on_project_node<T: redis::FromRedisValue>(
        &self,
        project: &Id,
        cmd: &redis::Cmd,
        name: &str,
    ) -> Result<T, StoreError> {
        match self {
            Connection::Single(connection) => Ok(cmd.query_async(&mut connection.clone()).await?),
            Connection::Cluster(connection) => {
                let route = Route::with_key(keys::project_prefix(project), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let reply = connection
                    .clone()
                    .route_command(cmd.clone(), routing)
                    .await?;
                redis::from_redis_value(reply)
                    .map_err(|error| StoreError::Reply(format!("{name} answered {error}")))
            }
        }
    }
}

impl Store {
    /// Waits until `SWITCHBOARD_REDIS_WAIT_REPLICAS` replicas of the node that holds `project`
    /// have every write this worker sent it so far (`WAIT`), at most
    /// `SWITCHBOARD_REDIS_WAIT_TIMEOUT_MS`. Called after each store call, before its outputs
    /// are published: with asynchronous replication, a master that fails before replicating
    /// takes its last writes with it, and the promoted replica would not know decisions the
    /// platforms were already told. Fewer replicas in time is an outage: the events are
    /// retried, and replayed from their records rather than decided again.
    ///
    /// `WAIT` covers the writes of the connection it is sent on. A cluster keeps one
    /// connection per node, so it goes to the project's master explicitly (the slot of its hash
    /// tag), the node and connection its call went to. With several connections
    /// (`SWITCHBOARD_REDIS_CONNECTIONS`) it goes on each.
    pub async fn wait_for_replicas(&self, project: &Id) -> Result<(), StoreError> {
        let wanted = u64::from(self.options.wait_replicas);
        if wanted == 0 {
            return Ok(());
        }
        let timeout_ms = self.options.wait_timeout.as_millis() as u64;
        let mut wait = redis::cmd("WAIT");
        wait.arg(wanted).arg(timeout_ms);
        // A call went on one of the connections: each `WAIT` covers its own connection's
        // writes, so every connection waits (one with no new writes answers at once).
        let waits = self
            .connections
            .iter()
            .map(|connection| connection.on_project_node::<u64>(project, &wait, "WAIT"));
        // However `WAIT` fails, the event is not at fault: it is an outage, and the events are
        // held and retried. Besides `UNBLOCKED` (see `REFUSED_WRITE_CODES`), a node demoted just
        // before it answers a plain `ERR WAIT cannot be used with replica instances`.
        let confirmed = futures_util::future::try_join_all(waits)
            .await
            .map_err(StoreError::into_unavailable)?
            .into_iter()
            .min()
            .unwrap_or(0);
        if confirmed < wanted {
            return Err(StoreError::Unavailable(RedisError::from((
                ErrorKind::Server(ServerErrorKind::TryAgain),
                "not replicated in time",
                format!(
                    "{confirmed} of {wanted} replicas confirmed the writes within {timeout_ms} ms (SWITCHBOARD_REDIS_WAIT_REPLICAS)"
                ),
            ))));
        }
        Ok(())
    }
}

impl StoreError {
    /// What was refused, said plainly, when retrying cannot help until someone changes
    /// credentials, ACL permissions or certificates: the worker keeps the events, retries
    /// slowly and says so at error level. `None` for an outage or any other failure.
    pub fn refusal(&self) -> Option<String> {
        let error = match self {
            StoreError::Settings(error) => return Some(error.to_string()),
            StoreError::Unavailable(error) | StoreError::Script(error) => error,
            _ => return None,
        };
        if let Some(why) = crate::config::tls::refusal(error) {
            return Some(format!("TLS with Redis: {why}"));
        }
        let code = error.code().unwrap_or_default();
        if matches!(error.kind(), ErrorKind::Server(ServerErrorKind::NoPerm)) || code == "NOPERM" {
            return Some(format!(
                "the Redis ACL user of SWITCHBOARD_REDIS_URL may not run what the worker needs: {error}"
            ));
        }
        if matches!(error.kind(), ErrorKind::AuthenticationFailed) || REFUSAL_CODES.contains(&code)
        {
            return Some(format!(
                "Redis refused the user and password of SWITCHBOARD_REDIS_URL: {error}"
            ));
        }
        None
    }

    pub fn is_refusal(&self) -> bool {
        self.refusal().is_some()
    }
}

/// Authentication or permission refused, or a TLS certificate refused either way.
pub(super) fn is_refusal(error: &RedisError) -> bool {
    StoreError::Unavailable(error.clone()).is_refusal()
}
