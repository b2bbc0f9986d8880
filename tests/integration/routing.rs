//! Routing policy: precedence levels, offers to agents outside the levels, skills and rules with
//! widening steps, and channel rights.

use serde_json::{json, Value};
use switchboard::contract::OutboundEvent;

use crate::helpers::*;

fn only(outputs: &[OutboundEvent]) -> &Value {
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    &outputs[0].data
}

async fn created(p: &Project, conversation: &str, extra: Value) -> Vec<OutboundEvent> {
    let mut data =
        json!({"conversation_id": conversation, "visitor_id": format!("v-{conversation}")});
    data.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    p.apply("conversation.created", data).await
}

#[tokio::test]
async fn only_the_first_level_with_an_agent_online_serves() {
    let p = Project::new().await;
    p.online_team(json!([
        {"agent_id": "senior", "max_concurrent": 1, "priority": 1},
        {"agent_id": "junior", "max_concurrent": 5, "priority": 2},
    ]))
    .await;
    assert_eq!(only(&p.create("c1").await)["agent_id"], "senior");
    // Level 1 is full but online: with `when_offline` the conversation waits for it.
    assert_eq!(types(&p.create("c2").await), ["conversation.queued"]);
    assert_eq!(p.load("junior").await, 0);
    // Level 1 goes offline: level 2 serves, the waiting conversation first.
    let out = p.status("senior", "offline").await;
    assert_eq!(assigned_agents(&out), ["junior"]);
    assert_eq!(only(&p.create("c3").await)["agent_id"], "junior");
    // Level 1 comes back (and has room): it serves again.
    p.close("c1").await;
    p.status("senior", "online").await;
    assert_eq!(only(&p.create("c4").await)["agent_id"], "senior");
}

#[tokio::test]
async fn when_full_a_full_level_hands_over_to_the_next() {
    let p = Project::new().await;
    p.configure(json!({"priority_overflow": "when_full"})).await;
    p.online_team(json!([
        {"agent_id": "l1", "max_concurrent": 1, "priority": 1},
        {"agent_id": "l2", "max_concurrent": 1, "priority": 2},
        {"agent_id": "l3", "max_concurrent": 1, "priority": 3},
    ]))
    .await;
    let served: Vec<String> = [
        p.create("a").await,
        p.create("b").await,
        p.create("c").await,
    ]
    .iter()
    .flat_map(|o| assigned_agents(o))
    .collect();
    assert_eq!(served, ["l1", "l2", "l3"]);
    assert_eq!(types(&p.create("d").await), ["conversation.queued"]);
    // The first level to free up takes the waiting conversation.
    assert_eq!(assigned_agents(&p.close("b").await), ["l2"]);
}

#[tokio::test]
async fn agents_outside_the_levels_get_offers_only_when_no_level_agent_is_online() {
    let p = Project::new().await;
    p.online_team(json!([
        {"agent_id": "lead", "max_concurrent": 5, "priority": 1},
        {"agent_id": "x", "max_concurrent": 2},
        {"agent_id": "y", "max_concurrent": 2},
    ]))
    .await;
    assert_eq!(only(&p.create("c1").await)["agent_id"], "lead");
    p.status("lead", "offline").await;
    let out = p.create("c2").await;
    assert_eq!(types(&out), ["conversation.offered"]);
    let mut offered: Vec<String> =
        serde_json::from_value(out[0].data["agent_ids"].clone()).unwrap();
    offered.sort();
    assert_eq!(offered, ["x", "y"]);
    let claimed = p
        .apply(
            "agent.claim_requested",
            json!({"agent_id": "y", "conversation_id": "c2"}),
        )
        .await;
    assert_eq!(only(&claimed)["reason"], "claimed");
    let late = p
        .apply(
            "agent.claim_requested",
            json!({"agent_id": "x", "conversation_id": "c2"}),
        )
        .await;
    assert_eq!(only(&late)["reason"], "already_assigned");
}

