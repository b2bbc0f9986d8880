//! The `apply` script, assembled from its parts at compile time.
//!
//! Redis scripts cannot share code, so the parts (each headed by the KEYS and ARGV it uses) are
//! concatenated into one script: one EVALSHA per event does dedupe, decision and record.

/// The whole `apply` script.
pub const APPLY: &str = concat!(
    include_str!("scripts/prelude.lua"),
    include_str!("scripts/agents.lua"),
    include_str!("scripts/conversations.lua"),
    include_str!("scripts/modes.lua"),
    include_str!("scripts/handlers.lua"),
    include_str!("scripts/apply.lua"),
);
