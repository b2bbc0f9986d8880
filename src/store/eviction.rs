//! How Redis makes room when it is full (`maxmemory-policy`), read from `INFO memory`.
//!
//! Everything Switchboard keeps must stay until it deletes it: an agent's load is the count of
//! its members of a set, a conversation's record says who holds it, and an event's record is
//! what makes its redelivery harmless. Under any policy but `noeviction`, a Redis at its
//! `maxmemory` deletes keys to make room (under the `volatile-*` ones, keys with an expiry, which
//! the events' records have), and an agent can then be given more than its capacity, or an
//! event decided twice, without an error anywhere. Some managed services set such a policy by
//! default. `INFO` is read rather than `CONFIG GET`, which managed services often disable.

use redis::Value;

/// The policy under which Redis never deletes a key to make room: a full Redis refuses writes
/// instead (`OOM`), which the worker holds and retries as an outage.
pub const SAFE_POLICY: &str = "noeviction";

/// Every `maxmemory_policy` an `INFO` reply names: one per node (a cluster's reply holds each
/// node's), in the order given.
pub fn policies_in(info: &Value) -> Vec<String> {
    let mut policies = Vec::new();
    collect(info, &mut policies);
    policies
}

fn collect(value: &Value, policies: &mut Vec<String>) {
    match value {
        Value::BulkString(bytes) => read_text(&String::from_utf8_lossy(bytes), policies),
        Value::SimpleString(text) => read_text(text, policies),
        Value::VerbatimString { text, .. } => read_text(text, policies),
        Value::Array(values) | Value::Set(values) => {
            values.iter().for_each(|v| collect(v, policies))
        }
        Value::Map(pairs) => pairs.iter().for_each(|(_, v)| collect(v, policies)),
        _ => {}
    }
}

fn read_text(text: &str, policies: &mut Vec<String>) {
    for line in text.lines() {
        if let Some(policy) = line.trim().strip_prefix("maxmemory_policy:") {
            policies.push(policy.trim().to_string());
        }
    }
}

/// Whether any of these policies lets Redis delete keys to make room.
pub fn evicts(policies: &[String]) -> bool {
    policies.iter().any(|policy| policy != SAFE_POLICY)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Memory\r\nused_memory:1000\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\nallocator_frag_ratio:1.0\r\n";

    #[test]
    fn one_node_names_its_policy() {
        let info = Value::BulkString(INFO.as_bytes().to_vec());
        assert_eq!(policies_in(&info), ["noeviction"]);
        assert!(!evicts(&policies_in(&info)));
    }

    #[test]
    fn a_cluster_names_each_node_and_one_evicting_node_is_enough() {
        let node =
            |policy: &str| Value::BulkString(INFO.replace("noeviction", policy).into_bytes());
        let info = Value::Map(vec![
            (
                Value::SimpleString("127.0.0.1:7001".into()),
                node("noeviction"),
            ),
            (
                Value::SimpleString("127.0.0.1:7002".into()),
                node("volatile-lru"),
            ),
        ]);
        let policies = policies_in(&info);
        assert_eq!(policies, ["noeviction", "volatile-lru"]);
        assert!(evicts(&policies));
    }

    #[test]
    fn a_reply_without_the_field_names_none() {
        let info = Value::SimpleString("# Memory\r\nused_memory:1\r\n".into());
        assert!(policies_in(&info).is_empty());
        assert!(!evicts(&[]));
    }
}
