//! The waiting queue, through the store directly: capacity is never exceeded, the rest waits
//! by priority then arrival, and every kind of capacity that appears serves it.

use serde_json::json;

use crate::helpers::*;

use super::batches::apply_batch;

#[tokio::test]
async fn capacity_is_never_exceeded_and_the_rest_waits_in_order() {
    let p = Project::new().await;
    p.online_agents(&[("a", 2), ("b", 1)]).await;
    let mut queued = vec![];
    for i in 0..5 {
        let out = p.create(&format!("c{i}")).await;
        if types(&out) == ["conversation.queued"] {
            assert_eq!(out[0].data["reason"], "no_eligible_agent");
            queued.push(format!("c{i}"));
        }
    }
    assert_eq!(queued, ["c3", "c4"]);
    assert_eq!((p.load("a").await, p.load("b").await), (2, 1));
    // A higher priority conversation jumps ahead of earlier arrivals.
    p.apply(
        "conversation.created",
        json!({"conversation_id": "urgent", "visitor_id": "v", "priority": 5}),
    )
    .await;
    assert_eq!(p.waiting().await, ["urgent", "c3", "c4"]);
    // A close frees a slot: the head of the queue takes it at once.
    let out = p.close("c0").await;
    assert_eq!(types(&out), ["conversation.assigned"]);
    assert_eq!(out[0].data["conversation_id"], "urgent");
    assert_eq!(out[0].data["reason"], "backlog");
    assert_eq!(p.waiting().await, ["c3", "c4"]);
}

#[tokio::test]
async fn the_queue_drains_on_every_kind_of_capacity() {
    let p = Project::new().await;
    p.apply(
        "agent.upserted",
        json!({"agents": [{"agent_id": "a", "max_concurrent": 1}]}),
    )
    .await;
    for i in 0..6 {
        p.create(&format!("c{i}")).await;
    }
    assert_eq!(p.waiting().await.len(), 6);
    // An agent comes online.
    let out = p.status("a", "online").await;
    assert_eq!(assigned_agents(&out), ["a"]);
    // A limit is raised.
    let out = p
        .apply(
            "agent.upserted",
            json!({"agents": [{"agent_id": "a", "max_concurrent": 2}]}),
        )
        .await;
    assert_eq!(assigned_agents(&out), ["a"]);
    // An agent is added (and comes online).
    p.apply(
        "agent.upserted",
        json!({"agents": [{"agent_id": "b", "max_concurrent": 2}]}),
    )
    .await;
    let out = p.status("b", "online").await;
    assert_eq!(assigned_agents(&out), ["b", "b"]);
    // A conversation closes.
    let out = p.close("c0").await;
    assert_eq!(assigned_agents(&out), ["a"]);
    // Busy agents are included by a setting.
    p.apply(
        "agent.upserted",
        json!({"agents": [{"agent_id": "c", "max_concurrent": 1}]}),
    )
    .await;
    p.status("c", "busy").await;
    let out = p
        .apply("project.configured", json!({"include_busy": true}))
        .await;
    assert_eq!(assigned_agents(&out), ["c"]);
    assert!(p.waiting().await.is_empty());
    let conversations: Vec<String> = out
        .iter()
        .map(|o| o.data["conversation_id"].to_string())
        .collect();
    assert_eq!(conversations, ["\"c5\""]);
}

#[tokio::test]
async fn a_removed_agent_hands_over_its_conversations() {
    let p = Project::new().await;
    p.online_agents(&[("a", 2)]).await;
    p.create("c1").await;
    p.create("c2").await;
    p.online_agents(&[("b", 1)]).await;
    let out = p.apply("agent.removed", json!({"agent_id": "a"})).await;
    assert_eq!(
        types(&out),
        [
            "conversation.assigned",
            "conversation.unassigned",
            "conversation.queued"
        ]
    );
    assert_eq!(out[0].data["agent_id"], "b");
    assert_eq!(out[0].data["previous_agent_id"], "a");
    assert_eq!(out[0].data["reason"], "agent_removed");
    assert_eq!(out[1].data["previous_agent_id"], "a");
    assert_eq!(p.load("a").await, 0);
    assert_eq!(p.load("b").await, 1);
    assert_eq!(p.waiting().await.len(), 1);
}

#[tokio::test]
async fn mode_off_and_manual_hold_conversations_until_auto() {
    let p = Project::new().await;
    p.online_agents(&[("a", 3)]).await;
    p.configure(json!({"mode": "off"})).await;
    let out = p.create("c1").await;
    assert_eq!(out[0].data["reason"], "off");
    p.configure(json!({"mode": "manual"})).await;
    let out = p.create("c2").await;
    assert_eq!(out[0].data["reason"], "manual");
    let out = p.configure_outputs(json!({"mode": "auto"})).await;
    assert_eq!(assigned_agents(&out), ["a", "a"]);
}

#[tokio::test]
async fn waiting_conversations_keep_their_arrival_order_across_calls_and_batches() {
    // Ids sort against their arrival, so only the arrival numbers (counted in a call, written
    // back at its end) can give this order.
    let p = Project::new().await;
    p.create("z1").await;
    p.create("y2").await;
    let batch = ["x3", "w4", "v5"].map(|id| {
        p.event(
            "conversation.created",
            json!({"conversation_id": id, "visitor_id": format!("v-{id}")}),
        )
    });
    apply_batch(&p, &batch.iter().collect::<Vec<_>>()).await;
    p.create("u6").await;
    assert_eq!(p.waiting().await, ["z1", "y2", "x3", "w4", "v5", "u6"]);
    p.online_agents(&[("a", 4)]).await;
    assert_eq!(p.waiting().await, ["v5", "u6"]);
}

#[tokio::test]
async fn conversations_waiting_before_the_first_skill_pool_are_still_served() {
    // Until a project has a requirement pool, its one waiting queue is the base pool's; the
    // first pool gives the base pool a queue of its own, which must hold those conversations.
    let p = Project::new().await;
    p.configure(json!({"rules": [{"when": {"category": "billing"}, "route_to": [{"skills": ["billing"]}]}]}))
        .await;
    p.create("c1").await;
    p.create("c2").await;
    p.create("c3").await;
    let billing = p
        .apply(
            "conversation.created",
            json!({"conversation_id": "b1", "visitor_id": "v-b1", "category": "billing"}),
        )
        .await;
    assert_eq!(types(&billing), ["conversation.queued"]);
    // Closed while waiting, after the pool appeared: gone from every queue.
    p.close("c2").await;
    assert_eq!(p.waiting().await, ["c1", "c3", "b1"]);
    // An agent without the skill serves the base pool only, oldest first.
    p.online_agents(&[("generalist", 5)]).await;
    assert_eq!(p.waiting().await, ["b1"]);
    assert_eq!(p.load("generalist").await, 2);
    p.apply(
        "agent.upserted",
        json!({"agents": [{"agent_id": "biller", "max_concurrent": 5, "skills": ["billing"]}]}),
    )
    .await;
    let out = p.status("biller", "online").await;
    assert_eq!(assigned_agents(&out), ["biller"]);
    assert!(p.waiting().await.is_empty());
}
