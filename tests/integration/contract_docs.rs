//! The contract's documents agree with the code: the committed JSON Schemas and AsyncAPI
//! document are what the types generate, the examples pass both their schema and the decoder,
//! and every event type the code knows or emits has a schema. (Every outbound event the other
//! tests receive is also checked against its schema, in the helpers.)

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use switchboard::contract::inbound::INBOUND_TYPES;
use switchboard::contract::schema::{events, Direction};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_schemas_and_asyncapi_match_the_types() {
    for (name, generated) in switchboard::cli::schemas::files() {
        let path = root().join("docs").join(&name);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} is missing: run `switchboard schemas`", path.display()));
        assert_eq!(
            committed, generated,
            "{name} is stale: run `switchboard schemas`"
        );
    }
}

#[test]
fn every_inbound_type_and_every_emitted_type_has_a_schema() {
    let described: BTreeSet<(&str, bool)> = events()
        .iter()
        .map(|e| (e.event_type, e.direction == Direction::Outbound))
        .collect();
    for event_type in INBOUND_TYPES {
        assert!(
            described.contains(&(event_type, false)),
            "inbound {event_type} has no schema"
        );
    }
    // Every `emit('type', …)` in the store's scripts.
    for entry in std::fs::read_dir(root().join("src/store/scripts")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for piece in text.split("emit('").skip(1) {
            let event_type = piece.split('\'').next().unwrap();
            assert!(
                described.contains(&(event_type, true)),
                "outbound {event_type} has no schema"
            );
        }
    }
}

#[test]
fn the_asyncapi_document_names_every_message_and_its_schema_file() {
    let document: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("docs/asyncapi.json")).unwrap())
            .unwrap();
    assert_eq!(document["asyncapi"], "3.0.0");
    let messages = document["components"]["messages"].as_object().unwrap();
    assert_eq!(messages.len(), events().len());
    for message in messages.values() {
        let reference = message["payload"]["$ref"].as_str().unwrap();
        assert!(
            root().join("docs").join(reference).exists(),
            "{reference} does not exist"
        );
    }
    for channel in ["inbound", "outbound", "work", "dead"] {
        for reference in document["channels"][channel]["messages"]
            .as_object()
            .unwrap()
            .values()
        {
            let id = reference["$ref"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap();
            assert!(
                messages.contains_key(id),
                "channel {channel} names unknown message {id}"
            );
        }
    }
}

#[test]
fn every_example_event_passes_its_schema_and_the_decoder() {
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("examples/events")).unwrap() {
        let path = entry.unwrap().path();
        let body = std::fs::read(&path).unwrap();
        let event: Value = serde_json::from_slice(&body).unwrap();
        let event_type = event["type"].as_str().unwrap().to_string();
        let schema = events()
            .into_iter()
            .find(|e| e.event_type == event_type && e.direction == Direction::Inbound)
            .unwrap()
            .schema();
        let validator = jsonschema::validator_for(&schema).unwrap();
        if let Err(error) = validator.validate(&event) {
            panic!("{} fails its schema: {error}", path.display());
        }
        switchboard::contract::decode(&body)
            .unwrap_or_else(|e| panic!("{} is rejected by the decoder: {e}", path.display()));
        seen.insert(event_type);
    }
    let platform_types: BTreeSet<String> = INBOUND_TYPES
        .iter()
        .filter(|t| **t != switchboard::contract::inbound::TIMER_FIRED)
        .map(|t| t.to_string())
        .collect();
    assert_eq!(seen, platform_types, "one example per platform event type");
}

#[test]
fn schemas_reject_what_the_decoder_rejects() {
    let schema = events()
        .into_iter()
        .find(|e| e.event_type == "conversation.created")
        .unwrap()
        .schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let body = switchboard::contract::CloudEvent::new(
        "acme",
        "e",
        "/s",
        "conversation.created",
        serde_json::json!({"conversation_id": "has space", "visitor_id": "v"}),
    )
    .to_bytes();
    let bad: Value = serde_json::from_slice(&body).unwrap();
    assert!(!validator.is_valid(&bad));
    assert!(switchboard::contract::decode(&body).is_err());
}
