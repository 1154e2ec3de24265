//! Labelled sentences for training and evaluation, expanded from the
//! phrasing templates with slot values drawn from pools of names, numbers
//! and units, each written the many ways people write them.
//!
//! Names come from two disjoint pools: the training corpus never sees the
//! held-out pool, so the held-out figures measure names the model has not
//! learned, as the platform's own test set does.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::grammar::{self, Piece, Template};
use crate::rng::SplitMix64;
use crate::spec::{SlotType, Spec};
use crate::text::{number_word, tokenize};
use crate::values::ENUM_SYNONYMS;

/// A sentence with its intent, its slots and a label per word.
#[derive(Debug, Clone)]
pub struct Example {
    /// The sentence.
    pub text: String,
    /// Its intent (`none` when out of scope).
    pub intent: String,
    /// Its slots, normalized.
    pub slots: BTreeMap<String, Value>,
    /// For each word of `tokenize(text)`, the slot it belongs to.
    pub labels: Vec<Option<String>>,
}

/// Which pool of names to draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Names the model is trained with.
    Train,
    /// Names kept out of training, for the held-out figures.
    Heldout,
}

const APPS_TRAIN: &[&str] = &[
    "frontend",
    "backend",
    "api",
    "billing",
    "payments",
    "orders",
    "inventory",
    "catalog",
    "profile",
    "login",
    "signup",
    "notifier",
    "mailer",
    "resizer",
    "thumbnails",
    "geo",
    "weather",
    "chat",
    "feed",
    "ranker",
    "recommender",
    "tracker",
    "analytics",
    "reports",
    "invoices",
    "ledger",
    "wallet",
    "shop",
    "store",
    "blog",
    "docs",
    "wiki",
    "portal",
    "dashboard",
    "proxy",
    "router",
    "edge-api",
    "img-proxy",
    "pdf-gen",
    "webhooks",
    "gateway",
    "pricing",
    "quotes",
    "shipping",
    "tax",
    "coupons",
    "reviews",
    "ratings",
    "comments",
    "uploads",
    "media",
    "video",
    "audio",
    "transcoder",
    "ocr",
    "translate",
    "summarizer",
    "scheduler",
    "cron",
    "queue",
    "worker",
    "indexer",
    "crawler",
    "sitemap",
    "seo",
    "cdn-logic",
    "ab-router",
    "greeter",
    "echo",
    "counter",
    "kv",
    "session",
    "tokens",
    "oauth",
    "sso",
    "avatar",
    "fx-rates",
    "bookings",
    "calendar",
    "maps",
    "storefront",
    "landing",
    "promo",
];
const APPS_HELDOUT: &[&str] = &[
    "checkout",
    "cart",
    "search",
    "auth",
    "images",
    "hello",
    "basket",
    "accounts",
    "metrics-api",
    "ingest",
    "lookup",
    "render",
    "pay",
    "notes",
    "todo",
    "poll",
    "survey",
    "stock",
    "quote-svc",
    "loyalty",
    "fraud",
    "risk",
    "kyc",
    "onboard",
    "help-center",
    "status-page",
    "graphql",
    "rest-api",
    "assets",
    "fonts",
];
const TENANTS_TRAIN: &[&str] = &[
    "contoso",
    "northwind",
    "fabrikam",
    "wayne",
    "stark",
    "tyrell",
    "soylent",
    "hooli",
    "piedpiper",
    "vandelay",
    "dunder",
    "cyberdyne",
    "oscorp",
    "wonka",
    "gringotts",
    "monarch",
    "massive",
    "prestige",
    "sterling",
    "virtucon",
    "wernham",
    "zorg",
    "aperture",
    "blackmesa",
    "bluth",
    "krusty",
    "duff",
    "lacroix",
    "nakatomi",
    "weyland",
    "yoyodyne",
    "tessier",
    "rekall",
    "sirius",
    "buynlarge",
    "gekko",
    "ollivander",
    "initrode",
    "paper-st",
    "team-a",
    "blue-sky",
    "north-co",
    "tenant1",
    "tenant-42",
    "dev",
    "staging",
    "prod",
    "ops",
    "marketing",
    "research",
];
const TENANTS_HELDOUT: &[&str] = &[
    "acme", "globex", "initech", "umbrella", "hydra", "omni", "spectre", "veridian", "dharma",
    "ingen", "acmecorp", "bigco", "lumon", "mom-corp", "planet-x", "sales", "finance", "qa",
];
const FLAG_FIRST: &[&str] = &[
    "new", "dark", "fast", "beta", "legacy", "smart", "quick", "async", "express", "compact",
    "bold", "instant", "modern", "simple", "live", "green", "safe", "lazy",
];
const FLAG_SECOND: &[&str] = &[
    "ui", "mode", "path", "search", "banner", "cache", "login", "nav", "editor", "cart", "header",
    "footer", "pricing", "images", "feed", "signup", "menu", "theme",
];
const FLAGS_HELDOUT: &[&str] = &[
    "new-ui",
    "dark-mode",
    "fast-path",
    "one-click",
    "holiday-sale",
    "v2-api",
    "beta-features",
    "free-shipping",
    "gift-cards",
    "rich-text",
];
const EXPERIMENT_FIRST: &[&str] = &[
    "pricing",
    "banner",
    "layout",
    "cta",
    "onboarding",
    "color",
    "headline",
    "hero",
    "copy",
    "discount",
    "trial",
    "upsell",
    "checkout-flow",
    "button",
    "signup-form",
    "menu",
];
const EXPERIMENT_SECOND: &[&str] = &["test", "ab", "exp", "trial", "experiment", "split", "v2"];
const EXPERIMENTS_HELDOUT: &[&str] = &[
    "pricing-test",
    "banner-ab",
    "price-anchor",
    "cart-nudge",
    "font-test",
    "promo-exp",
    "hero-image",
    "search-rank",
];
const NODE_PREFIX: &[&str] = &[
    "edge", "node", "pop", "fra", "lon", "nyc", "sfo", "sin", "syd", "ams", "par", "tok", "host",
];
const NODES_HELDOUT: &[&str] = &[
    "edge-1",
    "edge-2",
    "edge-3",
    "edge-7",
    "node-a",
    "node-b",
    "mad-1",
    "dub-2",
    "osl-3",
    "lax-edge-4",
    "hel-1",
    "waw-2",
];
const KEYS_TRAIN: &[&str] = &[
    "ops-key",
    "release-key",
    "ci-key",
    "deploy-key",
    "team-a-key",
    "pub-2025",
    "pub-2027",
    "build-bot",
    "signer-1",
    "signer-2",
    "alice",
    "bob-key",
    "prod-signer",
    "key-7",
];
const KEYS_HELDOUT: &[&str] = &[
    "pub-2026",
    "ops-key-2",
    "carol",
    "release-2026",
    "acme-pub",
    "sig-9",
    "backup-signer",
];
const SNAPSHOTS_TRAIN: &[&str] = &[
    "nightly",
    "hourly",
    "before-upgrade",
    "pre-deploy",
    "snap-42",
    "backup-3",
    "weekly",
    "golden",
    "monday",
    "pre-migration",
    "checkpoint-7",
    "known-good",
];
const SNAPSHOTS_HELDOUT: &[&str] = &["daily", "last-good", "snap-1", "before-sale", "baseline"];
const TOPICS_TRAIN: &[&str] = &[
    "rollouts",
    "flags",
    "experiments",
    "keys",
    "snapshots",
    "tenants",
    "cache",
    "nodes",
    "deploys",
    "limits",
    "regions",
    "metrics",
    "logs",
    "security",
    "migrations",
    "quotas",
    "canaries",
    "scaling",
    "benchmarks",
    "tokens",
];
const TOPICS_HELDOUT: &[&str] = &[
    "rollbacks",
    "deployments",
    "placement",
    "secrets",
    "routing",
];
const NAMESPACES_TRAIN: &[&str] = &[
    "dwcp",
    "edge",
    "prod",
    "dwcp-system",
    "platform",
    "staging",
    "wasm",
    "apps",
];
const NAMESPACES_HELDOUT: &[&str] = &["dwcp-prod", "runtime", "edge-nodes"];
const REGION_AREA: &[&str] = &["us", "eu", "ap", "sa", "ca", "me", "af", "asia", "europe"];
const REGION_SIDE: &[&str] = &[
    "east",
    "west",
    "north",
    "south",
    "central",
    "northeast",
    "southeast",
    "southwest",
    "northwest",
];
const REGIONS_HELDOUT: &[&str] = &[
    "eu-west",
    "us-east",
    "ap-south",
    "us-east-1",
    "eu-central-1",
    "ap-southeast-2",
    "sa-east",
    "me-central",
];
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ra", "ven", "tor", "zu", "pel", "dro", "nix", "qua", "sol", "ber", "fin",
    "gal", "hex", "jor", "lum", "mox", "nor", "pix", "rin", "sev", "tam", "vex", "wyn", "yar",
];

