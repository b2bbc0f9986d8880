//! The `switchboard` Redis function library, assembled from its parts: the interface tables
//! generated from `interface.rs`, then the `.lua` files.
//!
//! Redis code cannot import code, so the parts (each headed by the KEYS and ARGV it uses) are
//! concatenated into one library. It is loaded once per Redis node (`FUNCTION LOAD`) and each
//! event is one `FCALL` of its `apply` function, which does dedupe, decision and record. A
//! library runs its top level (defining some hundred local functions) only when loaded, where
//! EVALSHA of the same code would run it on every call: about 25 µs per event on our machine.
//!
//! The settings defaults are written into it from `domain::settings::defaults()`, their one
//! source. The library and function names carry a digest of the code, so workers of two
//! versions (a rolling deploy) each call their own code, side by side in one Redis.

use std::sync::LazyLock;

use serde_json::Value;

const PARTS: &str = concat!(
    "-- INTERFACE\n",
    include_str!("scripts/standard.lua"),
    include_str!("scripts/modules.lua"),
    include_str!("scripts/core.lua"),
    include_str!("scripts/call.lua"),
    include_str!("scripts/order.lua"),
    include_str!("scripts/meta.lua"),
    include_str!("scripts/buckets.lua"),
    include_str!("scripts/agents.lua"),
    include_str!("scripts/load.lua"),
    include_str!("scripts/pools.lua"),
    include_str!("scripts/routing.lua"),
    include_str!("scripts/records.lua"),
    include_str!("scripts/visitors.lua"),
    include_str!("scripts/queues.lua"),
    include_str!("scripts/activity.lua"),
    include_str!("scripts/conversations.lua"),
    include_str!("scripts/modes.lua"),
    include_str!("scripts/presence.lua"),
    include_str!("scripts/handlers_agents.lua"),
    include_str!("scripts/handlers_conversations.lua"),
    include_str!("scripts/apply.lua"),
    include_str!("scripts/explain.lua"),
);

const INTERFACE_SLOT: &str = "-- INTERFACE\n";
const DEFAULTS_SLOT: &str = "local DEFAULT_SETTINGS = {}";

/// The library's functions, by the word in their names. The code names each in a slot,
/// `local <WORD>_FUNCTION_NAME = 'switchboard_<word>'`, which the build fills with the versioned
/// name, `switchboard_<word>_<version>`.
const FUNCTIONS: [&str; 4] = ["apply", "confirm", "explain", "probe"];

/// The line of the code that names the function `word` `name`.
fn name_slot(word: &str, name: &str) -> String {
    format!("local {}_FUNCTION_NAME = '{name}'", word.to_uppercase())
}

/// The assembled library: what `FUNCTION LOAD` gets, and the names `FCALL` calls.
pub struct Library {
    /// `#!lua name=switchboard_<version>` and the code.
    pub code: String,
    /// The library's name, `switchboard_<version>`.
    pub name: String,
    /// The `apply` function's name, `switchboard_apply_<version>`.
    pub apply_function: String,
    /// The `confirm` function's name, `switchboard_confirm_<version>`.
    pub confirm_function: String,
    /// The `explain` function's name, `switchboard_explain_<version>`.
    pub explain_function: String,
    /// The `probe` function's name, `switchboard_probe_<version>`.
    pub probe_function: String,
}

