//! Every target, for every provider and for many generated slot values,
//! passes the official checkers, hcl-rs's parser and the provider schema
//! subsets; bad inputs are refused with what is allowed.

mod checkers;

use std::path::{Path, PathBuf};

use checkers::Checkers;
use dwcp_gen::{GenSpec, GeneratedFile, MAX_NODES, Provider, Target, Workload, generate, schema};
use serde::Deserialize;

/// A CA certificate's shape (the generators copy it; nothing parses it).
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBszCCAVmgAwIBAgIUDwcpAbCdEfGhIjKlMnOpQrStUvWwDQYJKoZIhvcNAQEL\n\
BQAwEjEQMA4GA1UEAwwHZHdjcC1jYTAeFw0yNTAxMDEwMDAwMDBaFw0zNTAxMDEw\n\
-----END CERTIFICATE-----\n";

/// Files of one generation, written under `dir`.
struct Written {
    dir: PathBuf,
    target: Target,
}

/// Generates `target` for `spec`, checks what Rust can check, and writes
/// the files under `root/name` for the external checkers.
fn generate_into(root: &Path, name: &str, target: Target, spec: &GenSpec) -> Written {
    let files = generate(target, spec)
        .unwrap_or_else(|e| panic!("{name}: {target} for {spec:?} failed: {e}"));
    check_in_rust(target, spec, &files, name);
    let dir = root.join(name);
    for file in &files {
        assert!(file.path.is_relative(), "{}", file.path.display());
        let path = dir.join(&file.path);
        std::fs::create_dir_all(path.parent().expect("a file has a parent")).expect("mkdir");
        std::fs::write(&path, &file.contents).expect("write");
    }
    Written { dir, target }
}

/// The checks that need no Python: hcl-rs re-parses Terraform and the
/// schema subset holds; YAML parses, with the expected objects.
fn check_in_rust(target: Target, spec: &GenSpec, files: &[GeneratedFile], name: &str) {
    match target {
        Target::Terraform => {
            for file in files {
                hcl::parse(&file.contents).unwrap_or_else(|e| {
                    panic!(
                        "{name}/{}: hcl-rs cannot parse: {e}\n{}",
                        file.path.display(),
                        file.contents
                    )
                });
            }
            if let Err(problems) = schema::check(spec.provider, files) {
                panic!("{name}: schema check: {problems:#?}");
            }
        }
        Target::K8s => {
            let kinds: Vec<String> = yaml_serde::Deserializer::from_str(&files[0].contents)
                .map(|doc| {
                    let value = yaml_serde::Value::deserialize(doc)
                        .unwrap_or_else(|e| panic!("{name}: YAML: {e}"));
                    value["kind"].as_str().unwrap_or_default().to_owned()
                })
                .collect();
            let workload = match spec.workload {
                Workload::StatefulSet => "StatefulSet",
                Workload::DaemonSet => "DaemonSet",
            };
            assert_eq!(
                kinds,
                [
                    "Namespace",
                    "ConfigMap",
                    "Service",
                    "Service",
                    "Service",
                    workload,
                    "PodDisruptionBudget"
                ],
                "{name}"
            );
        }
        Target::Ansible => {
            for file in files
                .iter()
                .filter(|f| f.path.extension().is_some_and(|e| e == "yml"))
            {
                let value: yaml_serde::Value = yaml_serde::from_str(&file.contents)
                    .unwrap_or_else(|e| panic!("{name}/{}: {e}", file.path.display()));
                assert!(!value.is_null(), "{name}/{}", file.path.display());
            }
        }
    }
}

/// Runs the external checkers over everything written.
fn check_externally(written: &[Written], scratch: &Path) {
    let checkers = Checkers::find();
    let mut k8s = Vec::new();
    let mut tf = Vec::new();
    let mut ansible = Vec::new();
    for w in written {
        match w.target {
            Target::K8s => k8s.push(w.dir.join("dwcp.yaml")),
            Target::Terraform => {
                for name in ["versions.tf", "variables.tf", "main.tf", "outputs.tf"] {
                    tf.push(w.dir.join(name));
                }
            }
            Target::Ansible => ansible.push(w.dir.clone()),
        }
    }
    checkers.kubernetes(&k8s);
    checkers.terraform(&tf);
    checkers.ansible(&ansible, scratch);
}

fn full_spec() -> GenSpec {
    GenSpec {
        nodes: 5,
        region: Some("eu-west".to_owned()),
        namespace: "edge".to_owned(),
        nats_url: Some("tls://nats.example.net:4222".to_owned()),
        cluster_ca_pem: Some(CA_PEM.to_owned()),
        binary_url: Some("https://downloads.example.net/dwcp/v0.1.0/dwcp?x=1&y=%20$z".to_owned()),
        binary_sha256: Some("a".repeat(64)),
        image: "registry.example.net/dwcp:0.1.0".to_owned(),
        hosts: (1..=5).map(|i| format!("10.0.0.{i}")).collect(),
        tls_self_signed: true,
        metrics_public: true,
        ..GenSpec::default()
    }
}

