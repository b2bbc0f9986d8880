//! Redis key names.
//!
//! Every key of a project starts with `sb:{<project>}:`. The braces are Redis Cluster's hash
//! tag: all of a project's keys live on one slot, so one script call can read and change all of
//! them atomically. Project ids are validated identifiers (no braces), so no project can reach
//! into another's tag.

use crate::contract::Id;

/// The keys of the `apply` function, in the order its KEYS list expects (see `prelude.lua`).
pub const APPLY_KEY_NAMES: &[&str] = &[
    "settings",
    "agents",
    "status",
    "convs",
    "owned",
    "waiting",
    "pool:load",
    "pool:order",
    "pool:pass:1001",
    "meta",
    "closed",
    "passes",
    "visitors",
    "visitor_seen",
    "held",
    "offers",
    "online",
    "base_waiting",
    "pools",
    "memberships",
    "daily",
];

/// The prefix of every key of `project`.
pub fn project_prefix(project: &Id) -> String {
    format!("sb:{{{project}}}:")
}

/// A project key by its name in [`APPLY_KEY_NAMES`].
pub fn project_key(project: &Id, name: &str) -> String {
    format!("{}{name}", project_prefix(project))
}

/// The dedupe record of one inbound event. The event id is free text, so it is hashed rather
/// than put in the key name as it is.
pub fn event_key(project: &Id, event_id: &str) -> String {
    let digest = sha1_smol::Sha1::from(event_id.as_bytes())
        .digest()
        .to_string();
    format!("{}event:{digest}", project_prefix(project))
}

/// KEYS of the `apply` function for a batch of events of `project`: the project's keys, then
/// each event's record key, in order. Built on every batch, so without `format!` (profiling
/// showed it at a tenth of a worker's CPU).
pub fn apply_keys<'a>(
    project: &Id,
    event_ids: impl ExactSizeIterator<Item = &'a str>,
) -> Vec<String> {
    let prefix = project_prefix(project);
    let mut keys = Vec::with_capacity(APPLY_KEY_NAMES.len() + event_ids.len());
    keys.extend(APPLY_KEY_NAMES.iter().map(|name| {
        let mut key = String::with_capacity(prefix.len() + name.len());
        key.push_str(&prefix);
        key.push_str(name);
        key
    }));
    keys.extend(event_ids.map(|id| event_key(project, id)));
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_project_hash_tag() {
        let project = Id::parse("acme").unwrap();
        let keys = apply_keys(&project, ["weird id {other}", "e2"].into_iter());
        assert_eq!(keys.len(), APPLY_KEY_NAMES.len() + 2);
        assert_eq!(keys[0], project_key(&project, APPLY_KEY_NAMES[0]));
        assert_eq!(keys[APPLY_KEY_NAMES.len() + 1], event_key(&project, "e2"));
        for key in &keys {
            assert!(key.starts_with("sb:{acme}:"), "{key}");
            assert_eq!(key.matches('{').count(), 1, "{key}");
        }
    }
}
