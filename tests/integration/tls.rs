//! TLS against real servers the tests start: a `redis-server` with a TLS port and an ACL user,
//! and a private RabbitMQ node with a TLS listener, a user and a vhost; both require a client
//! certificate. A worker decides over both; a wrong CA, a missing client certificate and wrong
//! credentials are refused with a line that says what to fix.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use switchboard::application::Application;
use switchboard::broker::Session;
use switchboard::cli::publish::publish_events;
use switchboard::clock::SystemClock;
use switchboard::config::tls::TlsFiles;
use switchboard::config::Config;
use switchboard::store::{Store, StoreOptions};

use crate::helpers::{assigned_agents, unique, Platform, Project};
use crate::private_rabbit::PrivateRabbit;
use crate::tls_support::{Certificates, TlsRedis};

/// The test CA (or `ca`) and, if `client`, the test client certificate.
fn tls_files(certificates: &Certificates, ca: std::path::PathBuf, client: bool) -> TlsFiles {
    TlsFiles {
        ca_file: Some(ca),
        cert_file: client.then(|| certificates.path("client.pem")),
        key_file: client.then(|| certificates.path("client-key.pem")),
    }
}

fn options(tls: TlsFiles) -> StoreOptions {
    StoreOptions {
        tls,
        ..StoreOptions::default()
    }
}

#[tokio::test]
async fn redis_over_tls_with_an_acl_user_decides_and_refuses_what_it_should() {
    if crate::tls_support::second_pass() {
        return;
    }
    let certificates = Certificates::generate();
    let redis = TlsRedis::start(&certificates);
    let good = tls_files(&certificates, certificates.ca(), true);
    let store = Store::connect(&[redis.url()], options(good.clone()))
        .await
        .unwrap();
    store
        .ping()
        .await
        .expect("TLS, ACL user, client certificate");
    let project = Project::on(store);
    project.online_agents(&[("a", 1)]).await;
    assert_eq!(assigned_agents(&project.create("c1").await), ["a"]);

    let refused = |tls: TlsFiles, url: String| async move {
        let store = Store::connect(&[url], options(tls)).await.unwrap();
        let error = store.ping().await.expect_err("refused");
        error
            .refusal()
            .unwrap_or_else(|| panic!("not told as a refusal: {error}"))
    };
    let why = refused(
        tls_files(&certificates, certificates.wrong_ca(), true),
        redis.url(),
    )
    .await;
    assert!(
        why.contains("not trusted") && why.contains("SWITCHBOARD_TLS_CA_FILE"),
        "{why}"
    );
    // Without the client certificate the server ends the connection. TLS 1.3 tells the client
    // after its side of the handshake is done, so it sees the server's alert (a refusal) or,
    // when the reset comes first, a lost connection: either way, no access.
    let anonymous = Store::connect(
        &[redis.url()],
        options(tls_files(&certificates, certificates.ca(), false)),
    )
    .await
    .unwrap();
    let error = anonymous
        .ping()
        .await
        .expect_err("no client certificate, no access");
    if let Some(why) = error.refusal() {
        assert!(why.starts_with("TLS with Redis"), "{why}");
    }
    let wrong_password = unique("wrong");
    let why = refused(good, redis.url_with_password(&wrong_password)).await;
    assert!(why.contains("refused the user and password"), "{why}");
    assert!(!why.contains(&wrong_password), "{why}");
}

#[tokio::test]
async fn a_worker_decides_over_amqps_and_rediss_with_its_own_user_and_vhost() {
    if crate::tls_support::second_pass() {
        return;
    }
    let certificates = Certificates::generate();
    let redis = TlsRedis::start(&certificates);
    let rabbit = PrivateRabbit::start_with_tls(&certificates);
    let (vhost, user, password) = (unique("vh"), unique("u"), unique("pw"));
    for args in [
        vec!["add_vhost", &vhost],
        vec!["add_user", &user, &password],
        vec!["set_permissions", "-p", &vhost, &user, ".*", ".*", ".*"],
    ] {
        let done = rabbit.ctl(&args);
        assert!(done.status.success(), "rabbitmqctl {args:?}: {done:?}");
    }
    let config = Config {
        amqp_url: rabbit.amqps_url(&user, &password, &vhost).into(),
        redis_url: redis.url().into(),
        http_addr: "127.0.0.1:0".into(),
        tls_ca_file: Some(certificates.ca()),
        tls_cert_file: Some(certificates.path("client.pem")),
        tls_key_file: Some(certificates.path("client-key.pem")),
        ..Config::default()
    };
    let application = Application::build(config.clone(), Arc::new(SystemClock))
        .await
        .unwrap();
    let readiness = application.readiness();
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let worker =
        tokio::spawn(application.run_until_stopped(async move { stopped.cancelled().await }));
    for _ in 0..200 {
        if readiness.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(readiness.is_ready(), "the worker is connected over TLS");

    let session = Session::open(&config, "tls-test").await.unwrap();
    let mut outputs = session.tap(&config.outbound_exchange).await.unwrap();
    let mut platform = Platform::new();
    let mut bodies = platform.agents(&[("a", 1)]);
    bodies.push(platform.created("c1"));
    for body in &bodies {
        // One at a time: the team is applied before the conversation arrives.
        let one = std::slice::from_ref(body);
        publish_events(&session.publisher(), &config.inbound_exchange, one)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivery = tokio::time::timeout(Duration::from_secs(20), outputs.next())
        .await
        .expect("a decision within 20 s")
        .unwrap()
        .unwrap();
    let decision: Value = serde_json::from_slice(&delivery.data).unwrap();
    assert_eq!(decision["type"], "conversation.assigned");
    assert_eq!(decision["data"]["agent_id"], "a");
    session.close().await;

    // What the broker refuses, said plainly, never with the password.
    let refusal = |config: Config| async move {
        match Session::open(&config, "tls-test").await {
            Ok(_) => panic!("opened"),
            Err(error) => {
                assert!(error.is_refusal(), "not told as a refusal: {error}");
                error.to_string()
            }
        }
    };
    let why = refusal(Config {
        tls_ca_file: Some(certificates.wrong_ca()),
        ..config.clone()
    })
    .await;
    assert!(why.contains("not trusted"), "{why}");
    // No client certificate: the broker's alert, or a reset that overtakes it (see above).
    let anonymous = Config {
        tls_cert_file: None,
        tls_key_file: None,
        ..config.clone()
    };
    match Session::open(&anonymous, "tls-test").await {
        Ok(_) => panic!("opened without a client certificate"),
        Err(error) if error.is_refusal() => {
            assert!(error.to_string().contains("TLS with the broker"), "{error}")
        }
        Err(_) => {}
    }
    let wrong = unique("wrong");
    let why = refusal(Config {
        amqp_url: rabbit.amqps_url(&user, &wrong, &vhost).into(),
        ..config.clone()
    })
    .await;
    assert!(why.contains(&format!("refused user `{user}`")), "{why}");
    assert!(!why.contains(&wrong), "{why}");
    let why = refusal(Config {
        amqp_url: rabbit.amqps_url(&user, &password, "missing").into(),
        ..config.clone()
    })
    .await;
    assert!(why.contains("vhost `missing`"), "{why}");

    stop.cancel();
    worker.await.unwrap().unwrap();
}
