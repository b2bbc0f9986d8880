//! The worker's Redis: connecting (a cluster eagerly, a single node lazily) and keeping
//! `/readyz` honest about it while no event flows. Also how a lost or refusing dependency is
//! retried and reported, which the consumer loop shares.

use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::store::{eviction, Store, StoreOptions};
use crate::telemetry::{
    ConnectionRefused, Reconnecting, RedisEvictionPolicy, RedisEvictionPolicyUnread,
};
use crate::worker::Worker;

/// How long to wait before connecting again, and what to say: an outage is retried briefly
/// with a warning, a refusal (credentials, permissions, certificates) slowly, at error level,
/// since it does not heal by itself.
pub struct Reconnection {
    target: &'static str,
    outage: Backoff,
    refusal: Backoff,
}

impl Reconnection {
    pub fn new(target: &'static str) -> Reconnection {
        Reconnection {
            target,
            outage: Backoff::outage(),
            refusal: Backoff::refusal(),
        }
    }

    /// An attempt failed: says so and returns how long to wait.
    pub fn failed(&mut self, error: &dyn std::fmt::Display, refused: bool) -> Duration {
        if refused {
            let retry_in = self.refusal.delay();
            ConnectionRefused {
                target: self.target,
                error,
                retry_in,
            }
            .emit();
            retry_in
        } else {
            let retry_in = self.outage.delay();
            Reconnecting {
                target: self.target,
                error,
                retry_in,
            }
            .emit();
            retry_in
        }
    }

    /// The next wait after an outage, without counting a failure (a session that broke).
    pub fn next_outage_delay(&self) -> Duration {
        self.outage.peek()
    }

    pub fn succeeded(&mut self) {
        self.outage.reset();
        self.refusal.reset();
    }
}

/// Connects to Redis, retrying until it answers (a cluster is connected eagerly; a single
/// node lazily, so a worker started while Redis is down starts and reports not ready).
pub async fn connect(config: &Config, options: StoreOptions) -> Store {
    let nodes = config.redis_nodes();
    let mut reconnection = Reconnection::new("redis");
    loop {
        match Store::connect(&nodes, options.clone()).await {
            Ok(store) => return store,
            Err(error) => {
                let refusal = error.refusal();
                let shown: &dyn std::fmt::Display = match &refusal {
                    Some(why) => why,
                    None => &error,
                };
                let wait = reconnection.failed(shown, refusal.is_some());
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// How often Redis is probed while it takes calls, and while it does not.
const PROBE_EVERY: Duration = Duration::from_secs(5);
const PROBE_AGAIN: Duration = Duration::from_secs(1);

/// What the watch last learnt of Redis's eviction policy, said again only when it changes.
#[derive(PartialEq)]
enum EvictionPolicies {
    /// Each node's `maxmemory-policy`.
    Read(Vec<String>),
    /// `INFO` refused to this worker's user (an ACL without it): the policy is unknown.
    Refused,
}

/// Reads Redis's eviction policies and says what changed since `last` (see
/// [`RedisEvictionPolicy`] and [`RedisEvictionPolicyUnread`]). A passing failure (the
/// connection dropped after the probe) says nothing and leaves `last`: the next probe reads
/// again.
async fn read_eviction_policies(store: &Store, last: &mut Option<EvictionPolicies>) {
    let (now, refusal) = match store.eviction_policies().await {
        Ok(read) => (EvictionPolicies::Read(read), None),
        Err(error) if error.is_refusal() => (EvictionPolicies::Refused, error.refusal()),
        Err(_) => return,
    };
    if last.as_ref() == Some(&now) {
        return;
    }
    match &now {
        EvictionPolicies::Read(read) => RedisEvictionPolicy {
            policies: read,
            evicts: eviction::evicts(read),
        }
        .emit(),
        EvictionPolicies::Refused => RedisEvictionPolicyUnread {
            error: &refusal.unwrap_or_default(),
        }
        .emit(),
    }
    *last = Some(now);
}

/// Keeps `/readyz` honest about Redis while no event is flowing, says at error level, at a
/// slowing pace, when Redis refuses this worker (credentials, ACL, certificates), and whenever
/// Redis's eviction policy changes to one that can delete what Switchboard keeps (or, once,
/// when Redis does not let this worker read it). Asks
/// whether Redis would start a call of the library (`Store::probe`), not whether it answers:
/// a master refusing writes (out of memory, short of replicas) still answers PING, and readiness
/// would flap between this watch saying ready and each held event saying not.
pub async fn watch(worker: Arc<Worker>) {
    let mut reconnection = Reconnection::new("redis");
    let mut policies: Option<EvictionPolicies> = None;
    loop {
        let probed = worker.store.probe().await;
        worker.readiness.set_redis(probed.is_ok());
        let pause = match probed {
            Ok(()) => {
                reconnection.succeeded();
                read_eviction_policies(&worker.store, &mut policies).await;
                PROBE_EVERY
            }
            Err(error) if error.is_refusal() => {
                let why = error.refusal().unwrap_or_default();
                reconnection.failed(&why, true)
            }
            Err(_) => PROBE_AGAIN,
        };
        if !Backoff::wait(pause, &worker.shutdown).await {
            return;
        }
    }
}
