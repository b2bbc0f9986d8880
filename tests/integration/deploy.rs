//! The deployment files agree with the code. No container engine runs here, so this checks what
//! can be checked without one, and loads the RabbitMQ definitions into the real broker.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use switchboard::config::Config;

fn file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(&file(path))
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .collect()
}

/// The `SWITCHBOARD_*` variables the worker reads: one per configuration field.
fn known_variables() -> BTreeSet<String> {
    let fields = serde_json::to_value(ConfigFields::from(Config::default())).unwrap();
    fields
        .as_object()
        .unwrap()
        .keys()
        .map(|k| format!("SWITCHBOARD_{}", k.to_uppercase()))
        .chain(["SWITCHBOARD_CONFIG".to_string()])
        .collect()
}

/// Config's field names, through serde (Config derives only Deserialize).
#[derive(serde::Serialize)]
struct ConfigFields {
    amqp_url: String,
    redis_url: String,
    http_addr: String,
    inbound_exchange: String,
    work_queue: String,
    outbound_exchange: String,
    dead_letter_queue: String,
    prefetch: u16,
    batch_size: u16,
    decisions_in_flight: u16,
    worker_threads: u16,
    delivery_limit: u32,
    dedupe_ttl_seconds: u64,
    closed_retention_seconds: u64,
    log_format: String,
    tls_ca_file: Option<std::path::PathBuf>,
    tls_cert_file: Option<std::path::PathBuf>,
    tls_key_file: Option<std::path::PathBuf>,
    redis_wait_replicas: u16,
    redis_wait_timeout_ms: u64,
    redis_connections: u16,
    store_layout: u8,
}

impl From<Config> for ConfigFields {
    fn from(c: Config) -> Self {
        // Destructuring without `..` fails to compile when Config gains or loses a field.
        let Config {
            amqp_url,
            redis_url,
            http_addr,
            inbound_exchange,
            work_queue,
            outbound_exchange,
            dead_letter_queue,
            prefetch,
            batch_size,
            decisions_in_flight,
            worker_threads,
            delivery_limit,
            dedupe_ttl_seconds,
            closed_retention_seconds,
            log_format,
            tls_ca_file,
            tls_cert_file,
            tls_key_file,
            redis_wait_replicas,
            redis_wait_timeout_ms,
            redis_connections,
            store_layout,
        } = c;
        ConfigFields {
            amqp_url: amqp_url.as_str().to_string(),
            redis_url: redis_url.as_str().to_string(),
            http_addr,
            inbound_exchange,
            work_queue,
            outbound_exchange,
            dead_letter_queue,
            prefetch,
            batch_size,
            decisions_in_flight,
            worker_threads,
            delivery_limit,
            dedupe_ttl_seconds,
            closed_retention_seconds,
            log_format,
            tls_ca_file,
            tls_cert_file,
            tls_key_file,
            redis_wait_replicas,
            redis_wait_timeout_ms,
            redis_connections,
            store_layout,
        }
    }
}

fn variables_in(value: &serde_yaml::Value, found: &mut BTreeSet<String>) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map {
                if let Some(k) = k.as_str().filter(|k| k.starts_with("SWITCHBOARD_")) {
                    found.insert(k.to_string());
                }
                variables_in(v, found);
            }
        }
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|i| variables_in(i, found)),
        _ => {}
    }
}

