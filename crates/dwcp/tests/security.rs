//! Security at the node's edges: admin tokens, signed artifacts, HTTPS.
//! Each test starts a real node on free ports.

mod common;

use common::{TestNode, data_dir, example, request, request_with, stderr};

fn get(node: &TestNode, path: &str, token: Option<&str>) -> common::Reply {
    match token {
        Some(t) => {
            let auth = format!("Bearer {t}");
            request_with(
                node.admin,
                "GET",
                "localhost",
                path,
                &[("authorization", &auth)],
            )
        }
        None => request(node.admin, "GET", "localhost", path, b""),
    }
}

#[test]
fn every_admin_call_but_health_needs_a_token() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("admin-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = node.token();

    for path in ["/healthz", "/readyz"] {
        assert_eq!(get(&node, path, None).status, 200, "{path}");
    }
    for path in ["/v1/apps", "/v1/tenants", "/metrics", "/v1/audit"] {
        let reply = get(&node, path, None);
        assert_eq!(reply.status, 401, "{path}: {}", reply.text());
        assert!(reply.text().contains("needs a token"), "{}", reply.text());
        assert_eq!(get(&node, path, Some("dwcp_wrong")).status, 401, "{path}");
        assert_eq!(get(&node, path, Some(&token)).status, 200, "{path}");
    }
    // The CLI finds the token in the data directory by itself.
    node.cli_ok(&["apps", "list"]);
    let out = node.cli(&["--token", "dwcp_wrong", "apps", "list"]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("not valid"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn metrics_can_be_public() {
    let dir = data_dir();
    let node = TestNode::start_with(dir.path(), &["--metrics-public"]);
    assert_eq!(get(&node, "/metrics", None).status, 200);
    assert_eq!(get(&node, "/v1/apps", None).status, 401);
}

#[test]
fn a_tenant_token_reaches_its_own_apps_only_until_revoked() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("acme/hello", "hello", &[]);
    node.deploy("other/hello", "hello", &[]);
    let out = node.cli_ok(&[
        "tokens", "create", "--tenant", "acme", "--name", "ci", "--json",
    ]);
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    // Stored hashed: the token itself is nowhere on disk.
    let stored = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
    assert!(!stored.contains(&token) && stored.contains(&id));

    let apps = get(&node, "/v1/apps", Some(&token));
    assert_eq!(apps.status, 200);
    assert!(
        apps.text().contains("acme") && !apps.text().contains("other"),
        "{}",
        apps.text()
    );
    assert_eq!(get(&node, "/v1/apps/acme/hello", Some(&token)).status, 200);
    for path in [
        "/v1/apps/other/hello",
        "/v1/tenants",
        "/v1/audit",
        "/metrics",
        "/v1/tokens",
    ] {
        let reply = get(&node, path, Some(&token));
        assert_eq!(reply.status, 403, "{path}: {}", reply.text());
        assert!(
            reply.text().contains("scoped to tenant acme"),
            "{}",
            reply.text()
        );
    }
    // The CLI with the tenant's token: its app, not the other's.
    node.cli_ok(&["--token", &token, "status", "acme/hello"]);
    assert!(
        !node
            .cli(&["--token", &token, "delete", "other/hello"])
            .status
            .success()
    );
    assert_eq!(
        get(&node, "/v1/apps/other/hello", Some(&node.token())).status,
        200
    );

    // Changes are audited with the token that made them.
    node.cli_ok(&["--token", &token, "restart", "acme/hello"]);
    let audit = node.admin_get("/v1/audit");
    assert!(audit.contains(&format!("\"token\":\"{id}\"")), "{audit}");

    let listed = node.cli_ok(&["tokens", "list"]);
    assert!(
        listed.contains(&id) && listed.contains("tenant acme"),
        "{listed}"
    );
    node.cli_ok(&["tokens", "revoke", &id]);
    assert_eq!(get(&node, "/v1/apps", Some(&token)).status, 401);
}

/// Uploads `bytes` as `tenant/app` `version` with the given signature
/// headers, straight to the admin API.
fn upload(node: &TestNode, path: &str, bytes: &[u8], headers: &[(&str, &str)]) -> common::Reply {
    let auth = format!("Bearer {}", node.token());
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    common::request_full(node.admin, "POST", "localhost", path, &all, bytes)
}

/// `dwcp deploy t/a FILE --key KEY`.
fn deploy_with_key(
    node: &TestNode,
    file: &std::path::Path,
    key: &std::path::Path,
) -> std::process::Output {
    node.cli(&[
        "deploy",
        "t/a",
        file.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ])
}

fn assert_deployed(out: std::process::Output) {
    assert!(out.status.success(), "deploy failed: {}", stderr(&out));
}

fn key_id_of(pub_file: &std::path::Path) -> String {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(pub_file).unwrap()).unwrap();
    v["key_id"].as_str().unwrap().to_string()
}

#[test]
fn a_first_run_makes_and_trusts_a_local_key_that_the_cli_signs_with() {
    let dir = data_dir();
    let node = TestNode::start_first_run(dir.path());
    use std::os::unix::fs::PermissionsExt;
    for file in ["keys/local.key", "keys/root.key"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let out = node.deploy("demo/hello", "hello", &[]);
    assert!(out.contains("deployed demo/hello v1"), "{out}");
    let versions: serde_json::Value =
        serde_json::from_str(&node.cli_ok(&["versions", "demo/hello", "--json"])).unwrap();
    let listed = node.cli_ok(&["keys", "list", "--json"]);
    let keys: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let local = &keys["keys"][0];
    assert_eq!(local["name"], "local");
    assert_eq!(local["algorithm"], "id-MLDSA65-Ed25519-SHA512");
    assert_eq!(local["status"], "active");
    assert_eq!(keys["root_algorithm"], "SLH-DSA-SHAKE-192s");
    assert_eq!(versions[0]["signed_by"], local["key_id"]);
}

#[test]
fn unsigned_tampered_untrusted_revoked_and_expired_uploads_are_refused_with_the_reason() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    let hello = std::fs::read(example("hello")).unwrap();

    // Unsigned.
    let reply = upload(&node, "/v1/apps/t/a/versions?version=v1", &hello, &[]);
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().contains("not signed"), "{}", reply.text());

    // Signed for hello, uploaded with other bytes: tampered.
    let sig_file = dir.path().join("hello.sig");
    let hello_path = example("hello");
    node.cli_ok(&[
        "sign",
        "t/a",
        hello_path.to_str().unwrap(),
        "--version",
        "v1",
        "-o",
        sig_file.to_str().unwrap(),
    ]);
    let sig: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sig_file).unwrap()).unwrap();
    let (kid, sig_b64) = (
        sig["key_id"].as_str().unwrap(),
        sig["signature"].as_str().unwrap(),
    );
    let headers = [("x-dwcp-key-id", kid), ("x-dwcp-signature", sig_b64)];
    let echo = std::fs::read(example("echo")).unwrap();
    let reply = upload(&node, "/v1/apps/t/a/versions?version=v1", &echo, &headers);
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(
        reply.text().contains("does not match t/a v1"),
        "{}",
        reply.text()
    );
    // ... or for another version or app.
    for path in [
        "/v1/apps/t/a/versions?version=v2",
        "/v1/apps/t/b/versions?version=v1",
    ] {
        let reply = upload(&node, path, &hello, &headers);
        assert_eq!(reply.status, 403, "{path}: {}", reply.text());
    }
    // The genuine one goes through, and `deploy --signature` takes the file.
    assert_eq!(
        upload(&node, "/v1/apps/t/a/versions?version=v1", &hello, &headers).status,
        201
    );
    let out = node.cli(&[
        "deploy",
        "t/b",
        hello_path.to_str().unwrap(),
        "--signature",
        sig_file.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "a signature for t/a deployed t/b");
    assert!(stderr(&out).contains("signs t/a v1"), "{}", stderr(&out));

    // A key nobody trusted.
    node.cli_ok(&["keys", "gen", "--publisher", "acme"]);
    let acme_key = dir.path().join("keys/acme.key");
    let acme_pub = dir.path().join("keys/acme.pub");
    let acme_id = key_id_of(&acme_pub);
    let out = deploy_with_key(&node, &hello_path, &acme_key);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("key {acme_id} is not trusted")),
        "{}",
        stderr(&out)
    );

    // Trusted, it deploys; the version records who signed it.
    node.cli_ok(&["keys", "trust", acme_pub.to_str().unwrap()]);
    assert_deployed(deploy_with_key(&node, &hello_path, &acme_key));
    let versions = node.cli_ok(&["versions", "t/a", "--json"]);
    assert!(versions.contains(&acme_id), "{versions}");

    // Rotated with a short overlap: both keys deploy, then only the new.
    node.cli_ok(&[
        "keys",
        "rotate",
        "--scope",
        "publisher",
        "--key",
        acme_key.to_str().unwrap(),
        "--overlap",
        // The window opens when the node records the rotation, before the
        // root's SLH-DSA signature (seconds in a test build).
        "20s",
    ]);
    let old_key = dir.path().join("keys/acme.key.prev");
    let new_id = key_id_of(&acme_pub);
    assert_ne!(new_id, acme_id);
    assert_deployed(deploy_with_key(&node, &hello_path, &acme_key));
    assert_deployed(deploy_with_key(&node, &hello_path, &old_key));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let keys: serde_json::Value =
            serde_json::from_str(&node.cli_ok(&["keys", "list", "--json"])).unwrap();
        let old = keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["key_id"] == acme_id.as_str())
            .unwrap()
            .clone();
        if old["status"] == "expired" {
            break;
        }
        assert_eq!(old["status"], "overlap");
        assert!(
            std::time::Instant::now() < deadline,
            "the overlap never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let out = deploy_with_key(&node, &hello_path, &old_key);
    assert!(
        !out.status.success(),
        "the old key deployed after the overlap"
    );
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));

    // Revoked: refused at once.
    node.cli_ok(&["keys", "revoke", &new_id, "--reason", "test"]);
    let out = deploy_with_key(&node, &hello_path, &acme_key);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    let listed = node.cli_ok(&["keys", "list"]);
    assert!(
        listed.contains("revoked (test)") && listed.contains("expired"),
        "{listed}"
    );

    // `dwcp verify` says why a file does not verify.
    node.cli_ok(&[
        "verify",
        hello_path.to_str().unwrap(),
        "--signature",
        sig_file.to_str().unwrap(),
    ]);
    let changed = dir.path().join("changed.wasm");
    let mut bytes = hello.clone();
    bytes.push(0);
    std::fs::write(&changed, &bytes).unwrap();
    let out = node.cli(&[
        "verify",
        changed.to_str().unwrap(),
        "--signature",
        sig_file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the file was changed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn key_files_are_checked_and_names_reserved() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    let out = node.cli(&["keys", "gen", "--publisher", "root"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("reserved"), "{}", stderr(&out));

    node.cli_ok(&["keys", "gen", "--publisher", "acme"]);
    let key = dir.path().join("keys/acme.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !node
            .cli(&["keys", "gen", "--publisher", "acme"])
            .status
            .success(),
        "overwrote a key"
    );

    let text = std::fs::read_to_string(&key).unwrap();
    std::fs::write(
        &key,
        text.replacen("\"secret_key\": \"", "\"secret_key\": \"AAAA", 1),
    )
    .unwrap();
    let hello = example("hello");
    let out = deploy_with_key(&node, &hello, &key);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("acme.key") && stderr(&out).contains("damaged"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&key, "not json").unwrap();
    let out = deploy_with_key(&node, &hello, &key);
    assert!(
        stderr(&out).contains("not a DWCP key file"),
        "{}",
        stderr(&out)
    );
}

/// An HTTPS GET over a real socket with a rustls client offering `groups`;
/// the group negotiated and the response.
fn https_get(
    addr: std::net::SocketAddr,
    ca_pem: &[u8],
    groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
    host: &str,
) -> (Option<rustls::NamedGroup>, String) {
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = rustls::crypto::CryptoProvider {
        kx_groups: groups,
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let socket = std::net::TcpStream::connect(addr).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    write!(
        tls,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    // The server closes without close_notify after `Connection: close`
    // on some paths; what was read is what counts.
    let _ = tls.read_to_end(&mut answer);
    let group = tls.conn.negotiated_key_exchange_group().map(|g| g.name());
    (group, String::from_utf8_lossy(&answer).into_owned())
}

#[test]
fn https_ingress_prefers_x25519mlkem768_and_still_serves_classical_clients() {
    let dir = data_dir();
    let node = TestNode::start_with(dir.path(), &["--tls-self-signed", "--admin-tls"]);
    assert!(
        node.ready_line.contains("http=https://"),
        "{}",
        node.ready_line
    );
    assert!(
        node.ready_line.contains("admin=https://"),
        "{}",
        node.ready_line
    );
    let ca = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
    // The CLI speaks to the admin API over TLS, trusting the node's
    // certificate from the data directory.
    let admin = format!("https://{}", node.admin);
    let hello = example("hello");
    let out = std::process::Command::new(common::dwcp())
        .args([
            "--admin",
            &admin,
            "deploy",
            "demo/hello",
            hello.to_str().unwrap(),
        ])
        .env("DWCP_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    use rustls::crypto::aws_lc_rs::kx_group::{SECP256R1, X25519, X25519MLKEM768};
    let (group, answer) = https_get(
        node.http,
        &ca,
        vec![X25519MLKEM768, X25519],
        "hello.demo.localhost",
    );
    assert_eq!(group, Some(rustls::NamedGroup::X25519MLKEM768));
    assert!(answer.contains("Hello, world!"), "{answer}");
    for classical in [X25519, SECP256R1] {
        let (group, answer) = https_get(node.http, &ca, vec![classical], "hello.demo.localhost");
        assert_eq!(group, Some(classical.name()));
        assert!(answer.contains("Hello, world!"), "{answer}");
    }
    // Plain HTTP on a TLS port gets a TLS alert, not the app.
    use std::io::{Read, Write};
    let mut plain = std::net::TcpStream::connect(node.http).unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: hello.demo.localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("Hello"));
}

/// The ids of the node keys in `dwcp keys list --json`, with their status.
fn node_keys(node: &TestNode) -> Vec<(String, String)> {
    let keys: serde_json::Value =
        serde_json::from_str(&node.cli_ok(&["keys", "list", "--json"])).unwrap();
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["role"] == "node")
        .map(|k| {
            (
                k["key_id"].as_str().unwrap().to_string(),
                k["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_node_key_rotates_on_its_schedule_with_an_overlap() {
    let dir = data_dir();
    // The shared test trust lists the node key of the node that made it,
    // still trusted: the key under test is the one in this node's key file.
    // The period leaves room for one rotation (an SLH-DSA signature) at a time.
    let node = TestNode::start_with(dir.path(), &["--node-key-rotation", "8s"]);
    let key_file = dir.path().join("keys/node.key");
    let own_key = || {
        dwcp_crypto::keyfile::KeyFile::parse(&std::fs::read(&key_file).expect("the node key file"))
            .expect("a valid node key file")
            .key_id()
    };
    let before = own_key();
    let keys = node_keys(&node);
    assert!(
        keys.contains(&(before.clone(), "active".to_string())),
        "the node's key is trusted and active: {before} in {keys:?}"
    );
    // Replaced once the key file holds another key the manifest trusts, and
    // the replaced one is kept beside it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let (after, keys) = loop {
        let now = own_key();
        let keys = node_keys(&node);
        if now != before
            && keys.contains(&(now.clone(), "active".to_string()))
            && dir.path().join("keys/node.key.prev").exists()
        {
            break (now, keys);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no rotation of {before}: {keys:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    // The replaced key is still accepted: in its overlap, not dropped.
    assert!(
        keys.contains(&(before.clone(), "overlap".to_string())),
        "{before} replaced by {after}: {keys:?}"
    );
}

#[test]
fn a_rotated_root_signs_from_then_on_and_clients_pinned_to_the_old_one_follow() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    let hello = example("hello");
    let sig = dir.path().join("hello.sig");
    node.cli_ok(&[
        "sign",
        "t/a",
        hello.to_str().unwrap(),
        "--version",
        "v1",
        "-o",
        sig.to_str().unwrap(),
    ]);
    // A client that pinned the root before the rotation: only its anchor.
    let client = data_dir();
    std::fs::create_dir_all(client.path().join("trust")).unwrap();
    std::fs::copy(
        dir.path().join("trust/root.pub"),
        client.path().join("trust/root.pub"),
    )
    .unwrap();
    let before: serde_json::Value =
        serde_json::from_str(&node.cli_ok(&["keys", "list", "--json"])).unwrap();

    node.cli_ok(&["keys", "rotate", "--scope", "root"]);
    let after: serde_json::Value =
        serde_json::from_str(&node.cli_ok(&["keys", "list", "--json"])).unwrap();
    assert_ne!(before["root_key_id"], after["root_key_id"]);
    assert!(after["serial"].as_u64() > before["serial"].as_u64());
    assert_eq!(after["keys"], before["keys"], "the keys stay as they were");
    assert!(dir.path().join("keys/root.key.prev").exists());

    // The node's own data directory has the new anchor; the old client
    // follows the endorsement; a client pinned to another root does not.
    let verify = |data: &std::path::Path| {
        std::process::Command::new(common::dwcp())
            .args(["--admin", &format!("http://{}", node.admin)])
            .args(["--token", &node.token()])
            .args(["verify", hello.to_str().unwrap(), "--signature"])
            .arg(&sig)
            .env("DWCP_DATA_DIR", data)
            .output()
            .unwrap()
    };
    assert!(verify(dir.path()).status.success());
    let out = verify(client.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("followed the endorsements"),
        "{}",
        stderr(&out)
    );
    let stranger = data_dir();
    std::fs::create_dir_all(stranger.path().join("trust")).unwrap();
    let other = dwcp_crypto::root::RootSigningKey::generate().unwrap();
    use base64::Engine;
    std::fs::write(
        stranger.path().join("trust/root.pub"),
        base64::engine::general_purpose::STANDARD.encode(other.public_key().to_bytes()),
    )
    .unwrap();
    let out = verify(stranger.path());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no chain of root rotations"),
        "{}",
        stderr(&out)
    );

    // Deploys go on, and a restart opens the manifest under the new root.
    node.cli_ok(&["deploy", "t/a", hello.to_str().unwrap()]);
    drop(node);
    let node = TestNode::start(dir.path());
    let again: serde_json::Value =
        serde_json::from_str(&node.cli_ok(&["keys", "list", "--json"])).unwrap();
    assert_eq!(again["root_key_id"], after["root_key_id"]);
    node.cli_ok(&["deploy", "t/a", hello.to_str().unwrap()]);
}