#[test]
fn every_target_and_provider_validates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut written = Vec::new();
    for (label, spec) in [("default", GenSpec::default()), ("full", full_spec())] {
        for provider in Provider::ALL {
            let spec = GenSpec {
                provider,
                ..spec.clone()
            };
            written.push(generate_into(
                tmp.path(),
                &format!("{label}-tf-{provider}"),
                Target::Terraform,
                &spec,
            ));
        }
        for workload in [Workload::StatefulSet, Workload::DaemonSet] {
            let spec = GenSpec {
                workload,
                ..spec.clone()
            };
            written.push(generate_into(
                tmp.path(),
                &format!("{label}-k8s-{}", workload.name()),
                Target::K8s,
                &spec,
            ));
        }
        written.push(generate_into(
            tmp.path(),
            &format!("{label}-ansible"),
            Target::Ansible,
            &spec,
        ));
    }
    check_externally(&written, tmp.path());
}

/// SplitMix64: a seeded, dependency-free source of test values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A DNS label of `1..=max` characters, edge cases included: all
    /// digits, hyphens inside, single characters, the longest allowed.
    fn label(&mut self, max: usize) -> String {
        let len = match self.below(4) {
            0 => 1,
            1 => max,
            _ => 1 + self.below(max as u64) as usize,
        };
        let edge = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let inner = b"abcdefghijklmnopqrstuvwxyz0123456789-";
        (0..len)
            .map(|i| {
                let set: &[u8] = if i == 0 || i == len - 1 { edge } else { inner };
                char::from(set[self.below(set.len() as u64) as usize])
            })
            .collect()
    }
}