/// Draws slot values and writes them as people do.
pub struct ValueWriter<'a> {
    spec: &'a Spec,
    pool: Pool,
}

impl<'a> ValueWriter<'a> {
    /// A writer drawing names from `pool`.
    pub fn new(spec: &'a Spec, pool: Pool) -> Self {
        ValueWriter { spec, pool }
    }

    /// A value for slot `slot` of intent `intent`: (as written, normalized).
    pub fn write(&self, intent: &str, slot: &str, rng: &mut SplitMix64) -> (String, Value) {
        let kind = self.spec.slot_kind(slot).cloned().unwrap_or(SlotType::Name);
        match kind {
            SlotType::Name => self.name(slot, rng),
            SlotType::Int => int(slot, rng),
            SlotType::Percent => percent(intent, rng),
            SlotType::SizeMib => size(rng),
            SlotType::DurationS => duration(rng),
            SlotType::CpuMs => cpu(rng),
            SlotType::Region => self.region(rng),
            SlotType::Version => version(rng),
            SlotType::Path => path(slot, rng),
            SlotType::Enum(values) => enumerated(slot, &values, rng),
        }
    }

    fn name(&self, slot: &str, rng: &mut SplitMix64) -> (String, Value) {
        let train = self.pool == Pool::Train;
        let base: String = match slot {
            "app" if train => self.synthetic_or(APPS_TRAIN, rng),
            "app" => rng.pick(APPS_HELDOUT).to_string(),
            "tenant" if train => self.synthetic_or(TENANTS_TRAIN, rng),
            "tenant" => rng.pick(TENANTS_HELDOUT).to_string(),
            "flag" if train => format!("{}-{}", rng.pick(FLAG_FIRST), rng.pick(FLAG_SECOND)),
            "flag" => rng.pick(FLAGS_HELDOUT).to_string(),
            "experiment" if train => format!(
                "{}-{}",
                rng.pick(EXPERIMENT_FIRST),
                rng.pick(EXPERIMENT_SECOND)
            ),
            "experiment" => rng.pick(EXPERIMENTS_HELDOUT).to_string(),
            "node" if train => match rng.below(3) {
                0 => format!("{}-{}", rng.pick(NODE_PREFIX), 1 + rng.below(40)),
                1 => format!(
                    "{}-{}-{}",
                    rng.pick(NODE_PREFIX),
                    rng.pick(&["edge", "a", "b", "x"]),
                    1 + rng.below(9)
                ),
                _ => format!("{}{}", rng.pick(NODE_PREFIX), 1 + rng.below(20)),
            },
            "node" => rng.pick(NODES_HELDOUT).to_string(),
            "key" if train => self.synthetic_or(KEYS_TRAIN, rng),
            "key" => rng.pick(KEYS_HELDOUT).to_string(),
            "snapshot" if train => rng.pick(SNAPSHOTS_TRAIN).to_string(),
            "snapshot" => rng.pick(SNAPSHOTS_HELDOUT).to_string(),
            "topic" if train => rng.pick(TOPICS_TRAIN).to_string(),
            "topic" => rng.pick(TOPICS_HELDOUT).to_string(),
            "namespace" if train => rng.pick(NAMESPACES_TRAIN).to_string(),
            "namespace" => rng.pick(NAMESPACES_HELDOUT).to_string(),
            _ if train => self.synthetic_or(APPS_TRAIN, rng),
            _ => rng.pick(APPS_HELDOUT).to_string(),
        };
        let written = match rng.below(20) {
            0 | 1 if slot != "topic" => capitalized(&base),
            2 => format!("\"{base}\""),
            _ => base.clone(),
        };
        (written, Value::from(base))
    }

