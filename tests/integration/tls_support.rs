//! TLS material the tests make (rcgen, no external tool), and private TLS `redis-server`s:
//! one node, or a cluster with replicas. Each lives in its own temporary directory and on free
//! loopback ports; dropping it kills the servers and removes the directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use switchboard::config::tls::TlsFiles;
use switchboard::config::Config;
use switchboard::contract::Id;
use switchboard::store::{Store, StoreOptions};

use crate::helpers::unique;

/// The suite runs twice, the second time against a Redis Cluster (`scripts/test.sh`). Tests
/// that bring their own servers would only repeat themselves there; they skip that pass.
pub fn second_pass() -> bool {
    let skip = crate::helpers::redis_url().contains(',');
    if skip {
        eprintln!("brings its own servers: run in the single-node pass only");
    }
    skip
}

/// A CA, a server certificate for `127.0.0.1` and `localhost` signed by it, a client
/// certificate signed by it, and an unrelated CA (the "wrong" one), as PEM files.
pub struct Certificates {
    pub dir: PathBuf,
}

impl Certificates {
    pub fn generate() -> Certificates {
        let dir = std::env::temp_dir().join(unique("sbtls"));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = authority("Switchboard test CA");
        let wrong = authority("Some other CA");
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
        write("ca.pem", ca.pem());
        write("wrong-ca.pem", wrong.pem());
        for (name, usage) in [
            ("server", ExtendedKeyUsagePurpose::ServerAuth),
            ("client", ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            let mut params =
                CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                    .unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, format!("switchboard-test-{name}"));
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().unwrap();
            let certificate = params.signed_by(&key, &ca).unwrap();
            write(&format!("{name}.pem"), certificate.pem());
            write(&format!("{name}-key.pem"), key.serialize_pem());
        }
        Certificates { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    pub fn wrong_ca(&self) -> PathBuf {
        self.path("wrong-ca.pem")
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free loopback port whose cluster bus port (+10000) is free too, below the ephemeral range
/// so that no outgoing connection takes either meanwhile.
fn node_port() -> u16 {
    loop {
        let port: u16 = rand::random_range(20_000..30_000);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
}

/// The ACL user the private servers know, and its password.
pub const USER: &str = "switchboard";

/// TLS `redis-server`s that require this suite's client certificate and an ACL user (the
/// default user is off), on free ports: one node, or a cluster.
pub struct TlsRedis {
    pub ports: Vec<u16>,
    pub password: String,
    cluster: bool,
    dir: PathBuf,
    servers: Vec<Option<Child>>,
}

impl TlsRedis {
    /// One node.
    pub fn start(certificates: &Certificates) -> TlsRedis {
        let mut redis = TlsRedis::new(1, false);
        redis.boot_all(certificates);
        redis
    }

    /// A cluster of `masters` masters, each with `replicas_each` replicas, replicating and
    /// talking over TLS, failing over after 1 s without its master.
    pub fn start_cluster(
        certificates: &Certificates,
        masters: usize,
        replicas_each: usize,
    ) -> TlsRedis {
        let mut redis = TlsRedis::new(masters * (1 + replicas_each), true);
        redis.boot_all(certificates);
        let mut create = redis.cli(certificates, redis.ports[0]);
        create.arg("--cluster").arg("create");
        for port in &redis.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        create
            .args([
                "--cluster-replicas",
                &replicas_each.to_string(),
                "--cluster-yes",
            ])
            .stdout(Stdio::null());
        let created = create.output().expect("redis-cli runs");
        assert!(created.status.success(), "cluster create: {created:?}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if redis.is_settled(certificates, masters * (1 + replicas_each)) {
                return redis;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let states: Vec<String> = redis
            .ports
            .iter()
            .map(|port| {
                let info = redis.ask(certificates, *port, &["info", "replication"]);
                let nodes = redis.ask(certificates, *port, &["cluster", "nodes"]);
                format!("{port}:\n{info}\n{nodes}")
            })
            .collect();
        panic!(
            "the TLS Redis Cluster did not settle within 60 s:\n{}",
            states.join("\n")
        );
    }

    fn new(nodes: usize, cluster: bool) -> TlsRedis {
        let dir = std::env::temp_dir().join(unique("sbredis"));
        std::fs::create_dir_all(&dir).unwrap();
        // Each port is free when drawn, but nothing is bound to it until the servers start: two
        // nodes of one cluster drawn on the same port would never settle.
        let mut ports: Vec<u16> = Vec::with_capacity(nodes);
        while ports.len() < nodes {
            let port = node_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        TlsRedis {
            ports,
            password: unique("pw"),
            cluster,
            dir,
            servers: (0..nodes).map(|_| None).collect(),
        }
    }

    /// The URL(s) with the user and its password (comma-separated for a cluster).
    pub fn url(&self) -> String {
        self.url_with_password(&self.password)
    }

    pub fn url_with_password(&self, password: &str) -> String {
        self.ports
            .iter()
            .map(|port| format!("rediss://{USER}:{password}@127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn boot_all(&mut self, certificates: &Certificates) {
        for i in 0..self.ports.len() {
            self.boot(i, certificates);
        }
        for port in self.ports.clone() {
            wait_for_port(port);
        }
    }

    /// Starts the server on `port` again (after [`TlsRedis::kill`]), on its own data: a
    /// cluster node comes back knowing the cluster, as a replica if it was failed over.
    pub fn restart(&mut self, certificates: &Certificates, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).unwrap();
        self.kill(port);
        self.boot(i, certificates);
        wait_for_port(port);
    }

    fn boot(&mut self, i: usize, certificates: &Certificates) {
        let port = self.ports[i];
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let path = |p: PathBuf| p.display().to_string();
        let mut conf = format!(
            "port 0\ntls-port {port}\nbind 127.0.0.1\ndir {dir}\nsave \"\"\nappendonly no\n\
             tls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {ca}\n\
             tls-auth-clients yes\ntls-replication yes\nrepl-diskless-sync-delay 0\n\
             user default off\nuser {USER} on >{password} ~* &* +@all\n\
             masteruser {USER}\nmasterauth {password}\n",
            dir = dir.display(),
            cert = path(certificates.path("server.pem")),
            key = path(certificates.path("server-key.pem")),
            ca = path(certificates.ca()),
            password = self.password,
        );
        // The server's certificate also serves as its client certificate towards its master.
        conf += &format!(
            "tls-client-cert-file {}\ntls-client-key-file {}\n",
            path(certificates.path("client.pem")),
            path(certificates.path("client-key.pem"))
        );
        if self.cluster {
            conf += "cluster-enabled yes\ntls-cluster yes\ncluster-node-timeout 1000\n\
                     cluster-config-file nodes.conf\n";
        }
        let file = dir.join("redis.conf");
        std::fs::write(&file, conf).unwrap();
        let child = Command::new("redis-server")
            .arg(&file)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.servers[i] = Some(child);
    }

    /// `redis-cli` against `port`, over TLS, as the ACL user.
    pub fn cli(&self, certificates: &Certificates, port: u16) -> Command {
        let mut cli = Command::new("redis-cli");
        cli.args(["-h", "127.0.0.1", "-p", &port.to_string(), "--tls"])
            .arg("--cacert")
            .arg(certificates.ca())
            .arg("--cert")
            .arg(certificates.path("client.pem"))
            .arg("--key")
            .arg(certificates.path("client-key.pem"))
            .args([
                "--user",
                USER,
                "--pass",
                &self.password,
                "--no-auth-warning",
            ]);
        cli
    }

    /// `redis-cli` output of one command against `port` (empty if the node does not answer).
    pub fn ask(&self, certificates: &Certificates, port: u16, args: &[&str]) -> String {
        let output = self
            .cli(certificates, port)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Every node sees the cluster ok, with every other node connected, and every replica has
    /// its master's data (its replication link is up).
    fn is_settled(&self, certificates: &Certificates, nodes: usize) -> bool {
        self.ports.iter().all(|port| {
            let replication = self.ask(certificates, *port, &["info", "replication"]);
            (replication.contains("role:master") || replication.contains("master_link_status:up"))
                && self
                    .ask(certificates, *port, &["cluster", "info"])
                    .contains("cluster_state:ok")
                && self
                    .ask(certificates, *port, &["cluster", "nodes"])
                    .lines()
                    .filter(|l| l.contains("connected"))
                    .count()
                    == nodes
        })
    }

    /// The cluster slot of `project`'s keys (all of which carry its hash tag).
    pub fn slot_of(&self, certificates: &Certificates, project: &Id) -> u16 {
        let prefix = switchboard::store::keys::project_prefix(project);
        self.ask(
            certificates,
            self.ports[0],
            &["cluster", "keyslot", &prefix],
        )
        .trim()
        .parse()
        .expect("CLUSTER KEYSLOT answers a slot")
    }

    /// The port of the master that holds `slot`, as the node at `ask_port` sees it (`None`
    /// while that master is failing).
    pub fn master_of(&self, certificates: &Certificates, ask_port: u16, slot: u16) -> Option<u16> {
        let nodes = self.ask(certificates, ask_port, &["cluster", "nodes"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let owns = fields[8..].iter().any(|range| match range.split_once('-') {
                Some((a, b)) => {
                    (a.parse().unwrap_or(u16::MAX)..=b.parse().unwrap_or(0)).contains(&slot)
                }
                None => range.parse() == Ok(slot),
            });
            if owns {
                let address = fields[1].split('@').next().unwrap();
                return address.rsplit(':').next().unwrap().parse().ok();
            }
        }
        None
    }

    /// Kills the server on `port` at once (SIGKILL), as a crash would.
    pub fn kill(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).unwrap();
        if let Some(mut child) = self.servers[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        for server in self.servers.iter_mut() {
            if let Some(mut child) = server.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The client side of `certificates`, as a worker's or a store's TLS settings.
pub fn tls_files(certificates: &Certificates) -> TlsFiles {
    TlsFiles {
        ca_file: Some(certificates.ca()),
        cert_file: Some(certificates.path("client.pem")),
        key_file: Some(certificates.path("client-key.pem")),
    }
}

/// A store on `cluster` with the workers' defaults, over TLS.
pub async fn cluster_store(cluster: &TlsRedis, certificates: &Certificates) -> Store {
    let options = StoreOptions {
        tls: tls_files(certificates),
        ..StoreOptions::default()
    };
    Store::connect(&[cluster.url()], options).await.unwrap()
}

/// Points a worker's `config` at `redis` (a node or a cluster), with this suite's client
/// certificate.
pub fn use_redis(config: &mut Config, redis: &TlsRedis, certificates: &Certificates) {
    let tls = tls_files(certificates);
    config.redis_url = redis.url().into();
    config.tls_ca_file = tls.ca_file;
    config.tls_cert_file = tls.cert_file;
    config.tls_key_file = tls.key_file;
}
