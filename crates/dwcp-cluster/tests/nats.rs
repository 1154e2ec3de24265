//! Against a real `nats-server` (2.15, JetStream on), started on a free
//! port per test: membership by heartbeats, and the post-quantum link.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dwcp_cluster::local::LocalServer;
use dwcp_cluster::{Cluster, ClusterError, ClusterOptions, MemberEvent, NodeRecord};
use futures_util::StreamExt;

/// A local nats-server with `extra` configuration, or `None` with a notice.
fn start_server(extra: &str, scheme: &str) -> Option<(LocalServer, tempfile::TempDir)> {
    LocalServer::for_tests(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        extra,
        scheme,
    )
}

fn options(url: &str, name: &str) -> ClusterOptions {
    ClusterOptions {
        url: url.into(),
        ca_pem: None,
        name: name.into(),
        replicas: 1,
        domain: None,
    }
}

/// Connects and waits for JetStream to answer (it starts just after the port).
async fn connect(options: &ClusterOptions) -> Cluster {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Cluster::connect(options).await {
            Ok(cluster) if cluster.nodes_bucket().await.is_ok() => return cluster,
            Ok(_) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(cluster) => {
                cluster.nodes_bucket().await.expect("JetStream answers");
                return cluster;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Waits for `wanted` among the events, up to `limit`.
async fn wait_for(
    events: &mut (impl futures_util::Stream<Item = MemberEvent> + Unpin),
    limit: Duration,
    wanted: impl Fn(&MemberEvent) -> bool,
) -> Option<MemberEvent> {
    tokio::time::timeout(limit, async {
        while let Some(e) = events.next().await {
            if wanted(&e) {
                return Some(e);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_beat_and_a_silent_one_is_gone_from_every_view_within_three_seconds() {
    let Some((server, _dir)) = start_server("", "nats") else {
        return;
    };
    let a = connect(&options(&server.url, "dwcp-a")).await;
    let b = connect(&options(&server.url, "dwcp-b")).await;
    let observer = connect(&options(&server.url, "dwcp-observer")).await;

    let mut record = NodeRecord::new("edge-a", "eu-west");
    record.labels.insert("tier".into(), "gold".into());
    let joined_a = a.join(record).await.unwrap();
    let joined_b = b.join(NodeRecord::new("edge-b", "us-east")).await.unwrap();
    let mut events = Box::pin(observer.watch_members().await.unwrap());
    let up = wait_for(
        &mut events,
        Duration::from_secs(5),
        |e| matches!(e, MemberEvent::Up(r) if r.node == "edge-a"),
    )
    .await
    .expect("edge-a seen");
    let MemberEvent::Up(seen) = up else {
        unreachable!()
    };
    assert_eq!(seen.region, "eu-west");
    assert_eq!(seen.labels["tier"], "gold");

    // An update rides on the next heartbeat.
    joined_b.update(|r| r.admission = "cordoned".into());
    wait_for(
        &mut events,
        Duration::from_secs(3),
        |e| matches!(e, MemberEvent::Up(r) if r.node == "edge-b" && r.admission == "cordoned"),
    )
    .await
    .expect("edge-b's update seen");

    // edge-a stops beating (as a SIGKILLed node would): gone within 3 s,
    // while edge-b, still beating, stays.
    let silent = Instant::now();
    drop(joined_a);
    let gone = wait_for(&mut events, Duration::from_secs(5), |e| {
        matches!(e, MemberEvent::Gone(_))
    })
    .await;
    let after = silent.elapsed();
    assert_eq!(gone, Some(MemberEvent::Gone("edge-a".into())));
    assert!(after < Duration::from_secs(3), "noticed after {after:?}");

    // A clean shutdown is seen at once.
    let leaving = Instant::now();
    joined_b.leave().await.unwrap();
    let gone = wait_for(&mut events, Duration::from_secs(3), |e| {
        matches!(e, MemberEvent::Gone(_))
    })
    .await;
    assert_eq!(gone, Some(MemberEvent::Gone("edge-b".into())));
    assert!(leaving.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_node_id_cannot_be_taken_twice() {
    let Some((server, _dir)) = start_server("", "nats") else {
        return;
    };
    let a = connect(&options(&server.url, "dwcp-a")).await;
    let b = connect(&options(&server.url, "dwcp-b")).await;
    let first = a.join(NodeRecord::new("edge-x", "r")).await.unwrap();
    // Past one TTL: the heartbeats keep it.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let second = b.join(NodeRecord::new("edge-x", "r")).await;
    assert!(
        matches!(second, Err(ClusterError::NodeIdTaken(ref id)) if id == "edge-x"),
        "{:?}",
        second.err()
    );
    first.leave().await.unwrap();
    b.join(NodeRecord::new("edge-x", "r"))
        .await
        .expect("free once left");
    let bad = b.join(NodeRecord::new("a b", "r")).await;
    assert!(bad.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_is_post_quantum_tls_only() {
    dwcp_crypto::tls::install_default_provider();
    let (cert, key) = dwcp_crypto::tls::self_signed(&["127.0.0.1", "localhost"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    // The server takes X25519MLKEM768 and nothing else.
    let tls = format!(
        "tls {{\n cert_file: \"{}\"\n key_file: \"{}\"\n handshake_first: true\n min_version: \"1.3\"\n curve_preferences: [\"X25519MLKEM768\"]\n}}",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display()
    );
    let Some((server, _dir)) = start_server(&tls, "tls") else {
        return;
    };
    let mut pq = options(&server.url, "dwcp-pq");
    pq.ca_pem = Some(cert.clone().into_bytes());
    let cluster = connect(&pq).await;
    let joined = cluster.join(NodeRecord::new("edge-pq", "r")).await.unwrap();
    joined.leave().await.unwrap();

    // Without the cluster's CA the server is not trusted.
    let untrusted = Cluster::connect(&options(&server.url, "dwcp-no-ca")).await;
    assert!(untrusted.is_err());

    // A classical-only client (X25519) is refused by the server.
    let provider = rustls::crypto::CryptoProvider {
        kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::X25519],
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let classical = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let refused = async_nats::ConnectOptions::new()
        .tls_client_config(classical)
        .tls_first()
        .connection_timeout(Duration::from_secs(3))
        .connect(server.url.as_str())
        .await;
    assert!(refused.is_err(), "a classical-only client was let in");

    // And a URL of another kind is refused plainly.
    let wrong = Cluster::connect(&options("http://127.0.0.1:4222", "x")).await;
    assert!(matches!(wrong, Err(ClusterError::Url(_))));
}