#[test]
fn generated_slot_values_validate() {
    let seed = std::env::var("DWCP_GEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_d3c9);
    eprintln!("seed {seed} (set DWCP_GEN_SEED to replay)");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut written = Vec::new();
    for case in 0..48 {
        let nodes = match rng.below(4) {
            0 => 1,
            1 => MAX_NODES,
            _ => 1 + rng.below(u64::from(MAX_NODES)) as u32,
        };
        let nats_url = rng.chance(50).then(|| {
            let scheme = if rng.chance(50) { "tls" } else { "nats" };
            let host = match rng.below(3) {
                0 => format!("{}.{}", rng.label(20), rng.label(10)),
                1 => format!(
                    "10.{}.{}.{}",
                    rng.below(256),
                    rng.below(256),
                    rng.below(256)
                ),
                _ => "[fd00::4222]".to_owned(),
            };
            format!("{scheme}://{host}:{}", 1 + rng.below(65535))
        });
        let spec = GenSpec {
            nodes,
            region: rng.chance(80).then(|| rng.label(dwcp_gen::MAX_REGION_LEN)),
            namespace: rng.label(63),
            provider: Provider::ALL[rng.below(5) as usize],
            cluster_ca_pem: (nats_url.is_some() && rng.chance(30)).then(|| CA_PEM.to_owned()),
            nats_url,
            binary_url: rng
                .chance(50)
                .then(|| format!("https://{}.example/{}", rng.label(30), rng.label(40))),
            workload: if rng.chance(50) {
                Workload::StatefulSet
            } else {
                Workload::DaemonSet
            },
            http_port: 1024 + rng.below(30_000) as u16,
            admin_port: 40_000 + rng.below(20_000) as u16,
            tls_self_signed: rng.chance(50),
            metrics_public: rng.chance(50),
            ..GenSpec::default()
        };
        for target in Target::ALL {
            written.push(generate_into(
                tmp.path(),
                &format!("case{case}-{target}"),
                target,
                &spec,
            ));
        }
    }
    check_externally(&written, tmp.path());
}

#[test]
fn bad_inputs_are_refused_with_what_is_allowed() {
    type Change = fn(&mut GenSpec);
    let cases: &[(&str, Change, &str)] = &[
        ("nodes", |s| s.nodes = 0, "from 1 to 1000"),
        ("nodes", |s| s.nodes = 1001, "from 1 to 1000"),
        ("region", |s| s.region = Some("EU West".into()), "DNS label"),
        ("region", |s| s.region = Some("-eu".into()), "DNS label"),
        ("region", |s| s.region = Some("a".repeat(33)), "1 to 32"),
        ("region", |s| s.region = Some(String::new()), "DNS label"),
        (
            "namespace",
            |s| s.namespace = "kube_system".into(),
            "DNS label",
        ),
        ("namespace", |s| s.namespace = "a".repeat(64), "1 to 63"),
        (
            "nats-url",
            |s| s.nats_url = Some("http://nats:4222".into()),
            "tls://HOST:PORT",
        ),
        (
            "nats-url",
            |s| s.nats_url = Some("tls://nats".into()),
            "tls://HOST:PORT",
        ),
        (
            "nats-url",
            |s| s.nats_url = Some("tls://na ts:4222".into()),
            "tls://HOST:PORT",
        ),
        (
            "nats-url",
            |s| s.nats_url = Some("tls://$(reboot):4222".into()),
            "tls://HOST:PORT",
        ),
        (
            "binary-url",
            |s| s.binary_url = Some("ftp://x/dwcp".into()),
            "https://",
        ),
        (
            "binary-url",
            |s| s.binary_url = Some("https://x/{{ lookup('pipe','id') }}".into()),
            "braces",
        ),
        (
            "binary-url",
            |s| s.binary_url = Some("https://x/a b".into()),
            "no spaces",
        ),
        (
            "binary-url",
            |s| s.binary_url = Some("https://".into()),
            "http://",
        ),
        (
            "binary-sha256",
            |s| s.binary_sha256 = Some("abc".into()),
            "64 hexadecimal",
        ),
        (
            "image",
            |s| s.image = "dwcp:1 ; rm".into(),
            "image reference",
        ),
        ("cpu", |s| s.cpu = "two".into(), "Kubernetes quantity"),
        ("memory", |s| s.memory = "2GB".into(), "Kubernetes quantity"),
        ("storage", |s| s.storage = "0".into(), "Kubernetes quantity"),
        (
            "hosts",
            |s| s.hosts = vec!["a".into()],
            "as many hosts as nodes",
        ),
        (
            "hosts",
            |s| s.hosts = vec!["a".into(), "b c".into(), "d".into()],
            "host names",
        ),
        (
            "hosts",
            |s| s.hosts = vec!["a".into(), "b".into(), "a".into()],
            "each host once",
        ),
        (
            "admin-port",
            |s| s.admin_port = s.http_port,
            "other than the http port",
        ),
        ("http-port", |s| s.http_port = 0, "1 to 65535"),
        (
            "cluster-ca",
            |s| s.cluster_ca_pem = Some(CA_PEM.into()),
            "--nats-url",
        ),
        (
            "cluster-ca",
            |s| {
                s.nats_url = Some("tls://n:1".into());
                s.cluster_ca_pem = Some(
                    "-----BEGIN CERTIFICATE-----\n{{ x }}\n-----END CERTIFICATE-----\n".into(),
                );
            },
            "PEM certificates",
        ),
    ];
    for (field, change, allowed) in cases {
        let mut spec = GenSpec::default();
        change(&mut spec);
        for target in Target::ALL {
            let err = generate(target, &spec).expect_err(&format!("{field}: {spec:?} accepted"));
            let dwcp_gen::Error::Spec(err) = err else {
                panic!("{field}: not a spec error: {err}");
            };
            assert_eq!(err.field, *field, "{err}");
            assert!(
                err.to_string().contains(allowed),
                "{field}: `{err}` lacks `{allowed}`"
            );
        }
    }
    assert!(
        "ovh"
            .parse::<Provider>()
            .unwrap_err()
            .to_string()
            .contains("aws, gcp, azure")
    );
    assert!(
        "pod"
            .parse::<Workload>()
            .unwrap_err()
            .to_string()
            .contains("statefulset or daemonset")
    );
    assert!(
        "helm"
            .parse::<Target>()
            .unwrap_err()
            .to_string()
            .contains("terraform, k8s or ansible")
    );
}

#[test]
fn schema_check_refuses_what_is_outside_the_subset() {
    let file = |text: &str| GeneratedFile {
        path: "main.tf".into(),
        contents: text.to_owned(),
    };
    let cases = [
        (
            "resource \"aws_lambda_function\" \"f\" {}\n",
            "aws_lambda_function is not in",
        ),
        (
            "resource \"aws_instance\" \"n\" {\n  ami = \"x\"\n  userdata = \"y\"\n}\n",
            "aws_instance.userdata",
        ),
        (
            "resource \"aws_instance\" \"n\" {\n  ebs_block_device {}\n}\n",
            "block aws_instance.ebs_block_device",
        ),
        (
            "resource \"aws_instance\" \"n\" {\n  ami = var.nope\n}\n",
            "undeclared var.nope",
        ),
        (
            "resource \"aws_instance\" \"n\" {\n  ami = aws_instance.other.id\n}\n",
            "undeclared aws_instance.other",
        ),
        (
            "resource \"aws_instance\" \"n\" {\n  ami = fromjson(\"x\")\n}\n",
            "unknown function fromjson",
        ),
        ("provider \"google\" {}\n", "unexpected block provider"),
        ("module \"m\" {}\n", "unexpected block module"),
        (
            "terraform {\n  required_providers {\n    aws = { source = \"evil/aws\", version = \"1\" }\n  }\n}\n",
            "required provider aws",
        ),
        ("resource \"aws_instance\" \"n\" {\n", "does not parse"),
    ];
    for (text, problem) in cases {
        let problems = schema::check(Provider::Aws, &[file(text)]).expect_err(text);
        assert!(
            problems.iter().any(|p| p.contains(problem)),
            "{text}: {problems:?} lacks {problem}"
        );
    }
    let ok = "variable \"v\" {\n  type = string\n}\nresource \"aws_instance\" \"n\" {\n  count = 2\n  ami = var.v\n  lifecycle {\n    create_before_destroy = true\n  }\n}\n";
    assert_eq!(schema::check(Provider::Aws, &[file(ok)]), Ok(()));
}

#[test]
fn the_node_is_started_as_the_contract_says() {
    let spec = full_spec();
    let k8s = &generate(Target::K8s, &spec).expect("k8s")[0].contents;
    for needle in [
        "- up\n",
        "- --cluster\n        - $(DWCP_CLUSTER)\n",
        "- --cluster-ca\n        - /etc/dwcp/cluster-ca.pem\n",
        "- --node-id\n        - $(DWCP_NODE_ID)\n",
        "- --region\n        - eu-west\n",
        "- --tls-self-signed\n",
        "- --metrics-public\n",
        "path: /healthz",
        "path: /readyz",
        "DWCP_CLUSTER: tls://nats.example.net:4222",
        "maxUnavailable: 1",
        "image: registry.example.net/dwcp:0.1.0",
        "replicas: 5",
        "namespace: edge",
    ] {
        assert!(k8s.contains(needle), "k8s lacks {needle:?}:\n{k8s}");
    }

    let ansible = generate(Target::Ansible, &spec).expect("ansible");
    let unit = &ansible
        .iter()
        .find(|f| f.path.ends_with("dwcp.service"))
        .expect("unit")
        .contents;
    assert!(unit.contains(
        "ExecStart=/usr/local/bin/dwcp up --http 0.0.0.0:8080 --tls-self-signed --metrics-public \
         --cluster tls://nats.example.net:4222 --cluster-ca /etc/dwcp/cluster-ca.pem --region eu-west\n"
    ), "{unit}");
    let env = &ansible
        .iter()
        .find(|f| f.path.ends_with("dwcp.env"))
        .expect("env")
        .contents;
    assert!(
        env.contains("DWCP_ADMIN=0.0.0.0:8081\nDWCP_DATA_DIR=/var/lib/dwcp\n"),
        "{env}"
    );
    let playbook = &ansible
        .iter()
        .find(|f| f.path.ends_with("playbook.yml"))
        .expect("playbook")
        .contents;
    assert!(
        playbook.contains("/healthz") && playbook.contains("/readyz"),
        "{playbook}"
    );

    // Without a cluster: no cluster flags, no region unless given.
    let plain = generate(Target::Ansible, &GenSpec::default()).expect("ansible");
    let unit = &plain
        .iter()
        .find(|f| f.path.ends_with("dwcp.service"))
        .expect("unit")
        .contents;
    assert!(
        unit.contains("ExecStart=/usr/local/bin/dwcp up --http 0.0.0.0:8080\n"),
        "{unit}"
    );

    // Terraform: the URL is a variable whose default is the one given, and
    // cloud-init passes it as an argument, never inside the script.
    for provider in Provider::ALL {
        let files = generate(
            Target::Terraform,
            &GenSpec {
                provider,
                ..spec.clone()
            },
        )
        .expect("tf");
        let main = &files
            .iter()
            .find(|f| f.path.ends_with("main.tf"))
            .expect("main")
            .contents;
        assert!(
            main.contains("\"dwcp-install\", var.dwcp_binary_url]"),
            "{provider}: {main}"
        );
        assert!(main.contains("sha256sum -c -"), "{provider}");
        let variables = &files
            .iter()
            .find(|f| f.path.ends_with("variables.tf"))
            .expect("vars")
            .contents;
        assert!(variables.contains("default = 5"), "{provider}: {variables}");
        // `$` and `%` in the URL are data: they reach the file as given.
        assert!(variables.contains("%20$z"), "{provider}: {variables}");
    }
    let bare = generate(Target::Terraform, &GenSpec::default()).expect("tf");
    let variables = &bare
        .iter()
        .find(|f| f.path.ends_with("variables.tf"))
        .expect("vars")
        .contents;
    let binary = variables
        .split("variable \"dwcp_binary_url\"")
        .nth(1)
        .expect("binary variable");
    let binary = binary.split("\nvariable ").next().expect("one block");
    assert!(
        !binary.contains("default"),
        "no URL given, so none is made up:\n{binary}"
    );
}
