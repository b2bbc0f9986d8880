//! `switchboard dead-letters`: what the dead-letter queue holds and why, and sending dead
//! letters back to the work queue once what rejected them is fixed.
//!
//! An event reaches dead letters when the worker rejects it (malformed, against the contract,
//! or `internal error: …` for a failure it could not retry: `x-switchboard-error` says which)
//! or when RabbitMQ gives up on it after `SWITCHBOARD_DELIVERY_LIMIT` deliveries (a poison
//! event: `x-first-death-reason`). Nothing is dropped there, but nothing comes back by itself
//! either: once the platform or the operator has fixed the cause (a release that accepts it, a
//! worker that understands the error), this command sends them back.
//!
//! Replaying is safe to repeat. A dead letter goes back to the work queue (by name, so queues
//! a platform binds to the inbound exchange do not get a second copy), with its body and
//! properties, and leaves the dead-letter queue only once the broker confirmed the copy. An
//! event that was applied before (a copy dead-lettered by RabbitMQ after a worker had decided
//! it) is recognised by its id and decides nothing twice; one that is still wrong comes back
//! to dead letters with its reason.

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use crate::broker::{self, BrokerError, Message, Session};
use crate::config::Config;

#[derive(Args, Debug, Clone)]
pub struct DeadLettersArgs {
    /// Send the dead letters shown back to the work queue, instead of only showing them.
    #[arg(long)]
    pub replay: bool,
    /// Only the dead letters whose reason contains this text (for example `internal error`,
    /// `invalid field` or `delivery_limit`); the others stay as they are.
    #[arg(long)]
    pub reason: Option<String>,
    /// Only the dead letters of this project (as their body names it).
    #[arg(long)]
    pub project: Option<String>,
    /// One JSON object per dead letter (`project`, `type`, `id`, `reason`), then one for the
    /// summary, instead of text.
    #[arg(long)]
    pub json: bool,
    /// At most this many dead letters shown (or replayed), oldest first.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// One dead letter, as a person reading the queue wants it: what event, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    /// The event's `project`, `type` and `id` if its body says so (a malformed body may not).
    pub project: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    #[serde(rename = "id")]
    pub event_id: Option<String>,
    pub reason: String,
}

impl DeadLetter {
    /// Whether `args` asks for this one.
    fn wanted(&self, args: &DeadLettersArgs) -> bool {
        let reason = args.reason.as_ref();
        let project = args.project.as_ref();
        reason.is_none_or(|text| self.reason.contains(text.as_str()))
            && project.is_none_or(|id| self.project.as_ref() == Some(id))
    }
}

/// What a run found and did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Messages in the dead-letter queue when the run began.
    pub held: u32,
    /// The dead letters that matched, oldest first (at most `limit`).
    pub matched: Vec<DeadLetter>,
    /// How many of them went back to the work queue (`--replay`).
    pub replayed: usize,
}

