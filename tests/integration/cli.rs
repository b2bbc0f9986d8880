//! The tools a platform team uses from a shell: `switchboard publish`, `inspect`,
//! `dead-letters`, `forget` and the Python example.

use std::time::Duration;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn publish_sends_one_event_or_ndjson_with_confirms() {
    let mut env = Env::new().await;
    let _worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 5)]).await;
    let dir = std::env::temp_dir().join(unique("publish"));
    std::fs::create_dir_all(&dir).unwrap();
    let one = dir.join("one.json");
    std::fs::write(
        &one,
        serde_json::to_vec_pretty(
            &serde_json::from_slice::<serde_json::Value>(&platform.created("c1")).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let many = dir.join("many.ndjson");
    let lines: Vec<String> = ["c2", "c3"]
        .iter()
        .map(|c| String::from_utf8(platform.created(c)).unwrap())
        .collect();
    std::fs::write(&many, lines.join("\n") + "\n").unwrap();
    switchboard::cli::publish::run(env.config.clone(), &one)
        .await
        .unwrap();
    switchboard::cli::publish::run(env.config.clone(), &many)
        .await
        .unwrap();
    let out = env.outputs(3, WAIT).await;
    let mut conversations: Vec<&str> = out
        .iter()
        .map(|o| o["data"]["conversation_id"].as_str().unwrap())
        .collect();
    conversations.sort();
    assert_eq!(conversations, ["c1", "c2", "c3"]);
    let _ = std::fs::remove_dir_all(dir);
    env.cleanup().await;
}

#[tokio::test]
async fn the_python_example_plays_a_platform() {
    let has_pika = std::process::Command::new("python3")
        .args(["-c", "import pika"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_pika {
        // scripts/test.sh installs it; a bare `cargo test` without pika skips this one.
        eprintln!("pika is not installed: skipping");
        return;
    }
    // A worker and the example on this test's own exchanges (the example's defaults are the
    // contract's names, which other workers on this broker may be using).
    let env = Env::new().await;
    let application = switchboard::application::Application::build(
        env.config.clone(),
        std::sync::Arc::new(switchboard::clock::SystemClock),
    )
    .await
    .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let worker =
        tokio::spawn(application.run_until_stopped(async move { stopped.cancelled().await }));
    let project = unique("py");
    note_project(&project);
    let output = tokio::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/python/chat_platform.py"
        ))
        .args([
            "--url",
            &amqp_url(),
            "--project",
            &project,
            "--conversations",
            "8",
            "--seconds",
            "4",
            "--inbound",
            &env.config.inbound_exchange,
            "--outbound",
            &env.config.outbound_exchange,
        ])
        .output()
        .await
        .unwrap();
    stop.cancel();
    worker.await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // 3 agents × max_concurrent 2: six assigned, the rest queued (a conversation decided before
    // the team was in place queues first, then is assigned from the backlog).
    assert_eq!(text.matches("conversation.assigned").count(), 6, "{text}");
    assert!(text.matches("conversation.queued").count() >= 2, "{text}");
    // The inbox it keeps by sequence: every conversation, six with an agent, two waiting.
    let inbox: Vec<&str> = text
        .split("inbox:\n")
        .nth(1)
        .unwrap_or("")
        .lines()
        .collect();
    assert_eq!(inbox.len(), 8, "{text}");
    assert_eq!(
        inbox.iter().filter(|l| l.ends_with(" queued")).count(),
        2,
        "{text}"
    );
    env.cleanup().await;
}

/// `switchboard <args>` on the tests' Redis, as an operator runs it: how it ended.
fn on_redis(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env("SWITCHBOARD_REDIS_URL", redis_url())
        .output()
        .expect("switchboard runs")
}

/// What a command that must succeed printed.
fn printed(output: std::process::Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// `switchboard inspect <project> <args>`, as an operator runs it: its output.
fn inspect_project(project: &str, args: &[&str]) -> String {
    printed(on_redis(&[&["inspect", project], args].concat()))
}

/// `switchboard inspect --waiting` and `--conversation`, as an operator runs them: why a
/// conversation waits, agent by agent, as text and JSON.
#[tokio::test]
async fn inspect_says_why_conversations_wait() {
    let p = Project::new().await;
    p.online_agents(&[("a", 1)]).await;
    p.apply(
        "agent.upserted",
        serde_json::json!({"agents": [{"agent_id": "b", "max_concurrent": 2}]}),
    )
    .await;
    p.create("c1").await;
    p.create("c2").await;
    let inspect = |args: &[&str]| inspect_project(&p.id, args);
    let text = inspect(&["--waiting"]);
    assert!(text.contains("1 waiting"), "{text}");
    assert!(text.contains("c2"), "{text}");
    assert!(text.contains("1 at max_concurrent"), "{text}");
    assert!(text.contains("1 offline"), "{text}");
    let one = inspect(&["--conversation", "c2"]);
    assert!(one.contains("conversation c2: waiting"), "{one}");
    assert!(one.contains("waits: position 1"), "{one}");
    let json: serde_json::Value =
        serde_json::from_str(&inspect(&["--conversation", "c1", "--json"])).unwrap();
    assert_eq!(json["state"], "open");
    assert_eq!(json["agent"], "a");
}

/// `switchboard inspect` shows what capacity and fairness settings do: capacities per channel,
/// skill levels, quiet conversations that do not count, and agents passed over at their
/// capacity for a channel.
#[tokio::test]
async fn inspect_shows_capacities_levels_and_quiet_conversations() {
    let mut p = Project::new().await;
    p.configure(serde_json::json!({"inactive_after_seconds": 60}))
        .await;
    p.online_team(serde_json::json!([
        {"agent_id": "a", "max_concurrent": 3, "capacity": {"chat": 1},
         "skills": {"spanish": 7}}
    ]))
    .await;
    let c1 = p
        .apply_event(&p.event(
            "conversation.created",
            serde_json::json!({"conversation_id": "c1", "visitor_id": "v1", "channel": "chat"}),
        ))
        .await;
    p.create_on("c2", "chat").await;
    p.create_on("e1", "email").await;
    p.now_ms += 60_000;
    p.fire(&c1.timers[0]).await; // c1 goes quiet; c2 takes the chat slot
    p.create_on("c3", "chat").await;
    let inspect = |args: &[&str]| inspect_project(&p.id, args);
    let report = inspect(&[]);
    assert!(report.contains("2/3 +1 quiet"), "{report}");
    assert!(report.contains("chat:1"), "{report}");
    assert!(report.contains("spanish:7"), "{report}");
    let quiet = inspect(&["--conversation", "c1"]);
    assert!(quiet.contains("inactive"), "{quiet}");
    let waiting = inspect(&["--waiting"]);
    assert!(waiting.contains("c3"), "{waiting}");
    assert!(
        waiting.contains("1 at their capacity for the channel"),
        "{waiting}"
    );
}

/// `switchboard dead-letters <args>` on `config`'s topology, as an operator runs it: its output.
fn dead_letters(config: &switchboard::config::Config, args: &[&str]) -> String {
    printed(
        configured_command(env!("CARGO_BIN_EXE_switchboard"), "dead-letters", config)
            .args(args)
            .output()
            .expect("switchboard runs"),
    )
}

/// Puts `body` in dead letters with the header a worker writes when it rejects an event.
async fn dead_letter_as_a_worker_would(
    config: &switchboard::config::Config,
    body: &[u8],
    reason: &str,
) {
    let session = switchboard::broker::Session::open(config, "tests-dead")
        .await
        .unwrap();
    let properties = switchboard::broker::dead_letter_properties(
        &switchboard::broker::json_properties(),
        reason,
    );
    session
        .publisher()
        .publish_all(vec![switchboard::broker::Message {
            exchange: "",
            routing_key: &config.dead_letter_queue,
            body,
            properties,
        }])
        .await
        .unwrap();
    session.close().await;
}

/// An operator lists the dead letters with their reasons, then sends back those whose cause is
/// fixed: they are decided as if they had just arrived, the others stay, and sending the same
/// event back again decides nothing twice.
#[tokio::test]
async fn dead_letters_are_listed_with_their_reasons_and_replayed_once_fixed() {
    let mut env = Env::new().await;
    let _worker = env.spawn_worker().await;
    let mut platform = Platform::new();
    env.team(&mut platform, &[("a", 5)]).await;
    let dead_queue = env.config.dead_letter_queue.clone();
    // Rejected by the worker: an id the contract does not allow.
    env.publish(&platform.event(
        "conversation.created",
        serde_json::json!({"conversation_id": "bad id!", "visitor_id": "v0"}),
    ))
    .await;
    env.depth_becomes(&dead_queue, 1).await;
    // A valid creation a worker dead-lettered for a cause since fixed (a store error it did not
    // know), put there with the header a worker writes.
    let stuck = platform.created("c1");
    let stuck_id = platform.last_id();
    const FIXED: &str = "internal error: a store reply this release did not know";
    let config = env.config.clone();
    let dead_letter_stuck = || dead_letter_as_a_worker_would(&config, &stuck, FIXED);
    dead_letter_stuck().await;
    env.depth_becomes(&dead_queue, 2).await;

    let listed = dead_letters(&env.config, &[]);
    assert!(listed.contains("conversation.created"), "{listed}");
    assert!(
        listed.contains("invalid field `conversation_id`: bad id!"),
        "{listed}"
    );
    assert!(listed.contains(&format!("{stuck_id}  {FIXED}")), "{listed}");
    assert!(listed.contains("2 dead letter(s)"), "{listed}");
    // As JSON, one line per dead letter then the summary; and for one project only.
    let as_json = dead_letters(&env.config, &["--json", "--project", &platform.project]);
    let lines: Vec<serde_json::Value> = as_json
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{as_json}");
    assert_eq!(lines[1]["id"], stuck_id.as_str());
    assert_eq!(lines[1]["reason"], FIXED);
    assert_eq!(lines[1]["type"], "conversation.created");
    assert_eq!(lines[2]["shown"], 2);
    let elsewhere = dead_letters(&env.config, &["--project", "another-tenant"]);
    assert!(
        elsewhere.contains("0 shown of project `another-tenant`"),
        "{elsewhere}"
    );
    // Looking takes nothing away, and nothing was decided.
    env.depth_becomes(&dead_queue, 2).await;
    assert!(env.outputs_for(Duration::from_millis(300)).await.is_empty());

    let replayed = dead_letters(&env.config, &["--replay", "--reason", "internal error"]);
    assert!(
        replayed.contains("1 shown whose reason contains `internal error`, 1 sent back"),
        "{replayed}"
    );
    let out = env.outputs(1, WAIT).await;
    assert_eq!(out[0]["type"], "conversation.assigned", "{out:?}");
    assert_eq!(out[0]["data"]["conversation_id"], "c1");
    assert_eq!(out[0]["data"]["agent_id"], "a");
    // The rejected one stays.
    env.depth_becomes(&dead_queue, 1).await;

    // The same event dead-lettered and sent back again: its first decision stands.
    dead_letter_stuck().await;
    env.depth_becomes(&dead_queue, 2).await;
    // Everything sent back this time: the rejected one is rejected again, once.
    let again = dead_letters(&env.config, &["--replay"]);
    assert!(again.contains("2 shown, 2 sent back"), "{again}");
    env.depth_becomes(&dead_queue, 1).await;
    let bounced = env.dead_letters(1, WAIT).await;
    assert!(
        bounced[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("bad id!")),
        "{:?}",
        bounced[0].reason
    );
    env.publish(&platform.created("c2")).await;
    let out = env
        .outputs_until(
            |received| {
                received
                    .iter()
                    .any(|o| o["data"]["conversation_id"] == "c2")
            },
            WAIT,
        )
        .await;
    let about_c1: Vec<_> = out
        .iter()
        .filter(|o| o["data"]["conversation_id"] == "c1")
        .collect();
    assert!(about_c1.is_empty(), "decided twice: {about_c1:?}");
    env.cleanup().await;
}

/// `switchboard forget PROJECT` as an operator offboarding a tenant runs it: without `--yes`
/// it only counts; with it, every key of that project goes, and nothing of another project,
/// not even one whose id begins with the same characters.
#[tokio::test]
async fn forget_deletes_one_projects_keys_and_no_one_elses() {
    let leaving = Project::new().await;
    let staying = Project::named(store().await, &format!("{}.eu", leaving.id));
    for project in [&leaving, &staying] {
        project.online_agents(&[("a", 2)]).await;
        project
            .apply(
                "conversation.created",
                serde_json::json!({"conversation_id": "c1", "visitor_id": "v1"}),
            )
            .await;
    }
    let forget = |args: &[&str]| printed(on_redis(&[&["forget"], args].concat()));
    let leaving_id = switchboard::contract::Id::parse(&leaving.id).unwrap();
    let staying_id = switchboard::contract::Id::parse(&staying.id).unwrap();
    let store = store().await;
    let held = store.project_keys(&leaving_id).await.unwrap().len();
    assert!(held > 5, "{held} keys");

    let counted = forget(&[&leaving.id]);
    assert!(
        counted.contains(&format!("{held} key(s); run again with --yes")),
        "{counted}"
    );
    assert_eq!(
        store.agents(&leaving_id).await.unwrap().len(),
        1,
        "nothing deleted yet"
    );

    let deleted = forget(&[&leaving.id, "--yes"]);
    assert!(
        deleted.contains(&format!("deleted {held} key(s)")),
        "{deleted}"
    );
    assert!(store.project_keys(&leaving_id).await.unwrap().is_empty());
    assert!(store.agents(&leaving_id).await.unwrap().is_empty());
    assert!(store
        .conversation(&leaving_id, "c1")
        .await
        .unwrap()
        .is_none());
    // The other tenant is untouched.
    assert_eq!(store.agents(&staying_id).await.unwrap().len(), 1);
    assert!(store
        .conversation(&staying_id, "c1")
        .await
        .unwrap()
        .is_some());
    assert_eq!(store.open_count(&staying_id).await.unwrap(), 1);

    // An id the contract refuses never becomes a key pattern.
    let refused = on_redis(&["forget", "*", "--yes"]);
    assert!(!refused.status.success());
    assert_eq!(store.agents(&staying_id).await.unwrap().len(), 1);
}