#[test]
fn compose_runs_two_workers_after_healthy_services() {
    let compose = &yaml("docker-compose.yml")[0];
    let services = &compose["services"];
    for name in ["rabbitmq", "redis", "worker", "demo"] {
        assert!(services.get(name).is_some(), "service {name}");
    }
    let worker = &services["worker"];
    assert_eq!(
        worker["build"]["dockerfile"].as_str(),
        Some("deploy/Dockerfile")
    );
    assert_eq!(worker["deploy"]["replicas"].as_u64(), Some(2));
    for dependency in ["rabbitmq", "redis"] {
        assert_eq!(
            worker["depends_on"][dependency]["condition"].as_str(),
            Some("service_healthy")
        );
        assert!(
            services[dependency]["healthcheck"]["test"].is_sequence(),
            "{dependency} healthcheck"
        );
    }
    assert!(services["rabbitmq"]["image"]
        .as_str()
        .unwrap()
        .contains("management"));
    assert_eq!(services["demo"]["command"][0].as_str(), Some("demo"));
    // The demo runs the image the worker service builds (compose skips pulling it).
    assert!(worker["image"].is_string());
    assert_eq!(services["demo"]["image"], worker["image"]);
    // Inside the compose network the services are reached by their names.
    let environment = &worker["environment"];
    assert!(environment["SWITCHBOARD_AMQP_URL"]
        .as_str()
        .unwrap()
        .contains("@rabbitmq:5672/"));
    assert_eq!(
        environment["SWITCHBOARD_REDIS_URL"].as_str(),
        Some("redis://redis:6379")
    );
    assert_eq!(
        environment["SWITCHBOARD_HTTP_ADDR"].as_str(),
        Some("0.0.0.0:9464")
    );
    // RabbitMQ reads rabbitmq.conf, which loads every file mounted into definitions.d. A node
    // that loads definitions at boot does not create its default guest user and vhost, so the
    // user the workers and the demo log in as must be defined, with its permissions, in them.
    let volumes: Vec<&str> = services["rabbitmq"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(volumes
        .iter()
        .any(|v| v.starts_with("./deploy/rabbitmq/rabbitmq.conf:/etc/rabbitmq/rabbitmq.conf")));
    assert!(file("deploy/rabbitmq/rabbitmq.conf")
        .lines()
        .any(|l| l.trim() == "load_definitions = /etc/rabbitmq/definitions.d"));
    let loaded: Vec<Value> = volumes
        .iter()
        .filter_map(|v| {
            let mut parts = v.split(':');
            let (source, target) = (parts.next()?, parts.next()?);
            target
                .starts_with("/etc/rabbitmq/definitions.d/")
                .then(|| serde_json::from_str(&file(source.trim_start_matches("./"))).unwrap())
        })
        .collect();
    assert!(
        loaded.iter().any(|d| d["queues"]
            .as_array()
            .is_some_and(|q| q.iter().any(|q| q["name"] == "switchboard.work"))),
        "the topology is loaded at boot"
    );
    let entries = |kind: &'static str| {
        loaded
            .iter()
            .flat_map(move |d| d[kind].as_array().into_iter().flatten())
    };
    for service in ["worker", "demo"] {
        let url = services[service]["environment"]["SWITCHBOARD_AMQP_URL"]
            .as_str()
            .unwrap();
        let user = url.split("://").nth(1).unwrap().split(':').next().unwrap();
        assert!(
            entries("users").any(|u| u["name"] == user),
            "{service} logs in as {user}, whom RabbitMQ would not know"
        );
        assert!(
            entries("permissions").any(|p| p["user"] == user && p["vhost"] == "/"),
            "{user} has no permissions on vhost /"
        );
    }
}

#[test]
fn every_variable_in_compose_and_kubernetes_is_one_the_worker_reads() {
    let known = known_variables();
    let mut found = BTreeSet::new();
    for path in [
        "docker-compose.yml",
        "deploy/kubernetes/configmap.yaml",
        "deploy/kubernetes/secret.yaml",
    ] {
        for doc in yaml(path) {
            variables_in(&doc, &mut found);
        }
    }
    for line in file("deploy/Dockerfile").lines() {
        for word in line.split(|c: char| c.is_whitespace() || c == '=') {
            if word.starts_with("SWITCHBOARD_") {
                found.insert(word.to_string());
            }
        }
    }
    assert!(found.contains("SWITCHBOARD_AMQP_URL") && found.contains("SWITCHBOARD_REDIS_URL"));
    let unknown: Vec<_> = found.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "variables the worker does not read: {unknown:?}"
    );
}

#[test]
fn the_image_runs_as_a_non_root_user() {
    let dockerfile = file("deploy/Dockerfile");
    let final_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    let user = final_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the final stage sets USER");
    // `USER name`, `USER uid` or `USER uid:gid`: the user part decides.
    let name = user.trim().split(':').next().unwrap();
    assert!(name != "root" && name != "0", "USER {user}");
    assert!(final_stage.contains("ENTRYPOINT [\"switchboard\"]"));
}

