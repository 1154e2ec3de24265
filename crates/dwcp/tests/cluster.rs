//! Nodes in a cluster on a real nats-server: they see each other, a killed
//! node is gone from the others' view within 3 s, a stopped one at once.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestNode, data_dir};
use dwcp_cluster::local::LocalServer;
use serde_json::Value;

/// The tests here run one at a time: each starts several nodes and a
/// server, and some bound how long a failure takes to be noticed, which
/// two cores shared with another such test would stretch.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn nats() -> Option<(LocalServer, tempfile::TempDir)> {
    LocalServer::for_tests(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        "",
        "nats",
    )
}

fn node_ids(node: &TestNode) -> Vec<String> {
    let out: Value = serde_json::from_str(&node.cli_ok(&["nodes", "--json"])).unwrap();
    out["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap().to_string())
        .collect()
}

/// Polls `node`'s view until `done` holds; how long it took.
fn until(node: &TestNode, limit: Duration, done: impl Fn(&[String]) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let ids = node_ids(node);
        if done(&ids) {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "still {ids:?} after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn nodes_see_each_other_and_a_killed_one_is_gone_within_three_seconds() {
    let _serial = one_at_a_time();
    let Some((server, _dir)) = nats() else {
        return;
    };
    let (da, db, dc) = (data_dir(), data_dir(), data_dir());
    let a = TestNode::start_with(
        da.path(),
        &[
            "--cluster",
            &server.url,
            "--node-id",
            "edge-a",
            "--region",
            "eu-west",
            "--labels",
            "tier=gold",
        ],
    );
    let mut b = TestNode::start_with(
        db.path(),
        &[
            "--cluster",
            &server.url,
            "--node-id",
            "edge-b",
            "--region",
            "us-east",
        ],
    );
    let mut c = TestNode::start_with(
        dc.path(),
        &[
            "--cluster",
            &server.url,
            "--node-id",
            "edge-c",
            "--region",
            "us-east",
        ],
    );
    until(&a, Duration::from_secs(5), |ids| ids.len() == 3);

    let listed: Value =
        serde_json::from_str(&a.cli_ok(&["nodes", "list", "--region", "us-east", "--json"]))
            .unwrap();
    let ids: Vec<&str> = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["edge-b", "edge-c"]);
    let me: Value =
        serde_json::from_str(&a.cli_ok(&["nodes", "status", "edge-a", "--json"])).unwrap();
    assert_eq!(me["labels"]["tier"], "gold");
    assert_eq!(me["self"], true);
    let health: Value = serde_json::from_str(&a.cli_ok(&["cluster", "health", "--json"])).unwrap();
    assert_eq!(health["nodes"], 3);
    assert_eq!(health["regions"]["us-east"], 2);
    assert_eq!(health["healthy"], true);

    // SIGKILL: no goodbye; its record expires on the server.
    b.signal("KILL");
    b.wait_exit(Duration::from_secs(5));
    let noticed = until(&a, Duration::from_secs(5), |ids| {
        !ids.iter().any(|i| i == "edge-b")
    });
    assert!(
        noticed < Duration::from_secs(3),
        "a killed node noticed after {noticed:?}"
    );

    // SIGTERM: the node deregisters as it stops.
    c.signal("TERM");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
    let noticed = until(&a, Duration::from_secs(3), |ids| {
        !ids.iter().any(|i| i == "edge-c")
    });
    assert!(
        noticed < Duration::from_secs(1),
        "a stopped node noticed after {noticed:?}"
    );
}

#[test]
fn a_node_id_in_use_or_a_cluster_out_of_reach_stops_the_start_with_the_reason() {
    let _serial = one_at_a_time();
    let Some((server, _dir)) = nats() else {
        return;
    };
    let da = data_dir();
    let _a = TestNode::start_with(
        da.path(),
        &["--cluster", &server.url, "--node-id", "edge-a"],
    );
    let db = data_dir();
    let start = |flags: &[&str]| common::up_refused(db.path(), flags);
    let out = start(&["--cluster", &server.url, "--node-id", "edge-a"]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("already in the cluster"),
        "{}",
        common::stderr(&out)
    );
    let out = start(&["--cluster", "nats://127.0.0.1:9", "--node-id", "edge-z"]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("cannot reach the cluster"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn a_malformed_node_id_region_or_label_is_refused_with_what_is_allowed() {
    let _serial = one_at_a_time();
    let dir = data_dir();
    for (flags, expected) in [
        (&["--node-id", "edge 1"][..], "--node-id `edge 1`"),
        (&["--region", "eu/west"][..], "--region `eu/west`"),
        (
            &["--labels", "tier"][..],
            "--labels: `tier` is not KEY=VALUE",
        ),
    ] {
        let out = common::up_refused(dir.path(), flags);
        assert!(!out.status.success(), "{flags:?}");
        assert!(
            common::stderr(&out).contains(expected),
            "{}",
            common::stderr(&out)
        );
    }
}

/// A node in `region` of the cluster at `url`.
fn cluster_node(dir: &Path, url: &str, id: &str, region: &str) -> TestNode {
    TestNode::start_with(
        dir,
        &["--cluster", url, "--node-id", id, "--region", region],
    )
}

/// Polls until `node` answers `host` with `status`; how long it took.
fn until_status(node: &TestNode, host: &str, status: u16, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let got = node.request("GET", host, "/", b"").status;
        if got == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{host} still answers {got} on {} after {limit:?}, not {status}",
            node.http
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `work` against the cluster's desired state, as another client would.
fn with_state<T>(url: &str, work: impl AsyncFnOnce(dwcp_cluster::DesiredState) -> T) -> T {
    with_state_in(url, None, work).expect("the cluster's state")
}

/// [`with_state`] through a server whose JetStream `domain` holds the
/// state; `None` when it cannot be reached (yet).
fn with_state_in<T>(
    url: &str,
    domain: Option<&str>,
    work: impl AsyncFnOnce(dwcp_cluster::DesiredState) -> T,
) -> Option<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cluster = dwcp_cluster::Cluster::connect(&dwcp_cluster::ClusterOptions {
            url: url.into(),
            ca_pem: None,
            name: "test".into(),
            replicas: 1,
            domain: domain.map(str::to_string),
        })
        .await
        .ok()?;
        let state = dwcp_cluster::DesiredState::open(&cluster).await.ok()?;
        Some(work(state).await)
    })
}

#[test]
fn a_deploy_through_one_node_serves_from_every_node_and_a_delete_reaches_all() {
    let _serial = one_at_a_time();
    let Some((server, _dir)) = nats() else {
        return;
    };
    let (da, db, dc) = (data_dir(), data_dir(), data_dir());
    let a = cluster_node(da.path(), &server.url, "edge-a", "eu-west");
    let b = cluster_node(db.path(), &server.url, "edge-b", "us-east");

    a.deploy("demo/hello", "hello", &[]);
    until_status(&b, "hello.demo.localhost", 200, Duration::from_secs(10));

    // A change through the other node comes back: a new version, a config value.
    b.deploy("demo/hello", "echo", &[]);
    b.cli_ok(&["config", "set", "demo/hello", "GREETING=hej"]);
    let started = Instant::now();
    loop {
        let status: Value =
            serde_json::from_str(&a.cli_ok(&["status", "demo/hello", "--json"])).unwrap();
        let config = a.cli_ok(&["config", "list", "demo/hello"]);
        if status["active_version"] == "v2" && config.contains("hej") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "edge-a still has {status} / {config}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A node joining later catches up on what was deployed before it.
    a.deploy("demo/late", "hello", &[]);
    let c = cluster_node(dc.path(), &server.url, "edge-c", "us-east");
    until_status(&c, "late.demo.localhost", 200, Duration::from_secs(10));
    until_status(&c, "hello.demo.localhost", 200, Duration::from_secs(10));

    // A delete through any node reaches every node.
    c.cli_ok(&["delete", "demo/late"]);
    until_status(&a, "late.demo.localhost", 404, Duration::from_secs(10));
    until_status(&b, "late.demo.localhost", 404, Duration::from_secs(10));

    // A record naming a signed artifact under another app's name is
    // refused by every node: the signature binds the bytes to their app.
    with_state(&server.url, async |state| {
        let hello = dwcp_cluster::StateKey::App {
            tenant: "demo".into(),
            app: "hello".into(),
        };
        let (value, _) = state.get(&hello).await.unwrap().unwrap();
        let mut entry: Value = serde_json::from_slice(&value).unwrap();
        entry["record"]["app"] = "forged".into();
        entry["origin"] = "elsewhere".into();
        let forged = dwcp_cluster::StateKey::App {
            tenant: "demo".into(),
            app: "forged".into(),
        };
        state
            .put(&forged, serde_json::to_vec(&entry).unwrap())
            .await
            .unwrap();
        // A value of a schema newer than this release reads is left alone.
        let (value, _) = state.get(&hello).await.unwrap().unwrap();
        let mut entry: Value = serde_json::from_slice(&value).unwrap();
        entry["v"] = 99.into();
        entry["record"]["app"] = "newer".into();
        let newer = dwcp_cluster::StateKey::App {
            tenant: "demo".into(),
            app: "newer".into(),
        };
        state
            .put(&newer, serde_json::to_vec(&entry).unwrap())
            .await
            .unwrap();
    });
    // Applied in order: once a later change is served, the forgery was seen.
    a.cli_ok(&["config", "set", "demo/hello", "GREETING=after"]);
    let started = Instant::now();
    while !b
        .cli_ok(&["config", "list", "demo/hello"])
        .contains("after")
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        b.request("GET", "forged.demo.localhost", "/", b"").status,
        404
    );
    // Nor is a value of a newer schema served.
    assert_eq!(
        b.request("GET", "newer.demo.localhost", "/", b"").status,
        404
    );
    assert!(!b.cli_ok(&["apps"]).contains("newer"));
    assert!(!b.cli_ok(&["apps"]).contains("forged"));
}

/// `dwcp route status --json` of `app` on `node`, once `done` holds.
fn until_route(node: &TestNode, app: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        // Until the app reaches this node, it does not know it.
        let out = node.cli(&["route", "status", app, "--json"]);
        let route: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if out.status.success() && done(&route) {
            return route;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{app} on {}: {route}",
            node.http
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn replica_nodes(route: &Value) -> Vec<String> {
    let mut nodes: Vec<String> = route["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap().to_string())
        .collect();
    nodes.sort();
    nodes
}

#[test]
fn replicas_are_placed_as_asked_requests_are_forwarded_and_gets_survive_a_killed_replica() {
    let _serial = one_at_a_time();
    let Some((server, _dir)) = nats() else {
        return;
    };
    let (da, db, dc) = (data_dir(), data_dir(), data_dir());
    let a = cluster_node(da.path(), &server.url, "edge-a", "eu-west");
    let mut b = cluster_node(db.path(), &server.url, "edge-b", "us-east");
    let c = cluster_node(dc.path(), &server.url, "edge-c", "us-east");
    until(&a, Duration::from_secs(5), |ids| ids.len() == 3);

    // A cordoned node takes no new replicas.
    a.cli_ok(&["nodes", "cordon", "edge-c"]);
    until(&c, Duration::from_secs(5), |_| {
        c.cli_ok(&["nodes", "status", "edge-c", "--json"])
            .contains("cordoned")
    });
    a.deploy("demo/spread", "hello", &["--replicas", "2"]);
    let route = until_route(&c, "demo/spread", |r| {
        r["replicas"].as_array().unwrap().len() == 2
    });
    assert_eq!(replica_nodes(&route), ["edge-a", "edge-b"], "{route}");
    // The node without a replica forwards: the answer says who served it.
    until_status(&c, "spread.demo.localhost", 200, Duration::from_secs(10));
    let reply = c.request("GET", "spread.demo.localhost", "/", b"");
    assert!(
        matches!(reply.header("x-dwcp-served-by"), Some("edge-a" | "edge-b")),
        "{:?}",
        reply.headers
    );
    a.cli_ok(&["nodes", "uncordon", "edge-c"]);

    // Pinned to a region: a node elsewhere forwards there.
    a.deploy(
        "demo/pinned",
        "hello",
        &["--replicas", "1", "--region", "us-east"],
    );
    let route = until_route(&a, "demo/pinned", |r| {
        r["replicas"].as_array().unwrap().len() == 1
    });
    let first = replica_nodes(&route).remove(0);
    assert!(first == "edge-b" || first == "edge-c", "{route}");
    until_status(&a, "pinned.demo.localhost", 200, Duration::from_secs(10));
    let reply = a.request("GET", "pinned.demo.localhost", "/", b"");
    assert_eq!(reply.header("x-dwcp-served-by"), Some(first.as_str()));

    // Draining moves the replica to the other node of the region.
    a.cli_ok(&["nodes", "drain", &first]);
    let route = until_route(&a, "demo/pinned", |r| {
        replica_nodes(r).len() == 1 && replica_nodes(r)[0] != first
    });
    let second = replica_nodes(&route).remove(0);
    until(&a, Duration::from_secs(5), |_| {
        a.request("GET", "pinned.demo.localhost", "/", b"")
            .header("x-dwcp-served-by")
            == Some(second.as_str())
    });
    a.cli_ok(&["nodes", "uncordon", &first]);

    // Two replicas; GETs through edge-a keep succeeding while one is killed.
    a.cli_ok(&["scale", "demo/pinned", "2", "--region", "us-east"]);
    until_route(&a, "demo/pinned", |r| {
        replica_nodes(r) == ["edge-b", "edge-c"]
    });
    let http = a.http;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = common::request(http, "GET", "pinned.demo.localhost", "/", b"");
                if reply.status == 200 {
                    ok += 1;
                } else {
                    failed.push(format!("{} {}", reply.status, reply.text()));
                }
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    b.signal("KILL");
    b.wait_exit(Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.join().unwrap();
    assert!(ok > 50, "only {ok} GETs answered");
    assert!(
        failed.is_empty(),
        "{} GETs failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    // The dead node's replica is gone from the placement.
    until_route(&a, "demo/pinned", |r| replica_nodes(r) == ["edge-c"]);
}

/// What the edge cache did for a GET of `host` through `node`.
fn cache_outcome(node: &TestNode, host: &str, headers: &[(&str, &str)]) -> String {
    let reply = common::request_with(node.http, "GET", host, "/", headers);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.header("x-dwcp-cache").unwrap_or("none").to_string()
}

#[test]
fn the_edge_cache_keeps_answers_by_the_apps_ttl_and_a_purge_reaches_every_node() {
    let _serial = one_at_a_time();
    let Some((server, _dir)) = nats() else {
        return;
    };
    let (da, db) = (data_dir(), data_dir());
    let a = cluster_node(da.path(), &server.url, "edge-a", "eu-west");
    let b = cluster_node(db.path(), &server.url, "edge-b", "us-east");
    a.deploy("demo/hello", "hello", &[]);
    until_status(&b, "hello.demo.localhost", 200, Duration::from_secs(10));

    // Without a TTL and with no freshness in its headers, nothing is kept.
    assert_eq!(cache_outcome(&b, "hello.demo.localhost", &[]), "bypass");
    a.cli_ok(&["apps", "set", "demo/hello", "--cache-ttl", "30s"]);
    let started = Instant::now();
    while cache_outcome(&b, "hello.demo.localhost", &[]) != "hit" {
        assert!(started.elapsed() < Duration::from_secs(10), "never a hit");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats: Value = serde_json::from_str(&b.cli_ok(&["cache", "stats", "--json"])).unwrap();
    assert!(stats["hits"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["entries"].as_u64().unwrap() >= 1, "{stats}");

    // Turning the TTL off drops what was kept under it, on every node.
    a.cli_ok(&["apps", "set", "demo/hello", "--cache-ttl", "off"]);
    let started = Instant::now();
    while cache_outcome(&b, "hello.demo.localhost", &[]) != "bypass" {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still kept on edge-b"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    a.cli_ok(&["apps", "set", "demo/hello", "--cache-ttl", "30s"]);
    while cache_outcome(&b, "hello.demo.localhost", &[]) != "hit" {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never a hit again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A purge through one node empties the others' caches too.
    a.cli_ok(&["cache", "purge", "demo/hello"]);
    let started = Instant::now();
    while cache_outcome(&b, "hello.demo.localhost", &[]) != "miss" {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not purged on edge-b"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(cache_outcome(&b, "hello.demo.localhost", &[]), "hit");

    // A stateful app's answers are not kept by its default TTL.
    a.deploy("demo/counter", "counter", &["--stateful"]);
    a.cli_ok(&["apps", "set", "demo/counter", "--cache-ttl", "30s"]);
    let key = [("x-dwcp-key", "alice")];
    until_status(&a, "counter.demo.localhost", 400, Duration::from_secs(10));
    for _ in 0..3 {
        assert_eq!(cache_outcome(&a, "counter.demo.localhost", &key), "bypass");
    }
}

#[test]
fn a_replica_follows_demand_to_the_region_requests_come_from() {
    let _serial = one_at_a_time();
    let Some((server, _dir)) = nats() else {
        return;
    };
    let (da, db) = (data_dir(), data_dir());
    let flags = |id: &'static str, region: &'static str| {
        [
            "--cluster",
            server.url.as_str(),
            "--node-id",
            id,
            "--region",
            region,
            "--demand-window",
            "20s",
        ]
    };
    let a = TestNode::start_with(da.path(), &flags("edge-a", "eu-west"));
    let b = TestNode::start_with(db.path(), &flags("edge-b", "us-east"));
    until(&a, Duration::from_secs(5), |ids| ids.len() == 2);
    // One replica, placed in eu-west; every request enters in us-east.
    a.deploy(
        "demo/hello",
        "hello",
        &["--replicas", "1", "--region", "eu-west"],
    );
    until_route(&a, "demo/hello", |r| replica_nodes(r) == ["edge-a"]);
    a.cli_ok(&["apps", "set", "demo/hello", "--pin-region", "any"]);
    until_status(&b, "hello.demo.localhost", 200, Duration::from_secs(10));
    for _ in 0..150 {
        assert_eq!(
            b.request("GET", "hello.demo.localhost", "/", b"").status,
            200
        );
    }
    let route = until_route(&a, "demo/hello", |r| replica_nodes(r) == ["edge-b"]);
    let reasons = route["reasons"].to_string();
    assert!(reasons.contains("demand: us-east sent 100.0%"), "{route}");
    // Served where the demand is, now.
    until(&b, Duration::from_secs(5), |_| {
        b.request("GET", "hello.demo.localhost", "/", b"")
            .header("x-dwcp-served-by")
            .is_none()
    });
}

/// A port free now on loopback (for a server's leafnode listener, which
/// the ports file does not report).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

#[test]
fn a_node_at_a_leaf_site_serves_on_while_the_hub_is_down_and_catches_up_after() {
    let _serial = one_at_a_time();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let Some(binary) = LocalServer::binary(&root) else {
        eprintln!("NOTICE: no nats-server: skipped");
        return;
    };
    let dirs = tempfile::tempdir().unwrap();
    let leaf_port = free_port();
    let hub_config = format!(
        "jetstream {{ store_dir: \"{}\", domain: hub }}\nleafnodes {{ listen: 127.0.0.1:{leaf_port} }}",
        dirs.path().join("hub-js").display()
    );
    let start_hub = |name: &str| {
        let dir = dirs.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        LocalServer::start(&binary, &dir, &hub_config, "nats").unwrap()
    };
    let hub = start_hub("hub");
    let leaf_dir = dirs.path().join("leaf");
    std::fs::create_dir_all(&leaf_dir).unwrap();
    let leaf = LocalServer::start(
        &binary,
        &leaf_dir,
        &format!(
            "jetstream {{ store_dir: \"{}\", domain: site1 }}\nleafnodes {{ remotes: [ {{ url: \"nats://127.0.0.1:{leaf_port}\" }} ] }}",
            leaf_dir.join("js").display()
        ),
        "nats",
    )
    .unwrap();
    // The hub's state answers through the leaf once the leaf has linked up.
    let started = Instant::now();
    while with_state_in(&leaf.url, Some("hub"), async |state| {
        state.keys().await.is_ok()
    }) != Some(true)
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the leaf never linked to the hub"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let (da, db) = (data_dir(), data_dir());
    let a = cluster_node(da.path(), &hub.url, "hub-a", "core");
    let b = TestNode::start_with(
        db.path(),
        &[
            "--cluster",
            &leaf.url,
            "--cluster-domain",
            "hub",
            "--node-id",
            "site-b",
            "--region",
            "site1",
        ],
    );
    a.deploy("demo/hello", "hello", &[]);
    until_status(&b, "hello.demo.localhost", 200, Duration::from_secs(10));

    // The hub goes: the site's node serves what it has.
    drop(hub);
    drop(a);
    for _ in 0..20 {
        assert_eq!(
            b.request("GET", "hello.demo.localhost", "/", b"").status,
            200
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A change made at the site meanwhile is kept, and goes out later.
    b.cli_ok(&["config", "set", "demo/hello", "SITE=site1"]);

    // The hub comes back (same state): the site's change reaches it...
    let hub = start_hub("hub-again");
    let app_key = dwcp_cluster::StateKey::App {
        tenant: "demo".into(),
        app: "hello".into(),
    };
    let started = Instant::now();
    loop {
        let config = with_state_in(&hub.url, None, async |state| {
            let (value, _) = state.get(&app_key).await.ok()??;
            let entry: Value = serde_json::from_slice(&value).ok()?;
            Some(entry["record"]["config"].clone())
        })
        .flatten();
        if config.is_some_and(|c| c["SITE"] == "site1") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the site's change never reached the hub"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // ...and a change made there reaches the site.
    let started = Instant::now();
    loop {
        let changed = with_state_in(&hub.url, None, async |state| {
            let key = dwcp_cluster::StateKey::App {
                tenant: "demo".into(),
                app: "hello".into(),
            };
            let Ok(Some((value, _))) = state.get(&key).await else {
                return false;
            };
            let mut entry: Value = serde_json::from_slice(&value).unwrap();
            entry["record"]["config"]["GREETING"] = "back".into();
            entry["origin"] = "hub-ops".into();
            state
                .put(&key, serde_json::to_vec(&entry).unwrap())
                .await
                .is_ok()
        });
        if changed == Some(true) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the hub did not come back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    while !b.cli_ok(&["config", "list", "demo/hello"]).contains("back") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the site did not catch up with the hub"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        b.request("GET", "hello.demo.localhost", "/", b"").status,
        200
    );
}

#[test]
fn bad_placement_cache_and_node_options_are_refused_with_why_and_change_nothing() {
    let _serial = one_at_a_time();
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/hello", "hello", &["--replicas", "2"]);
    let refused = |args: &[&str], why: &str| {
        let out = node.cli(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let said = common::stderr(&out);
        assert!(said.contains(why), "{args:?}: {said}");
    };
    let hello = common::example("hello");
    let hello = hello.to_str().unwrap();
    refused(
        &["deploy", "demo/other", hello, "--replicas", "0"],
        "--replicas must be between 1 and 1000",
    );
    refused(
        &["deploy", "demo/other", hello, "--region", "eu west"],
        "region `eu west`",
    );
    refused(
        &[
            "deploy",
            "demo/kept",
            hello,
            "--stateful",
            "--replicas",
            "2",
        ],
        "a stateful app runs one replica",
    );
    refused(
        &["apps", "set", "demo/hello", "--cache-ttl", "soon"],
        "--cache-ttl `soon`",
    );
    refused(
        &["apps", "set", "demo/hello", "--cache-ttl", "90d"],
        "--cache-ttl must be at most 30d",
    );
    refused(
        &["scale", "demo/hello", "0"],
        "--replicas must be between 1 and 1000",
    );
    refused(
        &["cache", "purge", "--path", "/x"],
        "--path needs TENANT/APP",
    );
    refused(
        &["cache", "purge", "demo/hello", "--path", "x"],
        "starts with `/`",
    );
    refused(&["nodes", "cordon", "node"], "not in a cluster");

    // Nothing was changed or half-made by any of them.
    let apps = node.cli_ok(&["apps", "--json"]);
    assert!(!apps.contains("other") && !apps.contains("kept"), "{apps}");
    let route: Value =
        serde_json::from_str(&node.cli_ok(&["route", "status", "demo/hello", "--json"])).unwrap();
    assert_eq!(route["spec"]["replicas"], 2, "{route}");
    assert_eq!(
        node.request("GET", "hello.demo.localhost", "/", b"")
            .header("x-dwcp-cache"),
        Some("bypass")
    );

    // A demand window too short to mean anything stops the start.
    let other = data_dir();
    let out = common::up_refused(
        other.path(),
        &["--cluster", "nats://127.0.0.1:1", "--demand-window", "1s"],
    );
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("--demand-window `1s`"),
        "{}",
        common::stderr(&out)
    );
}

/// POSTs increments of `keys` (one thread each) through `entries` in turn
/// until `stop`; each thread's increments answered 200, and what failed.
fn count_under_load(
    entries: Vec<std::net::SocketAddr>,
    keys: &[&str],
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<(String, u64, Vec<String>)>> {
    keys.iter()
        .map(|key| {
            let (key, stop, entries) = (key.to_string(), stop.clone(), entries.clone());
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0u64, Vec::new());
                let mut turn = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let entry = entries[turn % entries.len()];
                    turn += 1;
                    let reply = common::request_full(
                        entry,
                        "POST",
                        "counter.demo.localhost",
                        "/",
                        &[("x-dwcp-key", &key)],
                        b"",
                    );
                    // Each key was at 1 (its first POST) before the load.
                    if reply.status == 200 && reply.text().trim() == (ok + 2).to_string() {
                        ok += 1;
                    } else {
                        failed.push(format!("via {entry}: {} {}", reply.status, reply.text()));
                        if reply.status == 200 {
                            // The count went wrong: stop counting on it.
                            break;
                        }
                    }
                }
                (key, ok, failed)
            })
        })
        .collect()
}

fn count_of(node: &TestNode, key: &str) -> (String, Option<String>) {
    let reply = common::request_with(
        node.http,
        "GET",
        "counter.demo.localhost",
        "/",
        &[("x-dwcp-key", key)],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    (
        reply.text().trim().to_string(),
        reply.header("x-dwcp-served-by").map(str::to_string),
    )
}

#[test]
fn a_live_migration_under_load_loses_no_request_and_no_increment() {
    let _serial = one_at_a_time();
    let Some((server, _dir)) = nats() else {
        return;
    };
    let (da, db, dc) = (data_dir(), data_dir(), data_dir());
    let a = cluster_node(da.path(), &server.url, "edge-a", "eu-west");
    let b = cluster_node(db.path(), &server.url, "edge-b", "us-east");
    let c = cluster_node(dc.path(), &server.url, "edge-c", "us-east");
    until(&a, Duration::from_secs(5), |ids| ids.len() == 3);
    a.deploy("demo/counter", "counter", &["--stateful"]);
    let route = until_route(&c, "demo/counter", |r| replica_nodes(r).len() == 1);
    let from = replica_nodes(&route).remove(0);
    let to = if from == "edge-b" { "edge-c" } else { "edge-b" };
    for node in [&a, &b, &c] {
        until_status(node, "counter.demo.localhost", 400, Duration::from_secs(10));
    }
    // Some state to carry besides the count: 1 MiB of heap per key.
    for key in ["k0", "k1", "k2"] {
        let reply = common::request_full(
            a.http,
            "POST",
            "counter.demo.localhost",
            "/?pad=1048576",
            &[("x-dwcp-key", key)],
            b"",
        );
        assert_eq!((reply.status, reply.text().trim()), (200, "1"));
    }

    // Increments enter through every node while every key moves.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = count_under_load(vec![a.http, b.http, c.http], &["k0", "k1", "k2"], &stop);
    std::thread::sleep(Duration::from_millis(500));
    let report: Value =
        serde_json::from_str(&c.cli_ok(&["migrate", "demo/counter", "--to", to, "--json"]))
            .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        (report["from"].as_str(), report["to"].as_str()),
        (Some(from.as_str()), Some(to))
    );
    assert_eq!(report["keys"], 3, "{report}");
    assert!(report["copied_bytes"].as_u64().unwrap() > 0, "{report}");
    for handle in load {
        let (key, ok, failed) = handle.join().unwrap();
        assert!(
            failed.is_empty(),
            "{key}: {} failed: {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
        assert!(ok > 10, "{key}: only {ok} increments");
        // Every acknowledged increment is in the count, now served by `to`.
        for node in [&a, &b, &c] {
            let (count, served_by) = count_of(node, &key);
            assert_eq!(count, (ok + 1).to_string(), "{key} through {}", node.http);
            if node.http != a.http || to != "edge-a" {
                assert_eq!(served_by.as_deref().unwrap_or(to), to);
            }
        }
    }
    let route = until_route(&a, "demo/counter", |r| replica_nodes(r) == [to]);
    assert!(
        route["reasons"].to_string().contains("dwcp migrate"),
        "{route}"
    );

    // One key back, alone: it counts on there, the others stay.
    let before: u64 = count_of(&a, "k0").0.parse().unwrap();
    let out = a.cli_ok(&["migrate", "demo/counter", "--key", "k0", "--to", &from]);
    assert!(
        out.contains(&format!("moved key k0 of demo/counter from {to} to {from}")),
        "{out}"
    );
    for (i, node) in [&a, &b, &c].into_iter().enumerate() {
        let reply = common::request_full(
            node.http,
            "POST",
            "counter.demo.localhost",
            "/",
            &[("x-dwcp-key", "k0")],
            b"",
        );
        assert_eq!(reply.text().trim(), (before + 1 + i as u64).to_string());
        let served_by = reply
            .header("x-dwcp-served-by")
            .unwrap_or(&from)
            .to_string();
        assert_eq!(served_by, from, "k0 through {}", node.http);
    }
    assert_eq!(count_of(&b, "k1").1.as_deref().unwrap_or(to), to);

    // What cannot be moved is refused, with why.
    for (args, why) in [
        (
            vec!["--to", to, "--key", "k1"],
            "serves demo/counter already",
        ),
        (vec!["--to", "edge-z"], "no live node `edge-z`"),
        (
            vec!["--region", "ap-south"],
            "no active node in region `ap-south`",
        ),
    ] {
        let mut all = vec!["migrate", "demo/counter"];
        all.extend(args);
        let out = b.cli(&all);
        assert!(!out.status.success());
        assert!(
            common::stderr(&out).contains(why),
            "{}",
            common::stderr(&out)
        );
    }
    a.deploy("demo/hello", "hello", &[]);
    let out = a.cli(&["migrate", "demo/hello", "--to", to]);
    assert!(
        common::stderr(&out).contains("stateless"),
        "{}",
        common::stderr(&out)
    );

    // A destination that cannot run the app (it does not trust its
    // publisher, so it refused the app): the migration is undone and the
    // keys serve on where they were, every increment kept.
    let dd = data_dir();
    let d = TestNode::start_first_run_with(
        dd.path(),
        &[
            "--cluster",
            &server.url,
            "--node-id",
            "edge-d",
            "--region",
            "us-east",
        ],
    );
    until(&a, Duration::from_secs(5), |ids| ids.len() == 4);
    let k1: u64 = count_of(&d, "k1").0.parse().unwrap();
    let out = a.cli(&["migrate", "demo/counter", "--to", "edge-d"]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("has not received demo/counter"),
        "{}",
        common::stderr(&out)
    );
    let reply = common::request_full(
        d.http,
        "POST",
        "counter.demo.localhost",
        "/",
        &[("x-dwcp-key", "k1")],
        b"",
    );
    assert_eq!(reply.text().trim(), (k1 + 1).to_string());
    assert_eq!(reply.header("x-dwcp-served-by"), Some(to));

    // Draining the node that serves the keys migrates them, state and all.
    let out = a.cli_ok(&["nodes", "drain", to]);
    assert!(out.contains("demo/counter"), "{out}");
    let route = until_route(&a, "demo/counter", |r| {
        !replica_nodes(r).is_empty() && replica_nodes(r)[0] != to
    });
    let now = replica_nodes(&route).remove(0);
    assert_ne!(now, "edge-d", "{route}");
    let (count, _) = count_of(&a, "k1");
    assert_eq!(count, (k1 + 1).to_string());
}