/// Prints what [`look`] found, one line per dead letter, and a summary.
pub async fn run(config: Config, args: DeadLettersArgs) -> anyhow::Result<()> {
    let outcome = look(&config, &args)
        .await
        .with_context(|| format!("reading {}", config.dead_letter_queue))?;
    if args.json {
        for letter in &outcome.matched {
            println!("{}", serde_json::to_string(letter)?);
        }
        let summary = serde_json::json!({
            "held": outcome.held,
            "shown": outcome.matched.len(),
            "replayed": outcome.replayed,
        });
        println!("{summary}");
        return Ok(());
    }
    for letter in &outcome.matched {
        let field = |value: &Option<String>| value.clone().unwrap_or_else(|| "?".into());
        println!(
            "{}  {}  {}  {}",
            field(&letter.project),
            field(&letter.event_type),
            field(&letter.event_id),
            letter.reason
        );
    }
    let filters: Vec<String> = [
        args.project.as_ref().map(|id| format!("of project `{id}`")),
        args.reason
            .as_ref()
            .map(|text| format!("whose reason contains `{text}`")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!(" {}", filters.join(" and "))
    };
    println!(
        "{} dead letter(s) in {}; {} shown{filter}{}",
        outcome.held,
        config.dead_letter_queue,
        outcome.matched.len(),
        if args.replay {
            format!(", {} sent back to {}", outcome.replayed, config.work_queue)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Looks through the dead-letter queue, oldest first, for up to `args.limit` dead letters
/// whose reason matches, and with `args.replay` sends each back to the work queue and removes
/// it from dead letters once the broker confirmed the copy. Every message it does not remove
/// goes back to the dead-letter queue when the session closes, in its place.
pub async fn look(config: &Config, args: &DeadLettersArgs) -> Result<Outcome, BrokerError> {
    let session = Session::open(config, "switchboard-dead-letters").await?;
    let outcome = look_in(&session, config, args).await;
    session.close().await;
    outcome
}

async fn look_in(
    session: &Session,
    config: &Config,
    args: &DeadLettersArgs,
) -> Result<Outcome, BrokerError> {
    let publisher = session.publisher();
    let mut outcome = Outcome::default();
    let mut taken = 0;
    while outcome.matched.len() < args.limit {
        // Messages taken and not settled stay with this session, so each take reaches the next
        // one. Only the messages there when the run began are looked at: one replayed that a
        // worker rejects again comes back behind them, and is not sent back twice in one run.
        if taken > 0 && taken >= outcome.held {
            break;
        }
        let Some((delivery, left)) = session.take(&config.dead_letter_queue).await? else {
            break;
        };
        if taken == 0 {
            outcome.held = left + 1;
        }
        taken += 1;
        let letter = describe(&delivery.data, &delivery.properties);
        if !letter.wanted(args) {
            continue;
        }
        if args.replay {
            publisher
                .publish_all(vec![Message {
                    exchange: "",
                    routing_key: &config.work_queue,
                    body: &delivery.data,
                    properties: broker::replay_properties(&delivery.properties),
                }])
                .await?;
            session.settle(delivery.delivery_tag).await?;
            outcome.replayed += 1;
        }
        outcome.matched.push(letter);
    }
    Ok(outcome)
}

/// A dead letter's event (as far as its body is JSON) and reason.
fn describe(body: &[u8], properties: &lapin::BasicProperties) -> DeadLetter {
    let event = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let text = |name: &str| event.get(name).and_then(Value::as_str).map(String::from);
    DeadLetter {
        reason: broker::dead_letter_reason(properties),
        event_type: text("type"),
        event_id: text("id"),
        project: text("project"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_names_its_event_when_its_body_does() {
        let properties = broker::dead_letter_properties(&broker::json_properties(), "why");
        let letter = describe(
            br#"{"type":"conversation.created","id":"e1","project":"acme"}"#,
            &properties,
        );
        assert_eq!(
            letter,
            DeadLetter {
                reason: "why".into(),
                event_type: Some("conversation.created".into()),
                event_id: Some("e1".into()),
                project: Some("acme".into()),
            }
        );
        let garbled = describe(b"not json", &properties);
        assert_eq!((garbled.event_type, garbled.event_id), (None, None));
    }

    #[test]
    fn a_dead_letter_is_wanted_when_it_matches_every_filter_given() {
        let letter = DeadLetter {
            project: Some("acme".into()),
            event_type: None,
            event_id: None,
            reason: "internal error: boom".into(),
        };
        let args = |project: Option<&str>, reason: Option<&str>| DeadLettersArgs {
            replay: false,
            reason: reason.map(String::from),
            project: project.map(String::from),
            json: false,
            limit: 1,
        };
        assert!(letter.wanted(&args(None, None)));
        assert!(letter.wanted(&args(Some("acme"), Some("internal"))));
        assert!(!letter.wanted(&args(Some("acme.eu"), None)));
        assert!(!letter.wanted(&args(None, Some("invalid"))));
        let garbled = DeadLetter {
            project: None,
            ..letter
        };
        assert!(!garbled.wanted(&args(Some("acme"), None)));
    }
}