#[tokio::test]
async fn a_rule_routes_by_skill_and_widens_after_its_wait() {
    let p = Project::new().await;
    p.configure(json!({"rules": [
        {"when": {"language": ["es", "pt"]},
         "route_to": [{"skills": ["spanish"], "wait_seconds": 30}, {"skills": []}]},
        {"when": {"vip": true}, "route_to": [{"skills": ["vip"]}]},
    ]}))
    .await;
    p.online_team(json!([
        {"agent_id": "maria", "max_concurrent": 1, "skills": ["spanish"]},
        {"agent_id": "bob", "max_concurrent": 5},
    ]))
    .await;
    // Spanish goes to the Spanish speaker, though bob is as free (ties are broken at random).
    for i in 0..5 {
        let spanish = created(&p, &format!("es-{i}"), json!({"language": "es"})).await;
        assert_eq!(only(&spanish)["agent_id"], "maria");
        p.close(&format!("es-{i}")).await;
    }
    let spanish = created(&p, "es1b", json!({"language": "es"})).await;
    assert_eq!(only(&spanish)["agent_id"], "maria");
    // Maria is full: the next one waits for her step...
    let waiting = p
        .apply_event(&p.event(
            "conversation.created",
            json!({"conversation_id": "es2", "visitor_id": "v", "language": "pt"}),
        ))
        .await;
    assert_eq!(types(&waiting.outputs), ["conversation.queued"]);
    assert_eq!(waiting.timers[0].delay_ms, 30_000);
    // ...while a conversation without a rule behind it is served at once (no head-of-line block).
    assert_eq!(assigned_agents(&p.create("plain").await), ["bob"]);
    // The step's wait runs out: the wider step takes any agent.
    let escalated = p
        .apply_event(&p.event("timer.fired", waiting.timers[0].data.clone()))
        .await;
    assert_eq!(only(&escalated.outputs)["agent_id"], "bob");
    assert_eq!(only(&escalated.outputs)["reason"], "rule_escalated");
    // A conversation waiting for a skill is taken the moment an agent with it frees up.
    let es3 = created(&p, "es3", json!({"language": "es"})).await;
    assert_eq!(types(&es3), ["conversation.queued"]);
    let freed = p.close("es1b").await;
    assert_eq!(only(&freed)["agent_id"], "maria");
    assert_eq!(only(&freed)["conversation_id"], "es3");
    // An attribute rule with a single step and nobody qualified simply waits.
    assert_eq!(
        types(&created(&p, "vip1", json!({"attributes": {"vip": true}})).await),
        ["conversation.queued"]
    );
    p.apply(
        "agent.upserted",
        json!({"agents": [{"agent_id": "bob", "skills": ["vip"]}]}),
    )
    .await;
    let waiting_now = p.waiting().await;
    assert!(
        !waiting_now.contains(&"vip1".to_string()),
        "bob gained the skill and took it: {waiting_now:?}"
    );
}

#[tokio::test]
async fn agents_receive_only_from_their_channels() {
    let p = Project::new().await;
    p.online_team(json!([
        {"agent_id": "wa", "max_concurrent": 5, "channels": ["whatsapp"]},
        {"agent_id": "any", "max_concurrent": 5},
        {"agent_id": "acct", "max_concurrent": 5, "channels": ["wa:3312345"]},
    ]))
    .await;
    for i in 0..5 {
        let out = created(&p, &format!("web{i}"), json!({"channel": "web"})).await;
        assert_eq!(
            only(&out)["agent_id"],
            "any",
            "web conversations only reach unrestricted agents"
        );
    }
    // `any` is full: the next web conversation waits rather than reach a restricted agent.
    assert_eq!(
        types(&created(&p, "web5", json!({"channel": "web"})).await),
        ["conversation.queued"]
    );
    let mut whatsapp = std::collections::BTreeSet::new();
    for i in 0..6 {
        let out = created(
            &p,
            &format!("wa{i}"),
            json!({"channel": "whatsapp", "channel_account": "wa:3312345"}),
        )
        .await;
        whatsapp.insert(only(&out)["agent_id"].as_str().unwrap().to_string());
    }
    assert!(
        whatsapp.contains("wa") && whatsapp.contains("acct"),
        "{whatsapp:?}"
    );
    // Lifting the restriction (null = back to all channels) opens the web to `wa`, which takes
    // the waiting web conversation at once.
    let out = p
        .apply(
            "agent.upserted",
            json!({"agents": [{"agent_id": "wa", "channels": null}]}),
        )
        .await;
    assert_eq!(only(&out)["conversation_id"], "web5");
    assert_eq!(only(&out)["agent_id"], "wa");
}

