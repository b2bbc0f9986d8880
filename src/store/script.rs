//! The `apply` script, assembled from its parts.
//!
//! Redis scripts cannot share code, so the parts (each headed by the KEYS and ARGV it uses) are
//! concatenated into one script: one EVALSHA per event does dedupe, decision and record. The
//! settings defaults are written into it from `domain::settings::defaults()`, their one source.

use std::sync::LazyLock;

use serde_json::Value;

const PARTS: &str = concat!(
    include_str!("scripts/prelude.lua"),
    include_str!("scripts/agents.lua"),
    include_str!("scripts/pools.lua"),
    include_str!("scripts/routing.lua"),
    include_str!("scripts/conversations.lua"),
    include_str!("scripts/modes.lua"),
    include_str!("scripts/handlers.lua"),
    include_str!("scripts/apply.lua"),
);

const DEFAULTS_SLOT: &str = "local DEFAULT_SETTINGS = {}";

/// The whole `apply` script.
pub static APPLY: LazyLock<String> = LazyLock::new(|| {
    assert!(
        PARTS.contains(DEFAULTS_SLOT),
        "prelude.lua declares DEFAULT_SETTINGS"
    );
    let table = lua_table(&crate::domain::settings::defaults());
    PARTS.replacen(
        DEFAULTS_SLOT,
        &format!("local DEFAULT_SETTINGS = {table}"),
        1,
    )
});

/// A Lua table literal of flat JSON settings (strings, booleans, numbers; lists become empty
/// tables, which is what an absent list means to the script).
fn lua_table(settings: &serde_json::Map<String, Value>) -> String {
    let fields: Vec<String> = settings
        .iter()
        .map(|(key, value)| {
            let literal = match value {
                Value::String(s) => format!("{s:?}"),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => "{}".to_string(),
            };
            format!("{key} = {literal}")
        })
        .collect();
    format!("{{ {} }}", fields.join(", "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_defaults_are_written_into_the_script() {
        assert!(super::APPLY.contains("mode = \"auto\""));
        assert!(super::APPLY.contains("visitor_memory_days = 30"));
        assert!(!super::APPLY.contains(super::DEFAULTS_SLOT));
    }
}
