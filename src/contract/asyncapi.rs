//! The AsyncAPI 3.0 document of the contract, built from the same event list as the JSON
//! Schemas (`schema::events`), so the two cannot disagree. Messages reference the schema files.

use serde_json::{json, Map, Value};

use super::names;
use super::schema::{events, Direction};

/// The id of an event's message in `components.messages`.
pub fn message_id(event_type: &str, direction: Direction) -> String {
    let prefix = match direction {
        Direction::Inbound => "in",
        Direction::Outbound => "out",
        Direction::Internal => "internal",
    };
    format!("{prefix}_{}", event_type.replace('.', "_"))
}

/// The document, with the default exchange and queue names.
pub fn document() -> Value {
    let mut messages = Map::new();
    let mut by_direction: [Map<String, Value>; 3] = Default::default();
    for event in events() {
        let id = message_id(event.event_type, event.direction);
        messages.insert(
            id.clone(),
            json!({
                "name": event.event_type,
                "title": event.event_type,
                "summary": event.summary,
                "contentType": "application/json",
                "payload": {"$ref": format!("schemas/{}", event.file_name())},
                "bindings": {"amqp": {"deliveryMode": 2, "bindingVersion": "0.3.0"}},
            }),
        );
        let slot = match event.direction {
            Direction::Inbound => 0,
            Direction::Outbound => 1,
            Direction::Internal => 2,
        };
        by_direction[slot].insert(
            id.clone(),
            json!({"$ref": format!("#/components/messages/{id}")}),
        );
    }
    let [inbound, outbound, internal] = by_direction;
    let exchange = |name: &str| {
        json!({"amqp": {
            "is": "routingKey",
            "exchange": {"name": name, "type": "topic", "durable": true, "autoDelete": false, "vhost": "/"},
            "bindingVersion": "0.3.0"
        }})
    };
    let queue = |name: &str| {
        json!({"amqp": {
            "is": "queue",
            "queue": {"name": name, "durable": true, "exclusive": false, "autoDelete": false, "vhost": "/"},
            "bindingVersion": "0.3.0"
        }})
    };
    let mut dead_messages = inbound.clone();
    dead_messages.extend(internal.clone());
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Switchboard",
            "version": "1.1.0",
            "description": "Assigns customer conversations to support agents. Platforms publish CloudEvents 1.0 (structured JSON, routing key = type) to the inbound exchange; workers publish their decisions to the outbound exchange. Every event carries the tenant in the `project` extension attribute. Inbound events carry `time` (millisecond precision or finer): events about one agent, setting or conversation take effect in that order, and an older one arriving late changes nothing. Outbound events carry `causationid` (the inbound event's id), an id derived from it, and `sequence` (per conversation, per agent for status changes) so a consumer can keep the latest decision.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "A broker on the machine, for development (docker compose, the tests).",
                "bindings": {"amqp": {"bindingVersion": "0.3.0"}},
            },
            "production": {
                "host": "rabbitmq.example.com:5671",
                "protocol": "amqps",
                "protocolVersion": "0-9-1",
                "description": "A managed or self-hosted broker over TLS (`SWITCHBOARD_AMQP_URL=amqps://user:password@host:5671/vhost`). The server is verified against the system's trust store plus `SWITCHBOARD_TLS_CA_FILE`; a client certificate is presented when `SWITCHBOARD_TLS_CERT_FILE` and `SWITCHBOARD_TLS_KEY_FILE` are set.",
                "security": [
                    {"$ref": "#/components/securitySchemes/userPassword"},
                    {"$ref": "#/components/securitySchemes/clientCertificate"},
                ],
                "bindings": {"amqp": {"bindingVersion": "0.3.0"}},
            },
        },
        "channels": {
            "inbound": {
                "address": names::INBOUND_EXCHANGE,
                "description": "Platforms publish here; bound to the work queue with `#`.",
                "messages": inbound,
                "bindings": exchange(names::INBOUND_EXCHANGE),
            },
            "outbound": {
                "address": names::OUTBOUND_EXCHANGE,
                "description": "Decisions. The redelivery of an inbound event whose outputs were not confirmed republishes the same outputs with the same ids; a duplicate of one whose outputs were confirmed publishes nothing.",
                "messages": outbound,
                "bindings": exchange(names::OUTBOUND_EXCHANGE),
            },
            "work": {
                "address": names::WORK_QUEUE,
                "description": "Quorum queue all workers consume; due timers arrive here from the delay queues.",
                "messages": internal,
                "bindings": queue(names::WORK_QUEUE),
            },
            "dead": {
                "address": names::DEAD_LETTER_QUEUE,
                "description": "Events that cannot be processed, body untouched, reason in the `x-switchboard-error` header.",
                "messages": dead_messages,
                "bindings": queue(names::DEAD_LETTER_QUEUE),
            },
        },
        "operations": {
            "publishEvent": {
                "action": "receive",
                "summary": "Workers receive what platforms publish.",
                "channel": {"$ref": "#/channels/inbound"},
            },
            "publishDecision": {
                "action": "send",
                "summary": "Workers send their decisions.",
                "channel": {"$ref": "#/channels/outbound"},
            },
            "fireTimer": {
                "action": "receive",
                "summary": "Workers receive due timers.",
                "channel": {"$ref": "#/channels/work"},
            },
            "deadLetter": {
                "action": "send",
                "summary": "Workers dead-letter what they cannot process.",
                "channel": {"$ref": "#/channels/dead"},
            },
        },
        "components": {
            "messages": messages,
            "securitySchemes": {
                "userPassword": {
                    "type": "userPassword",
                    "description": "An AMQP user and password (SASL PLAIN), from the URL's user info.",
                },
                "clientCertificate": {
                    "type": "X509",
                    "description": "A client certificate, where the broker asks for one.",
                },
            },
        },
    })
}
