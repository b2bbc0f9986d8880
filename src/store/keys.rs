//! Redis key names.
//!
//! Every key of a project starts with `sb:{<project>}:`. The braces are Redis Cluster's hash
//! tag: all of a project's keys live on one slot, so one script call can read and change all of
//! them atomically. Project ids are validated identifiers (no braces), so no project can reach
//! into another's tag.

use super::interface::{project_key_named, AGENT_LOAD_KEY_PREFIX, DECLARED_KEYS};
use crate::contract::Id;

/// The prefix of every key of `project`.
pub fn project_prefix(project: &Id) -> String {
    format!("sb:{{{project}}}:")
}

/// A project key by its name in [`PROJECT_KEYS`] (`"convs"`, `"by_load"`…). The generation keys
/// of event records have no fixed name: see [`events_key`].
pub fn project_key(project: &Id, name: &str) -> String {
    let suffix = project_key_named(name).suffix;
    assert!(!suffix.contains('<'), "{name} has no fixed key name");
    format!("{}{suffix}", project_prefix(project))
}

/// One agent's load in store layout 2: the conversations that count in it (see load.lua). Its
/// name is built inside the library too, from the project's prefix, so it shares the project's
/// slot; agent ids are validated identifiers, which hold no braces.
pub fn agent_load_key(project: &Id, agent: &str) -> String {
    format!("{}{AGENT_LOAD_KEY_PREFIX}{agent}", project_prefix(project))
}

/// Bucket `n` of a hash the library spreads over buckets (see buckets.lua): the project key
/// `name`, ':' and `n`.
pub fn bucket_key(project: &Id, name: &str, n: u64) -> String {
    format!("{}:{n}", project_key(project, name))
}

/// The hash of one generation of event records.
pub fn events_key(project: &Id, generation: u64) -> String {
    format!("{}events:{generation}", project_prefix(project))
}

/// The record an earlier release kept for one event (a string key per event, the outputs
/// JSON). Redeliveries of events applied before an upgrade are replayed from it.
pub fn legacy_event_key(project: &Id, event_id: &str) -> String {
    let digest = sha1_smol::Sha1::from(event_id.as_bytes())
        .digest()
        .to_string();
    format!("{}event:{digest}", project_prefix(project))
}

/// The field an event is recorded under in its generation's hash, and the digest the versions
/// of things keep: 14 characters of base64url (84 bits) of the SHA-1 of its id. Short enough
/// for Redis to store in 16 bytes, long enough that two ids of one project never meet.
pub fn event_digest(event_id: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = sha1_smol::Sha1::from(event_id.as_bytes()).digest().bytes();
    let mut bits = u128::from_be_bytes(bytes[..16].try_into().expect("SHA-1 has 20 bytes"));
    let mut digest = String::with_capacity(14);
    for _ in 0..14 {
        digest.push(ALPHABET[(bits >> 122) as usize] as char);
        bits <<= 6;
    }
    digest
}

/// KEYS of the `apply` function for a batch of events of `project` in `generation`: the
/// declared project keys, then the legacy records of the redelivered events among them.
pub fn apply_keys<'a>(
    project: &Id,
    generation: u64,
    legacy_event_ids: impl ExactSizeIterator<Item = &'a str>,
) -> Vec<String> {
    let mut keys = Vec::with_capacity(DECLARED_KEYS.len() + legacy_event_ids.len());
    let previous = generation.saturating_sub(1);
    keys.extend(DECLARED_KEYS.iter().map(|name| match *name {
        "events" => events_key(project, generation),
        "previous_events" => events_key(project, previous),
        _ => project_key(project, name),
    }));
    keys.extend(legacy_event_ids.map(|id| legacy_event_key(project, id)));
    keys
}

#[cfg(test)]
mod tests {
    use super::super::interface::declared_position;
    use super::*;

    #[test]
    fn every_key_carries_the_project_hash_tag() {
        let project = Id::parse("acme").unwrap();
        let keys = apply_keys(&project, 7, ["weird id {other}", "e2"].into_iter());
        assert_eq!(keys.len(), DECLARED_KEYS.len() + 2);
        assert_eq!(keys[0], "sb:{acme}:settings");
        assert_eq!(keys[declared_position("events") - 1], "sb:{acme}:events:7");
        assert_eq!(
            keys[declared_position("previous_events") - 1],
            "sb:{acme}:events:6"
        );
        assert_eq!(
            keys[DECLARED_KEYS.len() + 1],
            legacy_event_key(&project, "e2")
        );
        assert_eq!(event_digest("e1"), event_digest("e1"));
        assert_ne!(event_digest("e1"), event_digest("e2"));
        assert_eq!(event_digest("e1").len(), 14);
        assert!(event_digest("e1")
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        for key in &keys {
            assert!(key.starts_with("sb:{acme}:"), "{key}");
            assert_eq!(key.matches('{').count(), 1, "{key}");
        }
    }
}
