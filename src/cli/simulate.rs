//! `switchboard simulate`: drives a real worker through a compressed synthetic day (arrivals at
//! a rate, handling times, an agent whose schedule takes it away for part of the day) and
//! reports what a team lead checks: each agent's share against the expected share, the largest
//! load seen against the limit, and how long conversations waited. Writes the shares and waits
//! as an SVG chart.
//!
//! By default it starts its own in-process worker on private exchange and queue names, so it
//! can run beside production-like workers without touching them, with a clock that runs a
//! working day in seconds (one real second is one simulated hour, or slower for long runs): the
//! first agent's absence is a real schedule that the worker switches. `--external` uses the
//! configured names and whatever workers are running, in real time; the absence is then a
//! status change.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use rand::Rng;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::application::Application;
use crate::broker::{self, Message, Session};
use crate::cli::chart::{Bar, Chart};
use crate::clock::{Clock, ScaledClock};
use crate::config::Config;
use crate::contract::{CloudEvent, Id};
use crate::store::{Store, StoreOptions};

/// The simulated day starts on Monday 2026-11-23, 08:00 UTC.
const MONDAY_MORNING_MS: i64 = 1_795_420_800_000;

#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Strategy for new visitors: least_loaded, round_robin or weighted.
    #[arg(long, default_value = "weighted")]
    pub strategy: String,
    /// Agents as `id:max_concurrent:weight`, comma-separated.
    #[arg(long, default_value = "ana:6:100,ben:6:200,chloe:6:100")]
    pub agents: String,
    /// Conversations in the day.
    #[arg(long, default_value_t = 300)]
    pub conversations: u64,
    /// Mean arrivals per second (Poisson).
    #[arg(long, default_value_t = 30.0)]
    pub rate: f64,
    /// Handling time range in ms, `MIN..MAX`.
    #[arg(long, default_value = "100..400")]
    pub handling_ms: String,
    /// The first agent's schedule keeps it away for this share of the day, in the middle
    /// (0 = never).
    #[arg(long, default_value_t = 0.2)]
    pub absence: f64,
    /// Where to write the chart.
    #[arg(long, default_value = "simulation.svg")]
    pub chart: PathBuf,
    /// Use the configured exchanges and running workers instead of an in-process worker.
    #[arg(long)]
    pub external: bool,
    /// A conversation that waits this long (simulated seconds) overflows (0 = never).
    #[arg(long, default_value_t = 0)]
    pub max_wait_seconds: u64,
    /// How least_loaded breaks ties: random or longest_idle.
    #[arg(long, default_value = "random")]
    pub tie_break: String,
}

/// One agent of the simulated team.
#[derive(Debug, Clone)]
pub struct SimAgent {
    pub id: String,
    pub max_concurrent: u64,
    pub weight: f64,
}

/// What the simulation measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The simulated project's id, `sim-` and 8 hex digits (its state stays in Redis).
    pub project: String,
    pub strategy: String,
    pub rows: Vec<AgentRow>,
    /// Wait from publishing `conversation.created` to receiving its assignment, ms, sorted.
    pub waits_ms: Vec<f64>,
    pub seconds: f64,
    /// Times the worker switched an agent by its schedule.
    pub schedule_switches: u64,
    /// Conversations that waited too long and left their queue.
    pub overflowed: u64,
    /// For each conversation that got an estimate of its wait: the estimate's error against the
    /// wait it then had, as a fraction of that wait (+ = too long), sorted.
    pub estimate_errors: Vec<f64>,
    pub tie_break: String,
    /// The longest an agent present all day went without a new conversation while others got
    /// some, s (real time): what `tie_break: longest_idle` keeps short.
    pub longest_without_work_s: f64,
}

#[derive(Debug, Clone)]
pub struct AgentRow {
    pub id: String,
    pub assigned: u64,
    pub share: f64,
    pub expected: f64,
    pub max_load: i64,
    pub limit: u64,
}

impl Report {
    pub fn percentile(&self, q: f64) -> f64 {
        if self.waits_ms.is_empty() {
            return 0.0;
        }
        self.waits_ms[((self.waits_ms.len() - 1) as f64 * q).round() as usize]
    }

