//! What the drains chew on: a team, online, then a mix of events as a platform publishes them
//! (60% created, 30% closed, 10% status changes), in the envelope every producer writes; plain,
//! or with every routing feature in use.

use serde_json::{json, Value};
use switchboard::broker::Session;
use switchboard::cli::publish::publish_events;
use switchboard::contract::CloudEvent;

/// One event of `project` as a platform publishes it: its `time` (ms precision) grows with its
/// number, so the store's order checks run as they do in production.
pub fn event(project: &str, id: u64, event_type: &str, data: Value) -> Vec<u8> {
    static START_MS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let start = *START_MS.get_or_init(|| chrono::Utc::now().timestamp_millis());
    CloudEvent::new(
        project,
        format!("{project}-{id}"),
        "/bench",
        event_type,
        data,
    )
    .time(switchboard::clock::rfc3339(start + id as i64))
    .to_bytes()
}

/// What the project of a backlog uses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Features {
    /// Agents with a limit of 20 conversations each, conversations with nothing to route on,
    /// the default settings.
    Plain,
    /// Every routing feature at once: a rule for Spanish speakers that asks for skill levels
    /// and orders by them (then falls back to anyone), agents with skill levels, two channels
    /// each with its own capacity, conversations with a channel and a language, and the
    /// settings `tie_break: longest_idle`, `inactive_after_seconds`, `wrap_up_seconds`,
    /// `reply_timeout_seconds` and `away_after_missed`. Every timer is longer than a drain, so
    /// the events handled are the backlog's own (a closed conversation keeps its slot, in
    /// wrap-up). Limits high enough that 10 agents never fill up: both teams assign every
    /// conversation, so what differs is the team's size alone.
    Every,
}

/// The settings of a project using every feature.
fn every_feature_settings() -> Value {
    json!({
        "tie_break": "longest_idle",
        "inactive_after_seconds": 600,
        "wrap_up_seconds": 600,
        "reply_timeout_seconds": 600,
        "away_after_missed": 3,
        "rules": [{
            "when": {"language": ["es"]},
            "route_to": [
                {"skills": {"spanish": 5, "billing": 1}, "order_by": "skill_level", "wait_seconds": 60},
                {"skills": []}
            ]
        }]
    })
}

/// A team going online: `patches` upserted 250 at a time (which keeps an event under the
/// contract's 64 KiB with every feature's fields), then each agent's status set to online; the
/// events numbered by `next`.
pub fn online_team(
    project: &str,
    patches: &[Value],
    mut next: impl FnMut() -> u64,
) -> Vec<Vec<u8>> {
    let mut setup: Vec<Vec<u8>> = patches
        .chunks(250)
        .map(|chunk| {
            event(
                project,
                next(),
                "agent.upserted",
                json!({ "agents": chunk }),
            )
        })
        .collect();
    for patch in patches {
        let status = json!({"agent_id": patch["agent_id"], "status": "online"});
        setup.push(event(project, next(), "agent.status_changed", status));
    }
    setup
}

/// Agent `i` of a team of `agents`: with every feature, skill levels, channels and capacities.
fn agent(i: usize, features: Features) -> Value {
    match features {
        Features::Plain => json!({"agent_id": format!("agent-{i}"), "max_concurrent": 20}),
        Features::Every => json!({
            "agent_id": format!("agent-{i}"),
            "max_concurrent": 1000,
            "skills": {"spanish": i % 10 + 1, "billing": i % 5 + 1},
            "channels": ["web", "email"],
            "capacity": {"web": 750, "email": 250},
        }),
    }
}

/// Conversation `n` of a backlog: with every feature, a channel and a language (half Spanish).
pub fn conversation_data(n: usize, features: Features) -> Value {
    let mut data = json!({"conversation_id": format!("c{n}"), "visitor_id": format!("v{n}")});
    if features == Features::Every {
        data["channel"] = json!(if n.is_multiple_of(4) { "email" } else { "web" });
        data["language"] = json!(if n.is_multiple_of(2) { "es" } else { "en" });
    }
    data
}

/// What a project that uses `features` has before its backlog: its settings, a team of
/// `agents` online and, with every feature, the pools its conversations need; the events
/// numbered by `next`.
pub fn setup_with(
    project: &str,
    agents: usize,
    features: Features,
    mut next: impl FnMut() -> u64,
) -> Vec<Vec<u8>> {
    let patches: Vec<Value> = (0..agents).map(|i| agent(i, features)).collect();
    let mut setup = vec![];
    if features == Features::Every {
        setup.push(event(
            project,
            next(),
            "project.configured",
            every_feature_settings(),
        ));
    }
    setup.extend(online_team(project, &patches, &mut next));
    if features == Features::Every {
        // The first conversation of each kind (channel, language) builds the pools that serve
        // it, one pass over the team for each: a one-time cost per pool for the life of the
        // project, paid here, before the drain, so the drain measures the decisions.
        for n in 1..=4 {
            let mut data = conversation_data(n, features);
            data["conversation_id"] = json!(format!("warm-{n}"));
            setup.push(event(project, next(), "conversation.created", data));
            setup.push(event(
                project,
                next(),
                "conversation.closed",
                json!({"conversation_id": format!("warm-{n}")}),
            ));
        }
    }
    setup
}

/// Numbers 1, 2, 3, … for a project's events, one per call.
pub fn numbering() -> impl FnMut() -> u64 {
    let mut id = 0;
    move || {
        id += 1;
        id
    }
}

/// The setup (a team of `agents`, online) and then `n` events: conversations created and
/// closed, with status changes.
pub fn mixed_backlog(project: &str, agents: usize, n: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    backlog_with(project, agents, n, Features::Plain)
}

/// [`mixed_backlog`] for a project that uses `features`.
pub fn backlog_with(
    project: &str,
    agents: usize,
    n: usize,
    features: Features,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut next = numbering();
    let setup = setup_with(project, agents, features, &mut next);
    let mut backlog = Vec::with_capacity(n);
    let mut conversation = 0;
    while backlog.len() < n {
        match backlog.len() % 10 {
            0..=5 => {
                conversation += 1;
                backlog.push(event(
                    project,
                    next(),
                    "conversation.created",
                    conversation_data(conversation, features),
                ));
            }
            6..=8 => backlog.push(event(
                project,
                next(),
                "conversation.closed",
                json!({"conversation_id": format!("c{}", conversation.max(3) - 2)}),
            )),
            _ => {
                let agent = format!("agent-{}", conversation % agents);
                let status = if conversation % 4 == 0 {
                    "busy"
                } else {
                    "online"
                };
                backlog.push(event(
                    project,
                    next(),
                    "agent.status_changed",
                    json!({"agent_id": agent, "status": status}),
                ));
            }
        }
    }
    (setup, backlog)
}

/// Publishes the events as a platform does, 500 at a time with confirms.
pub async fn publish_all(session: &Session, exchange: &str, bodies: &[Vec<u8>]) {
    let publisher = session.publisher();
    for chunk in bodies.chunks(500) {
        publish_events(&publisher, exchange, chunk).await.unwrap();
    }
}
