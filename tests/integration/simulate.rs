//! `switchboard simulate` drives a real worker and reports what a team lead checks.

use switchboard::cli::simulate::{simulate, SimulateArgs};
use switchboard::config::Config;

use crate::helpers::*;

#[tokio::test]
async fn a_simulated_day_reports_shares_loads_and_waits() {
    let config = Config {
        amqp_url: amqp_url().into(),
        redis_url: redis_url().into(),
        ..Config::default()
    };
    let chart = std::env::temp_dir().join(format!("{}.svg", unique("sim")));
    let args = SimulateArgs {
        strategy: "weighted".into(),
        // Limits high enough never to bind, so the shares show the weights even when a debug
        // build lags behind the arrivals.
        agents: "light:150:100,heavy:150:200".into(),
        conversations: 150,
        rate: 100.0,
        handling_ms: "10..40".into(),
        // `light` is scheduled away for the middle 40% of the (compressed) day.
        absence: 0.4,
        chart: chart.clone(),
        external: false,
        max_wait_seconds: 0,
        tie_break: "random".into(),
    };
    let report = simulate(config, args).await.unwrap();
    note_project(&report.project);
    assert_eq!(
        report.waits_ms.len(),
        150,
        "every conversation was assigned"
    );
    let total: u64 = report.rows.iter().map(|r| r.assigned).sum();
    assert_eq!(total, 150);
    for row in &report.rows {
        assert!(
            row.max_load <= row.limit as i64,
            "{} held {} of {}",
            row.id,
            row.max_load,
            row.limit
        );
        assert!(
            (row.share - row.expected).abs() < 0.1,
            "{}: {} vs {}",
            row.id,
            row.share,
            row.expected
        );
    }
    // Expected: 1/3 and 2/3 while both work, everything to `heavy` while `light` is away, for
    // the share of arrivals that came while it was away (about 40% of them, planned; fewer when
    // a busy machine delays the arrivals).
    let light = report.rows[0].expected;
    assert!(
        light > 0.6 / 3.0 - 0.07 && light < 1.0 / 3.0,
        "light: {light}"
    );
    assert!((light + report.rows[1].expected - 1.0).abs() < 1e-9);
    assert_eq!(
        report.schedule_switches, 2,
        "away at the start of the absence, back at its end"
    );
    let text = report.render();
    assert!(text.contains("heavy") && text.contains("p99"), "{text}");
    let svg = report.svg();
    assert!(svg.starts_with("<svg") && svg.contains(">light<") && svg.contains("polyline"));
    let _ = std::fs::remove_file(chart);
}

/// A team that cannot keep up: waits grow, conversations that wait past `max_wait_seconds`
/// overflow, and the waiting ones got estimates of their wait, whose error is reported.
#[tokio::test]
async fn a_saturated_day_reports_overflows_and_the_estimates_error() {
    let config = Config {
        amqp_url: amqp_url().into(),
        redis_url: redis_url().into(),
        ..Config::default()
    };
    let chart = std::env::temp_dir().join(format!("{}.svg", unique("sim")));
    let args = SimulateArgs {
        strategy: "least_loaded".into(),
        agents: "solo:1:1".into(),
        // A day long enough that, after the five departures an estimate needs, conversations
        // given one still reach the agent before they wait too long, even on a busy machine.
        conversations: 150,
        rate: 100.0,
        // 3 to 5 simulated minutes each (one real second is a simulated hour here).
        handling_ms: "50..80".into(),
        absence: 0.0,
        chart: chart.clone(),
        external: false,
        max_wait_seconds: 1800,
        tie_break: "random".into(),
    };
    let report = simulate(config, args).await.unwrap();
    note_project(&report.project);
    assert!(report.overflowed > 0, "{}", report.render());
    assert_eq!(report.waits_ms.len() as u64 + report.overflowed, 150);
    assert!(!report.estimate_errors.is_empty(), "{}", report.render());
    let text = report.render();
    assert!(
        text.contains("overflowed") && text.contains("median error"),
        "{text}"
    );
    let _ = std::fs::remove_file(chart);
}

/// A quiet day (agents mostly idle, so least_loaded meets ties at every arrival): with
/// `longest_idle` the next conversation goes to the agent served longest ago, and the day's
/// conversations come out even; the report says how even, to set beside a `random` day.
#[tokio::test]
async fn longest_idle_shares_a_quiet_day_evenly() {
    let config = Config {
        amqp_url: amqp_url().into(),
        redis_url: redis_url().into(),
        ..Config::default()
    };
    let chart = std::env::temp_dir().join(format!("{}.svg", unique("sim")));
    let args = SimulateArgs {
        strategy: "least_loaded".into(),
        agents: "ana:5:1,ben:5:1,chloe:5:1".into(),
        conversations: 60,
        rate: 20.0,
        handling_ms: "5..10".into(),
        absence: 0.0,
        chart: chart.clone(),
        external: false,
        max_wait_seconds: 0,
        tie_break: "longest_idle".into(),
    };
    let report = simulate(config, args).await.unwrap();
    note_project(&report.project);
    let (most, fewest) = report.spread();
    assert!(most - fewest <= 2, "{}", report.render());
    assert!(
        report.render().contains("fairness: "),
        "{}",
        report.render()
    );
    let _ = std::fs::remove_file(chart);
}