    /// A name from `list`, or (in training, one time in four) a made-up one,
    /// so that the tagger learns from context rather than from the names.
    fn synthetic_or(&self, list: &[&str], rng: &mut SplitMix64) -> String {
        if rng.below(4) != 0 {
            return rng.pick(list).to_string();
        }
        let mut name = String::new();
        for _ in 0..2 + rng.below(2) {
            let syllable: &&str = rng.pick(SYLLABLES);
            name.push_str(syllable);
        }
        match rng.below(4) {
            0 => format!("{name}-{}", 1 + rng.below(99)),
            1 => format!("{name}-{}", rng.pick(&["svc", "app", "api", "web"])),
            _ => name,
        }
    }

    fn region(&self, rng: &mut SplitMix64) -> (String, Value) {
        let base = match self.pool {
            Pool::Train => {
                let mut r = format!("{}-{}", rng.pick(REGION_AREA), rng.pick(REGION_SIDE));
                if rng.below(3) == 0 {
                    r.push_str(&format!("-{}", 1 + rng.below(3)));
                }
                r
            }
            Pool::Heldout => rng.pick(REGIONS_HELDOUT).to_string(),
        };
        let written = match rng.below(10) {
            // "EU West 1": short parts in capitals, the others capitalized.
            0 => base
                .split('-')
                .map(|p| {
                    if p.len() <= 2 {
                        p.to_uppercase()
                    } else {
                        capitalized(p)
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
            1 => base.replace('-', " "),
            2 => base.to_uppercase(),
            _ => base.clone(),
        };
        (written, Value::from(base))
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn int(slot: &str, rng: &mut SplitMix64) -> (String, Value) {
    let n = match slot {
        "concurrency" => *rng.pick(&[
            1, 2, 4, 5, 8, 10, 16, 20, 32, 50, 64, 100, 128, 200, 500, 1000,
        ]),
        "instances" => *rng.pick(&[2, 5, 8, 10, 12, 16, 20, 25, 40, 50, 100, 200]),
        "nodes" => 1 + rng.below(12),
        _ => 1 + rng.below(10),
    };
    let written = match number_word(n) {
        Some(w) if rng.below(3) == 0 => w.to_string(),
        _ => n.to_string(),
    };
    (written, Value::from(n))
}

fn percent(intent: &str, rng: &mut SplitMix64) -> (String, Value) {
    // set_traffic_split and set_flag_rollout never carry 0 or 100 (the
    // spec's rules give those to other intents).
    let partial = matches!(intent, "set_traffic_split" | "set_flag_rollout");
    let n = if !partial && rng.below(10) == 0 {
        100
    } else {
        *rng.pick(&[
            1, 2, 5, 10, 15, 20, 25, 30, 33, 40, 50, 60, 70, 75, 80, 90, 95, 99,
        ])
    };
    let written = match n {
        50 if rng.below(4) == 0 => "half".to_string(),
        100 => rng
            .pick(&["100%", "100 percent", "all", "everyone"])
            .to_string(),
        _ => match (rng.below(4), number_word(n)) {
            (0, Some(w)) => format!("{w} percent"),
            (1, _) => format!("{n} percent"),
            _ => format!("{n}%"),
        },
    };
    (written, Value::from(n))
}

fn size(rng: &mut SplitMix64) -> (String, Value) {
    let mib = *rng.pick(&[
        32, 64, 100, 128, 200, 256, 300, 384, 512, 768, 1024, 2048, 3072, 4096, 8192, 16384,
    ]);
    let written = if mib % 1024 == 0 {
        let g = mib / 1024;
        match rng.below(6) {
            0 => format!("{g}GB"),
            1 => format!("{g} GB"),
            2 => format!("{g}GiB"),
            3 => format!("{g} GiB"),
            4 => format!("{g}g"),
            _ => format!("{g} gigabytes"),
        }
    } else {
        match rng.below(5) {
            0 => format!("{mib}MB"),
            1 => format!("{mib} MB"),
            2 => format!("{mib}MiB"),
            3 => format!("{mib} MiB"),
            _ => format!("{mib} megabytes"),
        }
    };
    (written, Value::from(mib))
}

fn duration(rng: &mut SplitMix64) -> (String, Value) {
    let (secs, written): (u64, String) = match rng.below(4) {
        0 => {
            let s = *rng.pick(&[5, 10, 15, 20, 30, 45, 90]);
            let w = match rng.below(4) {
                0 => format!("{s}s"),
                1 => format!("{s} secs"),
                _ => format!("{s} seconds"),
            };
            (s, w)
        }
        1 => {
            let m = *rng.pick(&[1, 2, 3, 5, 10, 15, 20, 30, 45]);
            let w = match (rng.below(5), m) {
                (0, 1) => "a minute".to_string(),
                (1, _) => format!("{m}m"),
                (2, _) => format!("{m} min"),
                (3, _) if m <= 20 => format!("{} minutes", number_word(m).unwrap_or("one")),
                _ => format!("{m} minutes"),
            };
            (m * 60, w)
        }
        2 => {
            let h = *rng.pick(&[1, 2, 3, 6, 12, 24]);
            let w = match (rng.below(4), h) {
                (0, 1) => "an hour".to_string(),
                (1, _) => format!("{h}h"),
                (2, 1) => "one hour".to_string(),
                _ => format!("{h} hours"),
            };
            (h * 3600, w)
        }
        _ => {
            let d = *rng.pick(&[1, 2, 7]);
            let w = match (rng.below(2), d) {
                (0, 1) => "a day".to_string(),
                _ => format!("{d} days"),
            };
            (d * 86_400, w)
        }
    };
    (written, Value::from(secs))
}

fn cpu(rng: &mut SplitMix64) -> (String, Value) {
    let ms = *rng.pick(&[
        5, 10, 20, 25, 50, 100, 150, 200, 250, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000,
    ]);
    let written = if ms % 1000 == 0 && rng.below(2) == 0 {
        let s = ms / 1000;
        match rng.below(3) {
            0 => format!("{s}s"),
            1 if s == 1 => "one second".to_string(),
            _ => format!("{s} seconds"),
        }
    } else if ms == 500 && rng.below(3) == 0 {
        "half a second".to_string()
    } else if ms == 1500 && rng.below(2) == 0 {
        "1.5s".to_string()
    } else {
        match rng.below(3) {
            0 => format!("{ms}ms"),
            1 => format!("{ms} ms"),
            _ => format!("{ms} milliseconds"),
        }
    };
    (written, Value::from(ms))
}

fn version(rng: &mut SplitMix64) -> (String, Value) {
    let v = match rng.below(4) {
        0 | 1 => format!("v{}", 1 + rng.below(15)),
        2 => format!("{}.{}.{}", rng.below(4), rng.below(12), rng.below(20)),
        _ => match rng.below(3) {
            0 => format!("v{}.{}", 1 + rng.below(4), rng.below(10)),
            1 => format!(
                "{}.{}.0-rc{}",
                1 + rng.below(3),
                rng.below(9),
                1 + rng.below(3)
            ),
            _ => format!("v{}.{}.{}", rng.below(4), rng.below(12), rng.below(20)),
        },
    };
    let written = if rng.below(15) == 0 {
        v.to_uppercase()
    } else {
        v.clone()
    };
    (written, Value::from(v))
}

fn path(slot: &str, rng: &mut SplitMix64) -> (String, Value) {
    let p = if slot == "path" {
        match rng.below(6) {
            0 => "/".to_string(),
            1 => format!(
                "/static/{}.{}",
                rng.pick(&["logo", "app", "main", "hero"]),
                rng.pick(&["png", "js", "css", "svg"])
            ),
            2 => format!(
                "/api/v{}/{}",
                1 + rng.below(3),
                rng.pick(&["users", "items", "prices", "search"])
            ),
            3 => format!("/{}.html", rng.pick(&["index", "about", "pricing"])),
            4 => format!(
                "/assets/{}/{}.jpg",
                rng.pick(&["img", "photos"]),
                rng.pick(&["a", "banner", "cover"])
            ),
            _ => format!(
                "/{}",
                rng.pick(&["products", "blog/latest", "docs/intro", "feed.xml"])
            ),
        }
    } else {
        let name = rng.pick(&[
            "hello",
            "app",
            "cart",
            "service",
            "handler",
            "main",
            "edge",
            "api",
            "my_app",
            "component",
            "Shop",
            "worker",
        ]);
        let dir = rng.pick(&[
            "./",
            "",
            "build/",
            "./build/",
            "target/wasm32-wasip2/release/",
            "/tmp/",
            "~/apps/",
            "dist/",
            "out/",
            "../artifacts/",
        ]);
        format!("{dir}{name}.wasm")
    };
    (p.clone(), Value::from(p))
}

fn enumerated(slot: &str, values: &[String], rng: &mut SplitMix64) -> (String, Value) {
    let value = rng.pick(values).clone();
    let forms: Vec<&str> = ENUM_SYNONYMS
        .iter()
        .filter(|(s, v, _)| *s == slot && *v == value)
        .flat_map(|(_, _, forms)| forms.iter().copied())
        .collect();
    let written = if forms.is_empty() {
        value.replace('_', " ")
    } else {
        let form = rng.pick(&forms).to_string();
        match (slot, rng.below(4)) {
            ("provider", 0..=1) => match form.as_str() {
                "aws" | "gcp" => form.to_uppercase(),
                f => f.split(' ').map(capitalized).collect::<Vec<_>>().join(" "),
            },
            _ => form,
        }
    };
    (written, Value::from(value))
}

/// Expands `templates` into about `per_intent` sentences per intent,
/// spread evenly over each intent's templates.
pub fn generate(
    spec: &Spec,
    templates: &[Template],
    pool: Pool,
    per_intent: usize,
    seed: u64,
) -> Vec<Example> {
    let mut rng = SplitMix64::new(seed);
    let writer = ValueWriter::new(spec, pool);
    let mut by_intent: BTreeMap<&str, Vec<&Template>> = BTreeMap::new();
    for t in templates {
        by_intent.entry(t.intent.as_str()).or_default().push(t);
    }
    let mut out = Vec::new();
    for (intent, list) in by_intent {
        let per_template = per_intent.div_ceil(list.len()).max(1);
        for template in list {
            for _ in 0..per_template {
                let pieces = grammar::expand(&template.parts, &mut rng);
                out.push(render(intent, &pieces, &writer, &mut rng));
            }
        }
    }
    out
}

/// Writes one expansion out: fills its slots and labels its words.
fn render(intent: &str, pieces: &[Piece], writer: &ValueWriter, rng: &mut SplitMix64) -> Example {
    let mut text = String::new();
    let mut spans: Vec<(usize, usize, String)> = Vec::new();
    let mut slots = BTreeMap::new();
    let push = |text: &mut String, piece: &str| {
        // Optional parts left out leave double spaces; keep one.
        let piece = if text.is_empty() || text.ends_with(' ') {
            piece.trim_start()
        } else {
            piece
        };
        text.push_str(piece);
    };
    for piece in pieces {
        match piece {
            Piece::Text(t) => push(&mut text, t),
            Piece::Slot(name) => {
                let (written, value) = writer.write(intent, name, rng);
                if !text.is_empty() && !text.ends_with(' ') && !text.ends_with(['"', '(', '/']) {
                    text.push(' ');
                }
                let start = text.len();
                text.push_str(&written);
                spans.push((start, text.len(), name.clone()));
                slots.entry(name.clone()).or_insert(value);
            }
        }
    }
    let trimmed_end = text.trim_end().len();
    text.truncate(trimmed_end);
    if rng.below(2) == 0 {
        text = capitalized(&text);
    }
    if rng.below(4) == 0 && !text.ends_with(['?', '.', '!']) {
        text.push('.');
    }
    let labels = tokenize(&text)
        .iter()
        .map(|t| {
            spans
                .iter()
                .find(|(s, e, _)| t.start >= *s && t.start < *e)
                .map(|(_, _, name)| name.clone())
        })
        .collect();
    Example {
        text,
        intent: intent.to_string(),
        slots,
        labels,
    }
}

/// Reads a JSON-lines file of `{"text", "intent", "slots"}` (the shared
/// development set's format).
pub fn read_jsonl(text: &str) -> Result<Vec<Example>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Line {
        text: String,
        intent: String,
        #[serde(default)]
        slots: BTreeMap<String, Value>,
    }
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let l: Line = serde_json::from_str(line)?;
        out.push(Example {
            text: l.text,
            intent: l.intent,
            slots: l.slots,
            labels: Vec::new(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::parse_file;
    use crate::values::normalize;

    /// Every value the writer produces reads back, through the normalizers
    /// the engine uses, as the value it meant.
    #[test]
    fn written_values_normalize_back_to_themselves() {
        let spec = Spec::builtin();
        let mut rng = SplitMix64::new(1);
        for pool in [Pool::Train, Pool::Heldout] {
            let writer = ValueWriter::new(spec, pool);
            for intent in &spec.intents {
                for slot in &intent.slots {
                    for _ in 0..200 {
                        let (written, value) = writer.write(&intent.name, &slot.name, &mut rng);
                        let tokens = tokenize(&written);
                        let words: Vec<&str> = tokens.iter().map(|t| t.lower.as_str()).collect();
                        let raw = match (tokens.first(), tokens.last()) {
                            (Some(a), Some(b)) => &written[a.start..b.end],
                            _ => "",
                        };
                        let got = normalize(&slot.name, &slot.kind, &words, raw);
                        assert_eq!(got.as_ref(), Some(&value), "{}: {written:?}", slot.name);
                    }
                }
            }
        }
    }

    #[test]
    fn labels_mark_the_words_a_placeholder_filled() {
        let spec = Spec::builtin();
        let templates = parse_file("@delete_app\ndelete {tenant}'s {app} app\n").unwrap();
        let examples = generate(spec, &templates, Pool::Heldout, 20, 3);
        for e in examples {
            let tokens = tokenize(&e.text);
            assert_eq!(tokens.len(), e.labels.len());
            assert_eq!(e.labels[0], None);
            assert_eq!(e.labels[1].as_deref(), Some("tenant"), "{}", e.text);
            assert_eq!(e.labels[2], None, "{}", e.text);
            assert_eq!(e.labels[3].as_deref(), Some("app"), "{}", e.text);
        }
    }
}