#[test]
fn kubernetes_probes_keda_and_disruption_budget_fit_the_worker() {
    let deployment = &yaml("deploy/kubernetes/deployment.yaml")[0];
    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        spec["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
    let container = &spec["containers"][0];
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    let name = deployment["metadata"]["name"].as_str().unwrap();
    let keda = yaml("deploy/kubernetes/keda-scaledobject.yaml");
    let scaled = keda
        .iter()
        .find(|d| d["kind"].as_str() == Some("ScaledObject"))
        .unwrap();
    assert_eq!(
        scaled["spec"]["scaleTargetRef"]["name"].as_str(),
        Some(name)
    );
    assert_eq!(scaled["spec"]["minReplicaCount"].as_u64(), Some(1));
    assert_eq!(scaled["spec"]["maxReplicaCount"].as_u64(), Some(20));
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["type"].as_str(), Some("rabbitmq"));
    assert_eq!(
        trigger["metadata"]["queueName"].as_str(),
        Some(Config::default().work_queue.as_str())
    );
    assert_eq!(trigger["metadata"]["mode"].as_str(), Some("QueueLength"));
    assert_eq!(trigger["metadata"]["value"].as_str(), Some("500"));
    // The trigger authenticates with the workers' own Secret: its broker URL is KEDA's `host`.
    let authentication = keda
        .iter()
        .find(|d| d["kind"].as_str() == Some("TriggerAuthentication"))
        .unwrap();
    assert_eq!(
        trigger["authenticationRef"]["name"],
        authentication["metadata"]["name"]
    );
    let secret = &yaml("deploy/kubernetes/secret.yaml")[0];
    let host = authentication["spec"]["secretTargetRef"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["parameter"].as_str() == Some("host"))
        .expect("a `host` parameter");
    assert_eq!(host["name"], secret["metadata"]["name"]);
    assert!(secret["stringData"][host["key"].as_str().unwrap()].is_string());
    // The workers read the ConfigMap and the Secret that exist.
    let configmap = &yaml("deploy/kubernetes/configmap.yaml")[0];
    let sources = container["envFrom"].as_sequence().unwrap();
    assert!(sources
        .iter()
        .any(|s| s["configMapRef"]["name"] == configmap["metadata"]["name"]));
    assert!(sources
        .iter()
        .any(|s| s["secretRef"]["name"] == secret["metadata"]["name"]));
    let pdb = &yaml("deploy/kubernetes/pdb.yaml")[0];
    assert_eq!(pdb["kind"].as_str(), Some("PodDisruptionBudget"));
    let kustomization = file("deploy/kubernetes/kustomization.yaml");
    for resource in [
        "configmap",
        "secret",
        "deployment",
        "service",
        "pdb",
        "keda-scaledobject",
    ] {
        assert!(
            kustomization.contains(&format!("{resource}.yaml")),
            "{resource}"
        );
    }
}

#[test]
fn the_dashboard_uses_only_exported_metrics() {
    let exported: BTreeSet<&str> = [
        "switchboard_events_total",
        "switchboard_decision_seconds",
        "switchboard_assignments_total",
        "switchboard_queued_total",
        "switchboard_dead_letters_total",
        "switchboard_reconnects_total",
        "switchboard_in_flight_events",
        "switchboard_ready",
        "switchboard_waiting_conversations",
        "switchboard_broker_blocked",
        "switchboard_publishes_refused_total",
    ]
    .into();
    // Each of these is also emitted somewhere in the code.
    let emitters = file("src/telemetry.rs") + &file("src/backlog.rs");
    for metric in &exported {
        assert!(
            emitters.contains(&format!("\"{metric}\""))
                || emitters.contains(&format!("{metric}{{")),
            "{metric} is not emitted"
        );
    }
    let dashboard: Value =
        serde_json::from_str(&file("deploy/grafana/switchboard-dashboard.json")).unwrap();
    let mut used = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("switchboard_") {
                    let base = word
                        .trim_end_matches("_bucket")
                        .trim_end_matches("_sum")
                        .trim_end_matches("_count");
                    assert!(exported.contains(base), "unknown metric {word} in {expr}");
                    used += 1;
                }
            }
        }
    }
    assert!(used >= exported.len());
}

/// The definitions declare exactly what a worker declares (`src/broker/topology.rs`), so neither
/// side meets an "inequivalent argument" error, and bring no users of their own.
#[test]
fn the_definitions_match_the_worker_topology() {
    let config = Config::default();
    let definitions: Value =
        serde_json::from_str(&file("deploy/rabbitmq/definitions.json")).unwrap();
    let named = |kind: &str, name: &str| -> Value {
        definitions[kind]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name && d["vhost"] == "/")
            .unwrap_or_else(|| panic!("{kind}: {name} in vhost /"))
            .clone()
    };
    for exchange in [&config.inbound_exchange, &config.outbound_exchange] {
        let exchange = named("exchanges", exchange);
        assert_eq!(exchange["type"], "topic");
        assert_eq!(exchange["durable"], true);
    }
    let work = named("queues", &config.work_queue);
    assert_eq!(work["durable"], true);
    assert_eq!(
        work["arguments"],
        serde_json::json!({
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": config.dead_letter_queue,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-delivery-limit": config.delivery_limit,
        })
    );
    let dead = named("queues", &config.dead_letter_queue);
    assert_eq!(dead["durable"], true);
    assert_eq!(
        dead["arguments"],
        serde_json::json!({"x-queue-type": "quorum"})
    );
    let bindings = definitions["bindings"].as_array().unwrap();
    assert!(bindings
        .iter()
        .any(|b| b["source"] == config.inbound_exchange.as_str()
            && b["destination"] == config.work_queue.as_str()
            && b["destination_type"] == "queue"
            && b["routing_key"] == "#"));
    assert!(
        definitions.get("users").is_none() && definitions.get("permissions").is_none(),
        "users belong to each installation, not to the repository"
    );
}

