//! Every outbound event a test sees is checked against its JSON Schema, so the documents and
//! the code cannot drift apart unnoticed.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;
use switchboard::contract::schema::{events, Direction};

/// Fails the test when an outbound event does not match its JSON Schema.
pub fn assert_valid_output(output: &Value) {
    static VALIDATORS: OnceLock<HashMap<&'static str, jsonschema::Validator>> = OnceLock::new();
    let validators = VALIDATORS.get_or_init(|| {
        events()
            .into_iter()
            .filter(|e| e.direction == Direction::Outbound)
            .map(|e| {
                (
                    e.event_type,
                    jsonschema::validator_for(&e.schema()).unwrap(),
                )
            })
            .collect()
    });
    let event_type = output["type"].as_str().unwrap_or("");
    let validator = validators
        .get(event_type)
        .unwrap_or_else(|| panic!("no schema for outbound {event_type}"));
    if let Err(error) = validator.validate(output) {
        panic!("outbound event does not match its schema: {error}\n{output}");
    }
}
