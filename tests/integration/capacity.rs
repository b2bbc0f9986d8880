//! Capacity and fairness as support teams run them, driven through the store (the clock and the
//! timers are the test's): capacity per channel, inactivity, wrap-up, longest idle, auto-away
//! and skill levels. `capacity_workers.rs` checks each through worker processes.

use serde_json::{json, Value};
use switchboard::contract::OutboundEvent;

use crate::helpers::*;

/// The data of the outputs of one type.
fn data_of<'a>(outputs: &'a [OutboundEvent], event_type: &str) -> Vec<&'a Value> {
    outputs
        .iter()
        .filter(|o| o.event_type == event_type)
        .map(|o| &o.data)
        .collect()
}

/// (conversation, agent) of each assignment, in order.
fn assignments(outputs: &[OutboundEvent]) -> Vec<(String, String)> {
    data_of(outputs, "conversation.assigned")
        .into_iter()
        .map(|d| {
            (
                d["conversation_id"].as_str().unwrap().to_string(),
                d["agent_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(conversation: &str, agent: &str) -> (String, String) {
    (conversation.to_string(), agent.to_string())
}

async fn channel_load(p: &Project, agent: &str, channel: &str) -> u64 {
    p.store
        .channel_load(&p.project(), agent, channel)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_channel_capacity_bounds_its_channel_and_max_concurrent_the_whole() {
    let p = Project::new().await;
    p.online_team(json!([{"agent_id": "a", "max_concurrent": 3, "capacity": {"chat": 1}}]))
        .await;
    assert_eq!(
        assignments(&p.create_on("c1", "chat").await),
        [pair("c1", "a")]
    );
    // Full for chats, it still takes emails, up to max_concurrent.
    assert_eq!(
        types(&p.create_on("c2", "chat").await),
        ["conversation.queued"]
    );
    assert_eq!(
        assignments(&p.create_on("e1", "email").await),
        [pair("e1", "a")]
    );
    assert_eq!(
        assignments(&p.create_on("e2", "email").await),
        [pair("e2", "a")]
    );
    assert_eq!(
        types(&p.create_on("e3", "email").await),
        ["conversation.queued"]
    );
    assert_eq!(p.load("a").await, 3);
    assert_eq!(channel_load(&p, "a", "chat").await, 1);
    // An email closes: the waiting email takes the slot, not the older chat (chats are full).
    assert_eq!(assignments(&p.close("e1").await), [pair("e3", "a")]);
    // The chat closes: the waiting chat goes.
    assert_eq!(assignments(&p.close("c1").await), [pair("c2", "a")]);
    assert_eq!(channel_load(&p, "a", "chat").await, 1);
    // A channel with capacity 0 is never assigned automatically to that agent.
    p.apply(
        "agent.upserted",
        json!({"agents": [{"agent_id": "b", "max_concurrent": 5, "capacity": {"voice": 0}}]}),
    )
    .await;
    p.status("b", "online").await;
    assert_eq!(
        types(&p.create_on("v1", "voice").await),
        ["conversation.queued"]
    );
    assert_eq!(
        assignments(&p.create_on("c3", "chat").await),
        [pair("c3", "b")]
    );
}

/// The first conversation of a channel makes that channel's pool and places every agent in it,
/// one after another: whether each has room in the channel is its own. Here the first agent
/// placed has room for chats and the second none (a chat capacity of 0), so every chat goes
/// to the first, whatever their loads.
#[tokio::test]
async fn a_new_channel_pool_asks_each_agent_for_its_own_room() {
    let p = Project::new().await;
    p.online_team(json!([
        {"agent_id": "a", "max_concurrent": 10, "capacity": {"chat": 10}},
        {"agent_id": "b", "max_concurrent": 10, "capacity": {"chat": 0}}
    ]))
    .await;
    for conversation in ["c1", "c2", "c3"] {
        assert_eq!(
            assignments(&p.create_on(conversation, "chat").await),
            [pair(conversation, "a")]
        );
    }
    assert_eq!(
        (channel_load(&p, "a", "chat").await, p.load("b").await),
        (3, 0)
    );
}

#[tokio::test]
async fn claims_transfers_and_returning_visitors_respect_a_channel_capacity() {
    let p = Project::new().await;
    p.online_team(json!([
        {"agent_id": "a", "max_concurrent": 5, "capacity": {"chat": 1}},
        {"agent_id": "b", "max_concurrent": 5, "auto_assign": false}
    ]))
    .await;
    assert_eq!(
        assignments(&p.create_on("c1", "chat").await),
        [pair("c1", "a")]
    );
    assert_eq!(
        types(&p.create_on("c2", "chat").await),
        ["conversation.queued"]
    );
    let claim = p
        .apply(
            "agent.claim_requested",
            json!({"agent_id": "a", "conversation_id": "c2"}),
        )
        .await;
    assert_eq!(
        data_of(&claim, "command.rejected")[0]["reason"],
        "agent_at_limit"
    );
    // "Get next" skips the channel it has no room for: here nothing else waits.
    let next = p
        .apply("agent.claim_requested", json!({"agent_id": "a"}))
        .await;
    assert_eq!(
        data_of(&next, "command.rejected")[0]["reason"],
        "nothing_waiting"
    );
    // b claims c2 (by hand), then tries to hand it to a, who has no room for a chat.
    let claimed = p
        .apply(
            "agent.claim_requested",
            json!({"agent_id": "b", "conversation_id": "c2"}),
        )
        .await;
    assert_eq!(assignments(&claimed), [pair("c2", "b")]);
    let transfer = p
        .apply(
            "conversation.transfer_requested",
            json!({"conversation_id": "c2", "to_agent_id": "a"}),
        )
        .await;
    assert_eq!(
        data_of(&transfer, "command.rejected")[0]["reason"],
        "agent_at_limit"
    );
    // c1's visitor comes back on a new chat while a is full for chats: a new agent is needed,
    // and b takes no automatic assignments, so it waits.
    let returning = p
        .apply(
            "conversation.created",
            json!({"conversation_id": "c3", "visitor_id": "v-c1", "channel": "chat"}),
        )
        .await;
    assert_eq!(types(&returning), ["conversation.queued"]);
    assert_eq!(channel_load(&p, "a", "chat").await, 1);
}

#[tokio::test]
async fn a_new_capacity_counts_what_the_agent_already_holds() {
    let p = Project::new().await;
    p.online_agents(&[("a", 5)]).await;
    p.create_on("c1", "chat").await;
    p.create_on("c2", "chat").await;
    assert_eq!(p.load("a").await, 2);
    // Conversations waiting before the first capacity existed follow it too.
    p.apply(
        "agent.upserted",
        json!({"agents": [{"agent_id": "a", "capacity": {"chat": 1}}]}),
    )
    .await;
    assert_eq!(channel_load(&p, "a", "chat").await, 2);
    assert_eq!(
        types(&p.create_on("c3", "chat").await),
        ["conversation.queued"]
    );
    // One closes: still at its capacity (1 of 1).
    assert!(assignments(&p.close("c1").await).is_empty());
    assert_eq!(assignments(&p.close("c2").await), [pair("c3", "a")]);
    // The capacity goes: chats are bounded by max_concurrent alone again.
    p.apply(
        "agent.upserted",
        json!({"agents": [{"agent_id": "a", "capacity": null}]}),
    )
    .await;
    assert_eq!(channel_load(&p, "a", "chat").await, 0);
    assert_eq!(
        assignments(&p.create_on("c4", "chat").await),
        [pair("c4", "a")]
    );
}

#[tokio::test]
async fn a_conversation_gone_quiet_stops_counting_until_the_visitor_writes_again() {
    let mut p = Project::new().await;
    p.configure(json!({"inactive_after_seconds": 60})).await;
    p.online_agents(&[("a", 1)]).await;
    let c1 = p
        .apply_event(&p.event(
            "conversation.created",
            json!({"conversation_id": "c1", "visitor_id": "v1"}),
        ))
        .await;
    assert_eq!(assignments(&c1.outputs), [pair("c1", "a")]);
    let timer = &c1.timers[0];
    assert_eq!(
        (timer.data["timer"].as_str(), timer.delay_ms),
        (Some("inactivity"), 60_000)
    );
    assert_eq!(types(&p.create("c2").await), ["conversation.queued"]);
    // The visitor writes after 30 s: the timer, when it fires at 60 s, arms itself again for
    // the 30 s left.
    p.now_ms += 30_000;
    p.message("c1").await;
    p.now_ms += 30_000;
    let early = p.fire(timer).await;
    assert!(early.outputs.is_empty());
    assert_eq!(early.timers[0].delay_ms, 30_000);
    // Quiet for 60 s: c1 stops counting, and the waiting c2 takes the slot.
    p.now_ms += 30_000;
    let quiet = p.fire(&early.timers[0]).await;
    assert_eq!(assignments(&quiet.outputs), [pair("c2", "a")]);
    let project = p.project();
    assert_eq!(
        p.store.inactive_conversations(&project).await.unwrap(),
        [("a".to_string(), "c1".to_string())]
    );
    assert_eq!(p.load("a").await, 1);
    // `inspect` says so.
    let explained = p
        .store
        .explain(
            &project,
            switchboard::store::explain::Question::Conversation("c1"),
            p.now_ms,
        )
        .await
        .unwrap();
    assert_eq!(explained["inactive"], true);
    // The visitor writes again: c1 counts again, above max_concurrent; nothing new comes.
    p.message("c1").await;
    assert_eq!(p.load("a").await, 2);
    assert!(p
        .store
        .inactive_conversations(&project)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(types(&p.create("c3").await), ["conversation.queued"]);
    assert!(
        assignments(&p.close("c2").await).is_empty(),
        "still at its limit"
    );
    assert_eq!(assignments(&p.close("c1").await), [pair("c3", "a")]);
}

#[tokio::test]
async fn inactivity_switched_off_makes_every_quiet_conversation_count_again() {
    let mut p = Project::new().await;
    let project = p.project();
    p.configure(json!({"inactive_after_seconds": 10})).await;
    p.online_agents(&[("a", 1)]).await;
    let c1 = p
        .apply_event(&p.event(
            "conversation.created",
            json!({"conversation_id": "c1", "visitor_id": "v1"}),
        ))
        .await;
    p.now_ms += 10_000;
    p.fire(&c1.timers[0]).await;
    assert_eq!(p.load("a").await, 0);
    p.configure(json!({"inactive_after_seconds": 0})).await;
    assert_eq!(p.load("a").await, 1);
    assert_eq!(types(&p.create("c2").await), ["conversation.queued"]);
    // Switched on again, open conversations are timed from their last message.
    let on = p
        .apply_event(&p.event("project.configured", json!({"inactive_after_seconds": 10})))
        .await;
    assert_eq!(on.timers.len(), 1);
    assert_eq!(on.timers[0].data["conversation_id"], "c1");
    let quiet = p.fire(&on.timers[0]).await;
    assert_eq!(assignments(&quiet.outputs), [pair("c2", "a")]);
    // Closing the quiet conversation frees nothing it did not hold.
    assert!(p.close("c1").await.is_empty());
    assert_eq!(p.load("a").await, 1);
    assert!(p
        .store
        .inactive_conversations(&project)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_wrap_up_keeps_the_slot_until_its_timer_and_a_reopen_ends_it() {
    let p = Project::new().await;
    p.configure(json!({"wrap_up_seconds": 30})).await;
    p.online_agents(&[("a", 1)]).await;
    p.create("c1").await;
    assert_eq!(types(&p.create("c2").await), ["conversation.queued"]);
    let closed = p
        .apply_event(&p.event("conversation.closed", json!({"conversation_id": "c1"})))
        .await;
    assert!(
        closed.outputs.is_empty(),
        "the slot is kept for the wrap-up"
    );
    assert_eq!(p.load("a").await, 1);
    let wrap_up = &closed.timers[0];
    assert_eq!(
        (wrap_up.data["timer"].as_str(), wrap_up.delay_ms),
        (Some("wrap_up"), 30_000)
    );
    assert_eq!(
        assignments(&p.fire(wrap_up).await.outputs),
        [pair("c2", "a")]
    );
    // Fired again (a redelivery), it changes nothing.
    assert!(p.fire(wrap_up).await.outputs.is_empty());
    assert_eq!(p.load("a").await, 1);
    // c2 closes; its visitor writes during the wrap-up: it goes back to a, in the slot the
    // wrap-up held, and the wrap-up's timer no longer frees it.
    let closed = p
        .apply_event(&p.event("conversation.closed", json!({"conversation_id": "c2"})))
        .await;
    let reopened = p.message("c2").await;
    assert_eq!(assignments(&reopened.outputs), [pair("c2", "a")]);
    assert!(p.fire(&closed.timers[0]).await.outputs.is_empty());
    assert_eq!(p.load("a").await, 1);
    // The agent leaves during a wrap-up: nothing stays held.
    p.close("c2").await;
    p.apply("agent.removed", json!({"agent_id": "a"})).await;
    assert_eq!(p.load("a").await, 0);
}

#[tokio::test]
async fn longest_idle_breaks_equal_loads_by_the_oldest_last_assignment() {
    let p = Project::new().await;
    p.configure(json!({"tie_break": "longest_idle"})).await;
    p.online_agents(&[("a", 10), ("b", 10), ("c", 10)]).await;
    // Every load stays 0 between conversations: only the tie-break decides. Agents never
    // assigned come first (by id among themselves); then the one served longest ago.
    let mut order = vec![];
    for i in 0..7 {
        let conversation = format!("n{i}");
        order.push(assignments(&p.create(&conversation).await)[0].1.clone());
        p.close(&conversation).await;
    }
    assert_eq!(order, ["a", "b", "c", "a", "b", "c", "a"]);
    // b, idle longest now, takes one more and goes to the back.
    assert_eq!(assignments(&p.create("w1").await), [pair("w1", "b")]);
    p.close("w1").await;
    let mut next = vec![];
    for i in 0..3 {
        let conversation = format!("m{i}");
        next.push(assignments(&p.create(&conversation).await)[0].1.clone());
        p.close(&conversation).await;
    }
    assert_eq!(next, ["c", "a", "b"]);
}

#[tokio::test]
async fn auto_away_after_missed_assignments_in_a_row_and_a_reply_resets_the_count() {
    let p = Project::new().await;
    p.configure(json!({"reply_timeout_seconds": 10, "away_after_missed": 2,
                        "tie_break": "longest_idle"}))
        .await;
    p.online_agents(&[("a", 10), ("b", 10)]).await;
    let created = |conversation: &'static str| {
        p.event(
            "conversation.created",
            json!({"conversation_id": conversation, "visitor_id": conversation}),
        )
    };
    // a gets c1 (never assigned, first by id) and misses it: it moves to b.
    let c1 = p.apply_event(&created("c1")).await;
    assert_eq!(assignments(&c1.outputs), [pair("c1", "a")]);
    let moved = p.fire(&c1.timers[0]).await;
    assert_eq!(assignments(&moved.outputs), [pair("c1", "b")]);
    // a replies on its next conversation: the count starts again.
    let c2 = p.apply_event(&created("c2")).await;
    assert_eq!(assignments(&c2.outputs), [pair("c2", "a")]);
    p.apply(
        "agent.replied",
        json!({"conversation_id": "c2", "agent_id": "a"}),
    )
    .await;
    p.close("c2").await;
    // Then two misses in a row: the second sets a busy, published with its reason.
    let c3 = p.apply_event(&created("c3")).await;
    assert_eq!(assignments(&c3.outputs), [pair("c3", "a")]);
    let first_miss = p.fire(&c3.timers[0]).await.outputs;
    assert_eq!(assignments(&first_miss), [pair("c3", "b")]);
    assert!(data_of(&first_miss, "agent.status_changed").is_empty());
    let c4 = p.apply_event(&created("c4")).await;
    assert_eq!(assignments(&c4.outputs), [pair("c4", "a")]);
    let second_miss = p.fire(&c4.timers[0]).await.outputs;
    assert_eq!(assignments(&second_miss), [pair("c4", "b")]);
    assert_eq!(
        data_of(&second_miss, "agent.status_changed"),
        [&json!({"agent_id": "a", "status": "busy", "reason": "missed_assignments"})]
    );
    assert_eq!(p.store.status(&p.project(), "a").await.unwrap(), "busy");
    // Busy, it gets nothing new.
    assert_eq!(assignments(&p.create("c5").await), [pair("c5", "b")]);
}

/// Agents' configurations decoded in one call are kept for later calls by their stored text,
/// whatever the project (an agent read again costs no JSON decode), so two projects whose agent
/// "a" was upserted alike share one decoded table. What one project changes in its agent (here
/// the sequence of the agent's published statuses, counted in its configuration when missed
/// assignments set it busy) stays that project's: the other counts from its own.
#[tokio::test]
async fn an_agents_configuration_changed_in_one_project_stays_that_projects() {
    /// Two missed assignments in a row set agent "a" busy: the sequence that status carries.
    async fn busy_after_two_misses(p: &Project) -> Option<u64> {
        p.configure(json!({"reply_timeout_seconds": 10, "away_after_missed": 2,
                            "tie_break": "longest_idle"}))
            .await;
        p.online_agents(&[("a", 10), ("b", 10)]).await;
        let mut outputs = vec![];
        for conversation in ["c1", "c2"] {
            let created = p
                .apply_event(&p.event(
                    "conversation.created",
                    json!({"conversation_id": conversation, "visitor_id": conversation}),
                ))
                .await;
            assert_eq!(assignments(&created.outputs), [pair(conversation, "a")]);
            outputs = p.fire(&created.timers[0]).await.outputs;
        }
        let busy: Vec<_> = outputs
            .iter()
            .filter(|output| output.event_type == "agent.status_changed")
            .collect();
        assert_eq!(busy.len(), 1, "the second miss sets a busy");
        busy[0].sequence
    }
    let (first, second) = (Project::new().await, Project::new().await);
    assert_eq!(busy_after_two_misses(&first).await, Some(1));
    assert_eq!(
        busy_after_two_misses(&second).await,
        Some(1),
        "counted from its own configuration"
    );
}

#[tokio::test]
async fn skill_levels_rank_agents_and_a_wider_step_lowers_the_minimum() {
    let p = Project::new().await;
    p.configure(json!({"rules": [{"route_to": [
        {"skills": {"es": 5}, "order_by": "skill_level", "wait_seconds": 30},
        {"skills": ["es"]}
    ]}]}))
    .await;
    p.online_team(json!([
        {"agent_id": "novice", "max_concurrent": 1, "skills": {"es": 3}},
        {"agent_id": "expert", "max_concurrent": 1, "skills": {"es": 9, "billing": 2}},
        {"agent_id": "good", "max_concurrent": 1, "skills": {"es": 6}},
        {"agent_id": "none", "max_concurrent": 1, "skills": ["fr"]}
    ]))
    .await;
    // Highest level first, whatever the load order.
    assert_eq!(assignments(&p.create("c1").await), [pair("c1", "expert")]);
    assert_eq!(assignments(&p.create("c2").await), [pair("c2", "good")]);
    // Nobody at level 5 or more is free: it waits, then the wider step takes the novice.
    let c3 = p
        .apply_event(&p.event(
            "conversation.created",
            json!({"conversation_id": "c3", "visitor_id": "v3"}),
        ))
        .await;
    assert_eq!(types(&c3.outputs), ["conversation.queued"]);
    let widened = p.fire(&c3.timers[0]).await;
    assert_eq!(assignments(&widened.outputs), [pair("c3", "novice")]);
    // A level raised at run time puts the agent in its new rank.
    p.close("c1").await;
    p.close("c2").await;
    p.close("c3").await;
    p.apply(
        "agent.upserted",
        json!({"agents": [{"agent_id": "novice", "skills": {"es": 10}}]}),
    )
    .await;
    assert_eq!(assignments(&p.create("c4").await), [pair("c4", "novice")]);
    assert_eq!(assignments(&p.create("c5").await), [pair("c5", "expert")]);
}

#[tokio::test]
async fn equal_skill_levels_fall_back_to_the_strategy() {
    let p = Project::new().await;
    p.configure(json!({"rules": [{"route_to": [
        {"skills": {"es": 1}, "order_by": "skill_level"}
    ]}]}))
    .await;
    p.online_team(json!([
        {"agent_id": "a", "max_concurrent": 3, "skills": {"es": 7}},
        {"agent_id": "b", "max_concurrent": 3, "skills": {"es": 7}},
        {"agent_id": "c", "max_concurrent": 3, "skills": {"es": 2}}
    ]))
    .await;
    // a and b share the top rank: least_loaded alternates them; c only once both are full.
    let mut agents = vec![];
    for i in 0..7 {
        agents.push(assignments(&p.create(&format!("c{i}")).await)[0].1.clone());
    }
    let count = |agent: &str| agents.iter().filter(|a| *a == agent).count();
    assert_eq!(agents[..2].iter().filter(|a| *a == "c").count(), 0);
    assert_eq!(
        (count("a"), count("b"), count("c")),
        (3, 3, 1),
        "{agents:?}"
    );
    assert_eq!(agents[6], "c");
}

#[tokio::test]
async fn broadcast_offers_a_conversation_only_to_agents_with_room_in_its_channel() {
    let p = Project::new().await;
    p.configure(json!({"mode": "broadcast"})).await;
    p.online_team(json!([
        {"agent_id": "a", "max_concurrent": 5, "capacity": {"chat": 0}},
        {"agent_id": "b", "max_concurrent": 5}
    ]))
    .await;
    let offered = p.create_on("c1", "chat").await;
    assert_eq!(
        data_of(&offered, "conversation.offered")[0]["agent_ids"],
        json!(["b"])
    );
    let email = p.create_on("e1", "email").await;
    let mut agents: Vec<String> =
        serde_json::from_value(data_of(&email, "conversation.offered")[0]["agent_ids"].clone())
            .unwrap();
    agents.sort();
    assert_eq!(agents, ["a", "b"]);
}