/// RabbitMQ accepts the definitions file, and a worker then declares its topology on top of it
/// without an "inequivalent argument" conflict.
#[tokio::test]
async fn rabbitmq_loads_the_definitions_and_workers_agree_with_them() {
    let vhost = crate::helpers::unique("defs");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("rabbitmqctl")
            .args(args)
            .output()
            .expect("rabbitmqctl");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["add_vhost", &vhost]);
    run(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
    let definitions = file("deploy/rabbitmq/definitions.json")
        .replace("\"vhost\": \"/\"", &format!("\"vhost\": \"{vhost}\""));
    let mut parsed: Value = serde_json::from_str(&definitions).unwrap();
    parsed["vhosts"] = serde_json::json!([{"name": vhost}]);
    let path = std::env::temp_dir().join(format!("{vhost}.json"));
    std::fs::write(&path, parsed.to_string()).unwrap();
    run(&["import_definitions", path.to_str().unwrap()]);
    let config = Config {
        amqp_url: format!("amqp://guest:guest@127.0.0.1:5672/{vhost}").into(),
        ..Config::default()
    };
    let declared = switchboard::broker::Session::open(&config, "definitions-test").await;
    run(&["delete_vhost", &vhost]);
    let _ = std::fs::remove_file(path);
    assert!(
        declared.is_ok(),
        "the worker's declarations conflict: {:?}",
        declared.err()
    );
}

/// The worker's HTTP address is where the probes and Prometheus look, and the TLS files the
/// configuration names are those a Secret mounts, readable by the non-root worker.
#[test]
fn kubernetes_binds_the_probe_port_and_mounts_tls_material_from_a_secret() {
    let configmap = &yaml("deploy/kubernetes/configmap.yaml")[0];
    let data = &configmap["data"];
    let addr = data["SWITCHBOARD_HTTP_ADDR"].as_str().unwrap();
    assert!(
        addr.starts_with("0.0.0.0:"),
        "probes come from outside the pod: {addr}"
    );
    let port: u64 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let deployment = &yaml("deploy/kubernetes/deployment.yaml")[0];
    let template = &deployment["spec"]["template"];
    let spec = &template["spec"];
    let container = &spec["containers"][0];
    let metrics = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("metrics"))
        .unwrap();
    assert_eq!(metrics["containerPort"].as_u64(), Some(port));
    assert_eq!(
        template["metadata"]["annotations"]["prometheus.io/port"].as_str(),
        Some(port.to_string().as_str())
    );
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"].as_str() == Some("tls"))
        .expect("the TLS volume is mounted");
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
    let mount_path = mount["mountPath"].as_str().unwrap();
    let volume = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str() == Some("tls"))
        .unwrap();
    let secret_name = volume["secret"]["secretName"].as_str().unwrap();
    let secret = yaml("deploy/kubernetes/tls-secret.yaml")
        .into_iter()
        .find(|d| d["metadata"]["name"].as_str() == Some(secret_name))
        .expect("the TLS Secret is in the manifests");
    for variable in [
        "SWITCHBOARD_TLS_CA_FILE",
        "SWITCHBOARD_TLS_CERT_FILE",
        "SWITCHBOARD_TLS_KEY_FILE",
    ] {
        let path = data[variable].as_str().unwrap();
        let key = path
            .strip_prefix(&format!("{mount_path}/"))
            .unwrap_or_else(|| panic!("{variable}={path} is not under {mount_path}"));
        assert!(
            secret["stringData"][key].is_string(),
            "the Secret has no {key}"
        );
    }
    // Secret files are root-owned: the worker reads them through its group.
    assert_eq!(
        spec["securityContext"]["fsGroup"],
        spec["securityContext"]["runAsGroup"]
    );
    assert!(file("deploy/kubernetes/kustomization.yaml").contains("tls-secret.yaml"));
}
