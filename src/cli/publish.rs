//! `switchboard publish FILE`: publish events as a platform would, with confirms.

use std::io::Read;
use std::path::Path;

use anyhow::Context;

use crate::broker::{self, BrokerError, Message, Publisher, Session};
use crate::config::Config;

/// Reads one JSON event, or NDJSON (one event per line), and publishes each to the inbound
/// exchange with its `type` as the routing key. Returns after the broker confirmed them all.
pub async fn run(config: Config, file: &Path) -> anyhow::Result<()> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    }
    let events = split_events(&text)?;
    let session = Session::open(&config, "switchboard-publish").await?;
    let bodies: Vec<&str> = events.iter().map(|(_, body)| body.as_str()).collect();
    publish_events(&session.publisher(), &config.inbound_exchange, &bodies).await?;
    session.close().await;
    println!(
        "published {} event(s) to {}",
        events.len(),
        config.inbound_exchange
    );
    Ok(())
}

/// Publishes events as a platform does: each to `exchange` under its [`routing_key`],
/// persistent; returns once the broker confirmed them all. The one way the CLI, the tests and
/// the benchmark publish.
pub async fn publish_events<B: AsRef<[u8]>>(
    publisher: &Publisher,
    exchange: &str,
    bodies: &[B],
) -> Result<(), BrokerError> {
    let keys: Vec<String> = bodies.iter().map(|b| routing_key(b.as_ref())).collect();
    let messages = bodies
        .iter()
        .zip(&keys)
        .map(|(body, key)| Message {
            exchange,
            routing_key: key,
            body: body.as_ref(),
            properties: broker::json_properties(),
        })
        .collect();
    publisher.publish_all(messages).await
}

/// The routing key a platform publishes an event under: its `type`, or `unknown` for a body
/// without one (a worker dead-letters it).
pub fn routing_key(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|event| event["type"].as_str().map(String::from))
        .unwrap_or_else(|| "unknown".into())
}

/// (routing key, body) of each event in the text.
fn split_events(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let whole = serde_json::from_str::<serde_json::Value>(text);
    let bodies: Vec<String> = match whole {
        Ok(_) => vec![text.trim().to_string()],
        Err(_) => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
    };
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            serde_json::from_str::<serde_json::Value>(&body)
                .with_context(|| format!("line {} is not JSON", i + 1))?;
            Ok((routing_key(body.as_bytes()), body))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_event_or_ndjson() {
        let one = split_events("{\n  \"type\": \"agent.removed\"\n}\n").unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].0, "agent.removed");
        let many = split_events("{\"type\":\"a\"}\n\n{\"type\":\"b\"}\n").unwrap();
        assert_eq!(
            many.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(split_events("{\"type\":\"a\"}\nnope\n").is_err());
    }
}
