//! `switchboard inspect PROJECT`: a project's agents, loads, waiting queue and settings, as a
//! readable table. It only reads (several commands, so not one atomic snapshot).

use std::fmt::Write;

use serde_json::Value;

use super::why;
use crate::config::Config;
use crate::contract::Id;
use crate::domain::settings::defaults;
use crate::store::explain::Question;
use crate::store::{Store, StoreError, StoreOptions};

/// How many waiting conversations to show.
const WAITING_SHOWN: usize = 10;

/// What `switchboard inspect` shows.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The project id.
    pub project: String,
    /// The waiting conversations (position, queue, how long, priority) and, for each queue
    /// they wait in, why its agents cannot take them.
    #[arg(long, conflicts_with = "conversation")]
    pub waiting: bool,
    /// One conversation: its state, rule and step, queue, candidates or decision.
    #[arg(long, value_name = "ID")]
    pub conversation: Option<String>,
    /// How many waiting conversations to list (with --waiting).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// JSON instead of text (with --waiting or --conversation).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(config: Config, args: InspectArgs) -> anyhow::Result<()> {
    let project = Id::parse(&args.project).map_err(|e| anyhow::anyhow!("project id {e}"))?;
    let store = Store::connect(&config.redis_nodes(), StoreOptions::from_config(&config)).await?;
    let question = match (&args.conversation, args.waiting) {
        (Some(id), _) => Some(Question::Conversation(id)),
        (None, true) => Some(Question::Waiting { limit: args.limit }),
        (None, false) => None,
    };
    let Some(question) = question else {
        print!("{}", render(&store, &project).await?);
        return Ok(());
    };
    let explained = why::explain(&store, &project, question.clone()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&explained)?);
    } else if let Question::Conversation(_) = question {
        print!("{}", why::render_conversation(&explained));
    } else {
        print!("{}", why::render_waiting(&project, &explained));
    }
    Ok(())
}

/// The report as text.
pub async fn render(store: &Store, project: &Id) -> Result<String, StoreError> {
    let agents = store.agents(project).await?;
    let statuses = store.statuses(project).await?;
    let open = store.open_conversations(project).await?;
    let mut quiet: std::collections::BTreeMap<String, usize> = Default::default();
    for (agent, _) in store.inactive_conversations(project).await? {
        *quiet.entry(agent).or_default() += 1;
    }
    let eligible = store.eligible(project).await?;
    let waiting_count = store.waiting_count(project).await?;
    let waiting = store.waiting(project, Some(WAITING_SHOWN)).await?;
    let held = store.held_count(project).await?;
    let settings = store.settings(project).await?;

    let mut out = String::new();
    let _ = writeln!(out, "project {project}\n");
    let _ = writeln!(out, "agents ({})", agents.len());
    let mut rows = vec![[
        "AGENT", "STATUS", "OPEN/MAX", "ELIGIBLE", "AUTO", "ORDER", "WEIGHT", "LEVEL", "SKILLS",
        "CHANNELS", "CAPACITY",
    ]
    .map(String::from)];
    for (name, cfg) in &agents {
        let field = |f: &str| match &cfg[f] {
            Value::Null => "-".to_string(),
            Value::Array(items) if items.is_empty() => "-".to_string(),
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str())
                .collect::<Vec<_>>()
                .join(","),
            // Skill levels, capacities per channel: "spanish:7,billing:3".
            Value::Object(entries) if entries.is_empty() => "-".to_string(),
            Value::Object(entries) => entries
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string().trim_matches('"').to_string(),
        };
        rows.push([
            name.clone(),
            statuses
                .get(name)
                .cloned()
                .unwrap_or_else(|| "offline".into()),
            // Quiet conversations (inactive_after_seconds) are held but do not count.
            format!(
                "{}/{}{}",
                open.get(name).map_or(0, Vec::len),
                cfg["max_concurrent"].as_u64().unwrap_or(0),
                quiet
                    .get(name)
                    .map_or(String::new(), |n| format!(" +{n} quiet"))
            ),
            if eligible.contains(name) { "yes" } else { "no" }.into(),
            if cfg["auto_assign"] == Value::Bool(false) {
                "no"
            } else {
                "yes"
            }
            .into(),
            match &cfg["order"] {
                Value::Null => format!("({})", field("seq")),
                _ => field("order"),
            },
            match &cfg["weight"] {
                Value::Null => field("daily_limit").replace('-', "1"),
                _ => field("weight"),
            },
            field("priority"),
            field("skills"),
            match &cfg["channels"] {
                Value::Null => "all".into(),
                _ => field("channels"),
            },
            field("capacity"),
        ]);
    }
    table(&mut out, &rows);

    let _ = writeln!(
        out,
        "\nwaiting ({waiting_count}){}",
        if held > 0 {
            format!(", offered or awaiting a decision ({held})")
        } else {
            String::new()
        }
    );
    if !waiting.is_empty() {
        let mut rows =
            vec![["#", "CONVERSATION", "PRIORITY", "VISITOR", "CHANNEL"].map(String::from)];
        let ids: Vec<&str> = waiting.iter().map(|w| w.conversation_id.as_str()).collect();
        let records = store.conversations_of(project, &ids).await?;
        for (i, (id, record)) in ids.iter().zip(records).enumerate() {
            let (priority, visitor, channel) = match record {
                Some(r) => (r.priority, r.visitor, r.channel),
                None => (0, None, None),
            };
            let text = |field: Option<String>| field.unwrap_or_else(|| "-".into());
            rows.push([
                (i + 1).to_string(),
                id.to_string(),
                priority.to_string(),
                text(visitor),
                text(channel),
            ]);
        }
        table(&mut out, &rows);
    }

    let _ = writeln!(out, "\nsettings (* = set for this project)");
    let mut rows = vec![["SETTING", "VALUE"].map(String::from)];
    for (name, default) in defaults() {
        let (value, set) = match settings.get(&name) {
            Some(v) => (v.clone(), "*"),
            None => (default, ""),
        };
        rows.push([
            format!("{name}{set}"),
            value.to_string().trim_matches('"').to_string(),
        ]);
    }
    table(&mut out, &rows);
    Ok(out)
}

/// Left-aligned columns, two spaces apart.
fn table<const N: usize>(out: &mut String, rows: &[[String; N]]) {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "  {}", line.join("  ").trim_end());
    }
}