#[tokio::test]
async fn a_thousand_agents_in_one_upsert() {
    let p = Project::new().await;
    p.configure(
        json!({"rules": [{"when": {"language": "de"}, "route_to": [{"skills": ["german"]}]}]}),
    )
    .await;
    let agents: Vec<Value> = (0..1000)
        .map(|i| json!({"agent_id": format!("agent-{i}"), "max_concurrent": 2, "skills": if i % 100 == 0 { json!(["german"]) } else { json!([]) }}))
        .collect();
    p.apply("agent.upserted", json!({"agents": agents})).await;
    p.status("agent-500", "online").await;
    p.status("agent-501", "online").await;
    let german = created(&p, "de1", json!({"language": "de"})).await;
    assert_eq!(only(&german)["agent_id"], "agent-500");
}

#[tokio::test]
async fn daily_limits_count_the_projects_day_and_reset_at_its_midnight() {
    let mut p = Project::new().await;
    p.configure(json!({"timezone": "Asia/Tokyo"})).await;
    // 23:30 in Tokyo (14:30 UTC).
    p.now_ms = chrono::DateTime::parse_from_rfc3339("2026-11-22T14:30:00Z")
        .unwrap()
        .timestamp_millis();
    p.online_team(json!([{"agent_id": "a", "max_concurrent": 10, "daily_limit": 2}]))
        .await;
    assert_eq!(assigned_agents(&p.create("c1").await), ["a"]);
    let second = p
        .apply_event(&p.event(
            "conversation.created",
            json!({"conversation_id": "c2", "visitor_id": "v2"}),
        ))
        .await;
    assert_eq!(assigned_agents(&second.outputs), ["a"]);
    // Reaching the limit arms a timer for local midnight, 30 minutes away.
    assert_eq!(second.timers.len(), 1);
    assert_eq!(second.timers[0].data["timer"], "new_day");
    assert_eq!(second.timers[0].delay_ms, 30 * 60 * 1000);
    // The limit is reached for today, though the agent has room.
    assert_eq!(types(&p.create("c3").await), ["conversation.queued"]);
    let day = p
        .apply_event(&p.event(
            "agent.status_changed",
            json!({"agent_id": "a", "status": "online"}),
        ))
        .await;
    assert!(
        day.timers.is_empty(),
        "one midnight timer per day, armed already"
    );
    // Midnight in Tokyo (15:00 UTC, same UTC day): the timer fires, the day starts again and
    // the waiting conversation is assigned without waiting for any other event.
    p.now_ms += 30 * 60 * 1000;
    let midnight = p
        .apply_event(&p.event("timer.fired", json!({"timer": "new_day", "token": 0})))
        .await;
    assert_eq!(assigned_agents(&midnight.outputs), ["a"]);
    assert_eq!(midnight.outputs[0].data["conversation_id"], "c3");
    assert_eq!(assigned_agents(&p.create("c4").await), ["a"]);
    assert_eq!(types(&p.create("c5").await), ["conversation.queued"]);
    // The weight defaults to the daily limit (weighted strategy).
    let q = Project::new().await;
    q.configure(json!({"new_visitors": "weighted"})).await;
    q.online_team(json!([
        {"agent_id": "small", "max_concurrent": 100, "daily_limit": 100},
        {"agent_id": "large", "max_concurrent": 100, "daily_limit": 300},
    ]))
    .await;
    for i in 0..40 {
        q.create(&format!("w{i}")).await;
    }
    assert_eq!(
        (q.load("small").await, q.load("large").await),
        (10, 30),
        "exactly 1:3"
    );
}

