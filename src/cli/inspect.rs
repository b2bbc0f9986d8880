//! `switchboard inspect PROJECT`: a project's agents, loads, waiting queue and settings, as a
//! readable table. It only reads (several commands, so not one atomic snapshot).

use std::collections::HashMap;
use std::fmt::Write;

use serde_json::{Map, Value};

use crate::config::Config;
use crate::contract::Id;
use crate::domain::settings::defaults;
use crate::store::keys::project_key;
use crate::store::{Store, StoreError, StoreOptions};

/// How many waiting conversations to show.
const WAITING_SHOWN: isize = 10;

pub async fn run(config: Config, project: &str) -> anyhow::Result<()> {
    let project = Id::parse(project).map_err(|e| anyhow::anyhow!("project id {e}"))?;
    let store = Store::connect(&config.redis_nodes(), StoreOptions::from_config(&config)).await?;
    print!("{}", render(&store, &project).await?);
    Ok(())
}

/// The report as text.
pub async fn render(store: &Store, project: &Id) -> Result<String, StoreError> {
    let key = |name: &str| project_key(project, name);
    let agents: HashMap<String, String> = store
        .query(redis::cmd("HGETALL").arg(key("agents")))
        .await?;
    let statuses: HashMap<String, String> = store
        .query(redis::cmd("HGETALL").arg(key("status")))
        .await?;
    let owned: Vec<String> = store
        .query(redis::cmd("ZRANGE").arg(key("owned")).arg(0).arg(-1))
        .await?;
    let eligible: Vec<String> = store
        .query(redis::cmd("ZRANGE").arg(key("by_load")).arg(0).arg(-1))
        .await?;
    let waiting_count: usize = store.query(redis::cmd("ZCARD").arg(key("waiting"))).await?;
    let waiting: Vec<String> = store
        .query(
            redis::cmd("ZRANGE")
                .arg(key("waiting"))
                .arg(0)
                .arg(WAITING_SHOWN - 1),
        )
        .await?;
    let held: usize = store.query(redis::cmd("ZCARD").arg(key("held"))).await?;
    let settings: Option<String> = store.query(redis::cmd("GET").arg(key("settings"))).await?;
    let settings: Map<String, Value> = settings
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();

    let mut load: HashMap<&str, usize> = HashMap::new();
    for member in &owned {
        if let Some((agent, _)) = member.split_once('|') {
            *load.entry(agent).or_default() += 1;
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "project {project}\n");
    let _ = writeln!(out, "agents ({})", agents.len());
    let mut rows = vec![[
        "AGENT", "STATUS", "OPEN/MAX", "ELIGIBLE", "AUTO", "ORDER", "WEIGHT", "LEVEL", "SKILLS",
        "CHANNELS",
    ]
    .map(String::from)];
    let mut names: Vec<&String> = agents.keys().collect();
    names.sort();
    for name in names {
        let cfg: Value = serde_json::from_str(&agents[name]).unwrap_or_default();
        let field = |f: &str| match &cfg[f] {
            Value::Null => "-".to_string(),
            Value::Array(items) if items.is_empty() => "-".to_string(),
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str())
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
            format!(
                "{}/{}",
                load.get(name.as_str()).copied().unwrap_or(0),
                cfg["max_concurrent"].as_u64().unwrap_or(0)
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
        let ids: Vec<&str> = waiting
            .iter()
            .filter_map(|m| m.split_once('|').map(|(_, c)| c))
            .collect();
        let records: Vec<Option<String>> = store
            .query(redis::cmd("HMGET").arg(key("convs")).arg(&ids))
            .await?;
        for (i, (id, record)) in ids.iter().zip(records).enumerate() {
            let record: Value = record
                .and_then(|r| serde_json::from_str(&r).ok())
                .unwrap_or_default();
            let text = |f: &str| record[f].as_str().unwrap_or("-").to_string();
            rows.push([
                (i + 1).to_string(),
                id.to_string(),
                record["p"].as_i64().unwrap_or(0).to_string(),
                text("v"),
                text("ch"),
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