/// The library of this build.
pub static LIBRARY: LazyLock<Library> = LazyLock::new(|| {
    assert!(
        PARTS.contains(DEFAULTS_SLOT),
        "call.lua declares DEFAULT_SETTINGS"
    );
    let table = lua_table(&crate::domain::settings::defaults());
    let body = PARTS
        .replacen(INTERFACE_SLOT, &super::interface::lua_binding(), 1)
        .replacen(
            DEFAULTS_SLOT,
            &format!("local DEFAULT_SETTINGS = {table}"),
            1,
        );
    let digest = sha1_smol::Sha1::from(body.as_bytes()).digest().to_string();
    let version = &digest[..16];
    let name = format!("switchboard_{version}");
    let versioned = |word: &str| format!("switchboard_{word}_{version}");
    let mut body = body;
    for word in FUNCTIONS {
        let slot = name_slot(word, &format!("switchboard_{word}"));
        assert!(body.contains(&slot), "the library declares {slot}");
        body = body.replacen(&slot, &name_slot(word, &versioned(word)), 1);
    }
    Library {
        code: format!("#!lua name={name}\n{body}"),
        name,
        apply_function: versioned("apply"),
        confirm_function: versioned("confirm"),
        explain_function: versioned("explain"),
        probe_function: versioned("probe"),
    }
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
    use super::*;

    #[test]
    fn the_defaults_are_written_into_the_library() {
        assert!(LIBRARY.code.contains("mode = \"auto\""));
        assert!(LIBRARY.code.contains("visitor_memory_days = 30"));
        assert!(!LIBRARY.code.contains(DEFAULTS_SLOT));
        assert!(LIBRARY.code.contains("local KEY_AT = {"));
    }

    #[test]
    fn the_library_names_its_versioned_function() {
        assert!(LIBRARY
            .code
            .starts_with(&format!("#!lua name={}\n", LIBRARY.name)));
        assert!(LIBRARY.code.contains(&format!(
            "local APPLY_FUNCTION_NAME = '{}'",
            LIBRARY.apply_function
        )));
        assert!(LIBRARY.code.contains(&format!(
            "local CONFIRM_FUNCTION_NAME = '{}'",
            LIBRARY.confirm_function
        )));
        assert_eq!(
            LIBRARY.name.trim_start_matches("switchboard_"),
            LIBRARY
                .apply_function
                .trim_start_matches("switchboard_apply_")
        );
    }

    /// Names of the form `<Module>.<name>` (and `K.<name>`) in the library's code, comments
    /// left out.
    fn qualified_names<'a>(code: &'a str, module: &str) -> Vec<&'a str> {
        let mut names = vec![];
        for line in code.lines() {
            let line = line.split("--").next().unwrap_or("");
            let mut rest = line;
            while let Some(at) = rest.find(&format!("{module}.")) {
                let before = rest[..at].chars().last();
                let tail = &rest[at + module.len() + 1..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') && end > 0 {
                    names.push(&tail[..end]);
                }
                rest = &tail[end..];
            }
        }
        names
    }

    #[test]
    fn every_module_function_called_is_defined_and_every_key_named_by_the_interface() {
        let modules = [
            "Core",
            "Call",
            "Versions",
            "Meta",
            "Agents",
            "Pools",
            "Routing",
            "Records",
            "Visitors",
            "Queues",
            "Conversations",
            "Modes",
        ];
        for module in modules {
            for name in qualified_names(PARTS, module) {
                let defined = PARTS.contains(&format!("function {module}.{name}("))
                    || PARTS.contains(&format!("{module}.{name} = "));
                assert!(defined, "{module}.{name} is called but not defined");
            }
        }
        let named: Vec<&str> = super::super::interface::PROJECT_KEYS
            .iter()
            .map(|key| key.name)
            .collect();
        for name in qualified_names(PARTS, "K") {
            assert!(
                named.contains(&name),
                "K.{name} is not a key of PROJECT_KEYS"
            );
        }
    }

    #[test]
    fn the_library_loads_in_plain_lua() {
        // Redis runs the top level once at FUNCTION LOAD: it must only define, and register the
        // four functions.
        let lua = mlua::Lua::new();
        lua.load(
            "registered = {}
             redis = { register_function = function(name, f)
               if type(name) == 'table' then name = name.function_name end
               registered[#registered + 1] = name
             end }",
        )
        .exec()
        .unwrap();
        let code = LIBRARY.code.split_once('\n').unwrap().1;
        lua.load(code).exec().expect("the library's top level runs");
        let registered: Vec<String> = lua.load("return registered").eval().unwrap();
        assert_eq!(
            registered,
            [
                LIBRARY.apply_function.clone(),
                LIBRARY.confirm_function.clone(),
                LIBRARY.probe_function.clone(),
                LIBRARY.explain_function.clone(),
            ]
        );
    }
}