#[tokio::test]
async fn weighted_shares_hold_inside_a_level_and_agents_can_change_level() {
    let p = Project::new().await;
    p.configure(json!({"new_visitors": "weighted"})).await;
    p.online_team(json!([
        {"agent_id": "one", "max_concurrent": 100, "weight": 100, "priority": 1},
        {"agent_id": "two", "max_concurrent": 100, "weight": 200, "priority": 1},
        {"agent_id": "backup", "max_concurrent": 100, "weight": 100, "priority": 2},
    ]))
    .await;
    for i in 0..30 {
        p.create(&format!("c{i}")).await;
    }
    assert_eq!(
        (
            p.load("one").await,
            p.load("two").await,
            p.load("backup").await
        ),
        (10, 20, 0)
    );
    // `backup` is promoted to level 1 and `one` demoted: the next ones go to level 1 only.
    p.apply(
        "agent.upserted",
        json!({"agents": [
        {"agent_id": "backup", "priority": 1}, {"agent_id": "one", "priority": 2}]}),
    )
    .await;
    for i in 30..60 {
        p.create(&format!("c{i}")).await;
    }
    assert_eq!(
        p.load("one").await,
        10,
        "a demoted agent is out of level 1's pools"
    );
    assert_eq!(p.load("two").await + p.load("backup").await, 50);
    // Weights 200:100 in the new level 1: about 20 and 10 of the 30 (the promoted agent joins
    // at the current virtual time, so the split is exact up to where the rotation starts).
    let backup = p.load("backup").await;
    assert!(
        (9..=11).contains(&backup),
        "the promoted agent took {backup} of 30"
    );
}

fn at(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

#[tokio::test]
async fn schedules_switch_agents_at_their_local_hours_across_a_dst_change() {
    let mut p = Project::new().await;
    // Saturday 2026-03-28, 17:00 UTC = 18:00 in Paris (UTC+1); DST starts Sunday 02:00.
    p.now_ms = at("2026-03-28T17:00:00Z");
    let schedule = json!({"timezone": "Europe/Paris", "hours": {"sun": [["09:00", "17:00"]]}});
    let upserted = p
        .apply_event(&p.event(
            "agent.upserted",
            json!({"agents": [
            {"agent_id": "sam", "max_concurrent": 3, "schedule": schedule}]}),
        ))
        .await;
    // Offline now (a new agent is offline anyway: no switch to announce).
    assert!(upserted.outputs.is_empty(), "{:?}", upserted.outputs);
    // The next switch is Sunday 09:00 in Paris, 07:00 UTC: 14 hours away, not 15.
    assert_eq!(upserted.timers[0].delay_ms, 14 * 3600 * 1000);
    assert_eq!(types(&p.create("early").await), ["conversation.queued"]);

    // Sunday 09:00 local: the timer fires; the agent switches online, says so, takes the queue.
    p.now_ms = at("2026-03-29T07:00:00Z");
    let opened = p
        .apply_event(&p.event("timer.fired", upserted.timers[0].data.clone()))
        .await;
    assert_eq!(
        types(&opened.outputs),
        ["agent.status_changed", "conversation.assigned"]
    );
    assert_eq!(
        opened.outputs[0].data,
        json!({"agent_id": "sam", "status": "online", "reason": "schedule"})
    );
    assert_eq!(opened.outputs[1].data["conversation_id"], "early");
    assert_eq!(
        opened.timers[0].delay_ms,
        8 * 3600 * 1000,
        "closes at 17:00 local"
    );
    // The same timer again (a redelivery under another id, or a second worker) changes nothing.
    assert!(p
        .apply_event(&p.event("timer.fired", upserted.timers[0].data.clone()))
        .await
        .outputs
        .is_empty());

    // A status set by hand stands until the next boundary...
    p.now_ms = at("2026-03-29T10:00:00Z");
    p.status("sam", "offline").await;
    assert_eq!(types(&p.create("noon").await), ["conversation.queued"]);
    // ...where the schedule takes over again (17:00 local: offline, and it already is).
    p.now_ms = at("2026-03-29T15:00:00Z");
    let closed = p
        .apply_event(&p.event("timer.fired", opened.timers[0].data.clone()))
        .await;
    assert!(closed.outputs.is_empty(), "{:?}", closed.outputs);
    assert_eq!(
        closed.timers[0].delay_ms,
        7 * 24 * 3600 * 1000 - 8 * 3600 * 1000,
        "next Sunday 09:00"
    );

    // Removing the schedule (null) makes its pending timer harmless.
    p.apply(
        "agent.upserted",
        json!({"agents": [{"agent_id": "sam", "schedule": null}]}),
    )
    .await;
    p.now_ms = at("2026-04-05T07:00:00Z");
    assert!(p
        .apply_event(&p.event("timer.fired", closed.timers[0].data.clone()))
        .await
        .outputs
        .is_empty());
}
