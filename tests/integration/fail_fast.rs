//! Settings that cannot work stop `switchboard run` at once: exit status 2 and one line naming
//! the setting and the problem, with no backtrace and no debug dump, even with
//! `RUST_BACKTRACE=1`; and never a password.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::unique;
use crate::tls_support::Certificates;

/// Variables to set, the setting the line must start with, and what it must say.
type Case<'a> = (Vec<(&'a str, String)>, &'a str, &'a str);

/// Runs `switchboard run` with these variables; its exit status and standard error.
fn run(variables: &[(&str, String)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .arg("run")
        .env("RUST_BACKTRACE", "1")
        .env("SWITCHBOARD_HTTP_ADDR", "127.0.0.1:0")
        .env("SWITCHBOARD_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env("SWITCHBOARD_REDIS_URL", "redis://127.0.0.1:1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in variables {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "still running with {variables:?}:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn settings_that_cannot_work_stop_the_worker_with_one_line_and_status_2() {
    if crate::tls_support::second_pass() {
        return;
    }
    let certificates = Certificates::generate();
    let garbage = certificates.path("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let secret = unique("secret");
    let path = |p: std::path::PathBuf| p.display().to_string();
    let cases: Vec<Case> = vec![
        (
            vec![("SWITCHBOARD_AMQP_URL", format!("amqp//guest:{secret}@host"))],
            "SWITCHBOARD_AMQP_URL: ",
            "relative URL",
        ),
        (
            vec![(
                "SWITCHBOARD_AMQP_URL",
                format!("http://guest:{secret}@host/"),
            )],
            "SWITCHBOARD_AMQP_URL: ",
            "unsupported scheme `http://`",
        ),
        (
            vec![(
                "SWITCHBOARD_REDIS_URL",
                format!("rediss://u:{secret}@a:1,redis://u:{secret}@b:2"),
            )],
            "SWITCHBOARD_REDIS_URL: ",
            "all use TLS",
        ),
        (
            vec![(
                "SWITCHBOARD_REDIS_URL",
                format!("rediss://u:{secret}@a:1/#insecure"),
            )],
            "SWITCHBOARD_REDIS_URL: ",
            "cannot be turned off",
        ),
        (
            vec![("SWITCHBOARD_TLS_CA_FILE", "/nonexistent/ca.pem".into())],
            "SWITCHBOARD_TLS_CA_FILE: ",
            "cannot read /nonexistent/ca.pem: No such file or directory",
        ),
        (
            vec![("SWITCHBOARD_TLS_CA_FILE", path(garbage.clone()))],
            "SWITCHBOARD_TLS_CA_FILE: ",
            "not PEM",
        ),
        (
            vec![(
                "SWITCHBOARD_TLS_CERT_FILE",
                path(certificates.path("client.pem")),
            )],
            "SWITCHBOARD_TLS_KEY_FILE: ",
            "required with SWITCHBOARD_TLS_CERT_FILE",
        ),
        (
            vec![
                (
                    "SWITCHBOARD_TLS_CERT_FILE",
                    path(certificates.path("client.pem")),
                ),
                (
                    "SWITCHBOARD_TLS_KEY_FILE",
                    path(certificates.path("server-key.pem")),
                ),
            ],
            "SWITCHBOARD_TLS_KEY_FILE: ",
            "does not fit the certificate",
        ),
        (
            vec![("SWITCHBOARD_HTTP_ADDR", busy_addr.clone())],
            "SWITCHBOARD_HTTP_ADDR: ",
            "Address already in use",
        ),
        (
            vec![("SWITCHBOARD_HTTP_ADDR", "9464".into())],
            "SWITCHBOARD_HTTP_ADDR: ",
            "not an address:port",
        ),
        (
            vec![("SWITCHBOARD_TLS_CA_FIEL", "/x".into())],
            "SWITCHBOARD_TLS_CA_FIEL: ",
            "not a setting",
        ),
        (
            vec![("SWITCHBOARD_WORKER_THREADS", "0".into())],
            "SWITCHBOARD_WORKER_THREADS: ",
            "between 1 and 64",
        ),
        (
            vec![("SWITCHBOARD_PREFETCH", secret.clone())],
            "SWITCHBOARD_PREFETCH: ",
            "expected",
        ),
    ];
    for (variables, setting, problem) in cases {
        let (status, stderr) = run(&variables);
        assert_eq!(status, Some(2), "{variables:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{variables:?}: one line, got:\n{stderr}"
        );
        assert!(stderr.starts_with(setting), "{variables:?}: {stderr}");
        assert!(stderr.contains(problem), "{variables:?}: {stderr}");
        assert!(
            !stderr.contains(&secret),
            "{variables:?} shows the password: {stderr}"
        );
        assert!(
            !stderr.contains("Error:") && !stderr.contains("backtrace"),
            "{stderr}"
        );
    }
    drop(busy);
}