    /// The most and the fewest conversations an agent received.
    pub fn spread(&self) -> (u64, u64) {
        let counts = self.rows.iter().map(|r| r.assigned);
        (counts.clone().max().unwrap_or(0), counts.min().unwrap_or(0))
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "strategy {} (ties: {}) · {} conversations in {:.1} s",
            self.strategy,
            self.tie_break,
            self.waits_ms.len(),
            self.seconds
        );
        let _ = writeln!(
            out,
            "  AGENT     ASSIGNED   SHARE  EXPECTED  MAX LOAD/LIMIT"
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "  {:<8}  {:>8}  {:>5.1}%  {:>7.1}%  {:>5}/{}",
                r.id,
                r.assigned,
                r.share * 100.0,
                r.expected * 100.0,
                r.max_load,
                r.limit
            );
        }
        let _ = writeln!(
            out,
            "wait: p50 {:.1} ms · p90 {:.1} ms · p99 {:.1} ms · max {:.1} ms",
            self.percentile(0.5),
            self.percentile(0.9),
            self.percentile(0.99),
            self.percentile(1.0)
        );
        let (most, fewest) = self.spread();
        let _ = writeln!(
            out,
            "fairness: {fewest} to {most} conversations per agent; the longest an agent went \
             without a new one: {:.2} s",
            self.longest_without_work_s
        );
        if self.schedule_switches > 0 {
            let _ = writeln!(out, "schedule switches: {}", self.schedule_switches);
        }
        if self.overflowed > 0 {
            let _ = writeln!(out, "overflowed (waited too long): {}", self.overflowed);
        }
        if let Some(median) = median_abs(&self.estimate_errors) {
            let _ = writeln!(
                out,
                "estimated waits: {} given, median error {:.0}% of the actual wait",
                self.estimate_errors.len(),
                median * 100.0
            );
        }
        out
    }

    /// Shares (actual bars, expected marks) and the wait-time distribution, as SVG.
    pub fn svg(&self) -> String {
        let mut chart = Chart::new(format!(
            "Share of assignments ({}): bars actual, marks expected",
            self.strategy
        ));
        let shares = self
            .rows
            .iter()
            .map(|r| Bar::new(&r.id, r.share * 100.0).marked(r.expected * 100.0))
            .collect();
        chart.bars("Share of assignments", "%", shares);
        chart.curve(
            &format!("Wait by percentile, p99 {:.1} ms", self.percentile(0.99)),
            "ms",
            self.waits_ms.clone(),
        );
        chart.svg()
    }
}

/// The median of the absolute values, if any.
fn median_abs(values: &[f64]) -> Option<f64> {
    let mut absolute: Vec<f64> = values.iter().map(|v| v.abs()).collect();
    absolute.sort_by(|a, b| a.total_cmp(b));
    absolute.get(absolute.len() / 2).copied()
}

fn parse_agents(spec: &str) -> anyhow::Result<Vec<SimAgent>> {
    spec.split(',')
        .map(|part| {
            let fields: Vec<&str> = part.trim().split(':').collect();
            anyhow::ensure!(
                fields.len() == 3,
                "agent `{part}` is not id:max_concurrent:weight"
            );
            Id::parse(fields[0]).map_err(|e| anyhow::anyhow!("agent id `{}` {e}", fields[0]))?;
            Ok(SimAgent {
                id: fields[0].into(),
                max_concurrent: fields[1].parse()?,
                weight: fields[2].parse()?,
            })
        })
        .collect()
}

fn parse_range(spec: &str) -> anyhow::Result<(u64, u64)> {
    let (a, b) = spec.split_once("..").context("handling time is MIN..MAX")?;
    let (a, b) = (a.trim().parse()?, b.trim().parse()?);
    anyhow::ensure!(a <= b, "handling time MIN is above MAX");
    Ok((a, b))
}

pub async fn run(config: Config, args: SimulateArgs) -> anyhow::Result<()> {
    let report = simulate(config, args.clone()).await?;
    print!("{}", report.render());
    std::fs::write(&args.chart, report.svg())?;
    println!("chart written to {}", args.chart.display());
    Ok(())
}

/// Runs the simulation and returns what it measured.
pub async fn simulate(mut config: Config, args: SimulateArgs) -> anyhow::Result<Report> {
    let agents = parse_agents(&args.agents)?;
    let (handling_min, handling_max) = parse_range(&args.handling_ms)?;
    anyhow::ensure!(
        matches!(
            args.strategy.as_str(),
            "least_loaded" | "round_robin" | "weighted"
        ),
        "strategy is least_loaded, round_robin or weighted"
    );
    anyhow::ensure!(
        matches!(args.tie_break.as_str(), "random" | "longest_idle"),
        "tie-break is random or longest_idle"
    );
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let project = format!("sim-{run_id}");
    let stop = tokio_util::sync::CancellationToken::new();
    let mut worker = None;
    let expected_seconds = args.conversations as f64 / args.rate.max(0.01);
    // One real second is one simulated hour, slower if the day would not fit in 14 hours.
    let rate = (14.0 * 3600.0 / expected_seconds).min(3600.0);
    let clock = Arc::new(ScaledClock::new(MONDAY_MORNING_MS, rate));
    if !args.external {
        let tag = format!("switchboard-sim-{run_id}");
        config.inbound_exchange = format!("{tag}.in");
        config.work_queue = format!("{tag}.work");
        config.outbound_exchange = format!("{tag}.out");
        config.dead_letter_queue = format!("{tag}.dead");
        config.http_addr = "127.0.0.1:0".into();
        let application = Application::build(config.clone(), clock.clone()).await?;
        let stopped = stop.clone();
        worker = Some(tokio::spawn(
            application.run_until_stopped(async move { stopped.cancelled().await }),
        ));
    }
    let session = Session::open(&config, "switchboard-simulate").await?;
    let mut decisions = session.tap(&config.outbound_exchange).await?;
    let publisher = session.publisher();
    let mut sequence = 0u64;
    let mut send = |event_type: &str, data: Value| {
        sequence += 1;
        // Stamped with the simulated clock: the day's events about one thing keep their order.
        let body = CloudEvent::new(
            &project,
            format!("{project}-{sequence}"),
            "/simulate",
            event_type,
            data,
        )
        .time_ms(clock.now_ms())
        .to_bytes();
        let publisher = publisher.clone();
        let exchange = config.inbound_exchange.clone();
        let routing_key = event_type.to_string();
        async move {
            publisher
                .publish_all(vec![Message {
                    exchange: &exchange,
                    routing_key: &routing_key,
                    body: &body,
                    properties: broker::json_properties(),
                }])
                .await
        }
    };

    let store = Store::connect(&config.redis_nodes(), StoreOptions::from_config(&config)).await?;
    let project_id = Id::parse(&project).expect("a valid id");

    send(
        "project.configured",
        json!({"new_visitors": args.strategy, "queue_position_updates": true,
               "max_wait_seconds": args.max_wait_seconds, "tie_break": args.tie_break}),
    )
    .await?;
    let patches: Vec<Value> = agents
        .iter()
        .map(|a| json!({"agent_id": a.id, "max_concurrent": a.max_concurrent, "weight": a.weight}))
        .collect();
    send("agent.upserted", json!({"agents": patches})).await?;
    for agent in &agents {
        send(
            "agent.status_changed",
            json!({"agent_id": agent.id, "status": "online"}),
        )
        .await?;
    }
    // Wait until the settings and the team are in place before the day starts (a worker
    // handles events concurrently, so they may be applied in any order).
    let started_waiting = Instant::now();
    loop {
        let ready = store.eligible(&project_id).await?.len();
        let settings = store.settings(&project_id).await?;
        let configured = settings.get("new_visitors") == Some(&json!(args.strategy));
        if configured && ready >= agents.iter().filter(|a| a.max_concurrent > 0).count() {
            break;
        }
        anyhow::ensure!(
            started_waiting.elapsed() < Duration::from_secs(30),
            "no worker applied the team within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let day = Instant::now();
    let (absence_start, absence_end) = (
        expected_seconds * (0.5 - args.absence / 2.0),
        expected_seconds * (0.5 + args.absence / 2.0),
    );
    let scheduled = !args.external && args.absence > 0.0 && agents.len() > 1;
    if scheduled {
        // The first agent's hours today: all day but the absence, in simulated time.
        let now = clock.now_ms();
        let local = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
        let at = |real_seconds: f64| {
            local(now + (real_seconds * 1000.0 * rate) as i64)
                .format("%H:%M")
                .to_string()
        };
        let weekday = local(now).format("%a").to_string().to_lowercase();
        let schedule = json!({"timezone": "UTC", "hours": {
            weekday: [["00:00", at(absence_start)], [at(absence_end), "24:00"]]}});
        send(
            "agent.upserted",
            json!({"agents": [{"agent_id": agents[0].id, "schedule": schedule}]}),
        )
        .await?;
    }
    let mut absent = false;
    let mut schedule_switches = 0;
    let mut next_arrival = day;
    let mut created = 0u64;
    // Conversations that arrived while the first agent was away: the share of the day that
    // counts for the expected shares (arrivals lag behind plan when the machine is busy).
    let mut created_while_away = 0u64;
    let mut created_at: HashMap<String, Instant> = HashMap::new();
    let mut closing: Vec<(Instant, String)> = vec![];
    let mut assigned: BTreeMap<String, u64> = BTreeMap::new();
    let mut max_load: HashMap<String, i64> = HashMap::new();
    let mut waits = vec![];
    let mut overflowed = 0u64;
    // Conversation -> (its estimated wait, simulated s; when it was given, simulated ms).
    let mut estimates: HashMap<String, (f64, i64)> = HashMap::new();
    let mut estimate_errors = vec![];
    // When each agent last received a conversation, and the longest it went without one.
    let mut last_served: HashMap<String, Instant> = HashMap::new();
    let mut without_work: HashMap<String, Duration> = HashMap::new();
    let mut last_progress = day;
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    // The day ends when every conversation is assigned and, with a schedule, once the agent
    // is back (both switches seen; bounded by the deadline below).
    while ((waits.len() as u64) + overflowed) < args.conversations
        || (scheduled && schedule_switches < 2)
    {
        tokio::select! {
            _ = ticker.tick() => {}
            delivery = decisions.next() => {
                let Some(Ok(delivery)) = delivery else { anyhow::bail!("lost the broker connection") };
                let event: Value = serde_json::from_slice(&delivery.data)?;
                if event["project"] != json!(project) {
                    continue;
                }
                if event["type"] == "agent.status_changed" && event["data"]["reason"] == "schedule" {
                    schedule_switches += 1;
                    continue;
                }
                let conversation = event["data"]["conversation_id"].as_str().unwrap_or("").to_string();
                if event["type"] == "conversation.overflowed" {
                    if created_at.remove(&conversation).is_some() {
                        overflowed += 1;
                    }
                    continue;
                }
                if event["type"] == "conversation.queue_position" {
                    if let Some(estimate) = event["data"]["estimated_wait_seconds"].as_f64() {
                        estimates.entry(conversation).or_insert((estimate, clock.now_ms()));
                    }
                    continue;
                }
                if event["type"] != "conversation.assigned" {
                    continue;
                }
                if let Some((estimate, given_ms)) = estimates.remove(&conversation) {
                    let actual = ((clock.now_ms() - given_ms) as f64 / 1000.0).max(1.0);
                    estimate_errors.push((estimate - actual) / actual);
                }
                let agent = event["data"]["agent_id"].as_str().unwrap_or("").to_string();
                if let Some(at) = created_at.remove(&conversation) {
                    waits.push(at.elapsed().as_secs_f64() * 1000.0);
                    *assigned.entry(agent.clone()).or_default() += 1;
                    let since = last_served.insert(agent.clone(), Instant::now()).unwrap_or(day);
                    let gap = without_work.entry(agent.clone()).or_default();
                    *gap = (*gap).max(since.elapsed());
                }
                let open = store.load(&project_id, &agent).await? as i64;
                let seen = max_load.entry(agent).or_default();
                *seen = (*seen).max(open);
                let handling = rand::rng().random_range(handling_min..=handling_max);
                closing.push((Instant::now() + Duration::from_millis(handling), conversation));
            }
        }
        let now = Instant::now();
        while created < args.conversations && next_arrival <= now {
            created += 1;
            let t = day.elapsed().as_secs_f64();
            if args.absence > 0.0 && t >= absence_start && t < absence_end {
                created_while_away += 1;
            }
            let id = format!("c{created}");
            created_at.insert(id.clone(), Instant::now());
            send(
                "conversation.created",
                json!({"conversation_id": id, "visitor_id": format!("v{created}")}),
            )
            .await?;
            let gap = -rand::rng().random::<f64>().max(1e-9).ln() / args.rate.max(0.01);
            next_arrival += Duration::from_secs_f64(gap);
        }
        let mut due = vec![];
        closing.retain(|(at, id)| {
            if *at <= now {
                due.push(id.clone());
                false
            } else {
                true
            }
        });
        for id in due {
            send("conversation.closed", json!({"conversation_id": id})).await?;
        }
        let t = day.elapsed().as_secs_f64();
        if args.absence > 0.0 && !scheduled && !absent && t >= absence_start && t < absence_end {
            absent = true;
            send(
                "agent.status_changed",
                json!({"agent_id": agents[0].id, "status": "offline"}),
            )
            .await?;
        } else if absent && t >= absence_end {
            absent = false;
            send(
                "agent.status_changed",
                json!({"agent_id": agents[0].id, "status": "online"}),
            )
            .await?;
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            eprintln!(
                "[{t:>5.1}s] created {created}/{} · assigned {} · waiting {} · overflowed {overflowed}",
                args.conversations,
                waits.len(),
                created_at.len()
            );
        }
        anyhow::ensure!(
            day.elapsed() < Duration::from_secs_f64(expected_seconds * 4.0 + 60.0),
            "the simulation did not finish"
        );
    }
    let seconds = day.elapsed().as_secs_f64();
    // Agents present all day (the first is away for part of it when there is an absence).
    let present = agents
        .iter()
        .skip(usize::from(args.absence > 0.0 && agents.len() > 1));
    // After an agent's last conversation, until the last one anyone got, counts too.
    let last_assignment = last_served.values().max().copied().unwrap_or(day);
    let longest_without_work_s = present
        .map(|a| {
            let since = last_served.get(&a.id).copied().unwrap_or(day);
            without_work
                .get(&a.id)
                .copied()
                .unwrap_or_default()
                .max(last_assignment.saturating_duration_since(since))
                .as_secs_f64()
        })
        .fold(0.0, f64::max);

    // Expected shares: by weight (weighted) or equal, among the agents present; the first agent
    // is away for `absence` of the day. (When the team is saturated, who frees up first decides
    // instead, and the shares follow capacity.)
    let share_of = |a: &SimAgent| {
        if args.strategy == "weighted" {
            a.weight
        } else {
            1.0
        }
    };
    let all: f64 = agents.iter().map(share_of).sum();
    let without_first: f64 = agents.iter().skip(1).map(share_of).sum();
    let away = if agents.len() > 1 {
        created_while_away as f64 / created.max(1) as f64
    } else {
        0.0
    };
    let expected = |i: usize, a: &SimAgent| {
        let present = share_of(a) / all;
        let during_absence = if i == 0 {
            0.0
        } else {
            share_of(a) / without_first
        };
        (1.0 - away) * present + away * during_absence
    };
    let total = waits.len().max(1) as f64;
    let rows = agents
        .iter()
        .enumerate()
        .map(|(i, a)| AgentRow {
            id: a.id.clone(),
            assigned: assigned.get(&a.id).copied().unwrap_or(0),
            share: assigned.get(&a.id).copied().unwrap_or(0) as f64 / total,
            expected: expected(i, a),
            max_load: max_load.get(&a.id).copied().unwrap_or(0),
            limit: a.max_concurrent,
        })
        .collect();
    waits.sort_by(|a, b| a.total_cmp(b));
    session.close().await;
    stop.cancel();
    if let Some(worker) = worker {
        worker.await??;
        cleanup(&config).await;
    }
    estimate_errors.sort_by(|a, b| a.total_cmp(b));
    Ok(Report {
        project,
        strategy: args.strategy,
        rows,
        waits_ms: waits,
        seconds,
        schedule_switches,
        overflowed,
        estimate_errors,
        tie_break: args.tie_break,
        longest_without_work_s,
    })
}

/// Deletes the private topology of an in-process simulation.
async fn cleanup(config: &Config) {
    let Ok(connection) =
        crate::broker::open_connection(config, lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        let _ = crate::broker::topology::delete(&channel, config).await;
    }
    let _ = connection.close(200, "done".into()).await;
}
