//! `cargo xtask ask-model`: trains the `dwcp ask` model from the committed
//! templates, writes `crates/dwcp-ask/model/ask.model`, and reports its
//! accuracy on the held-out templates and names and on the shared
//! development set.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use dwcp_ask::corpus::{self, Pool};
use dwcp_ask::eval::{Report, evaluate};
use dwcp_ask::train::{self, Settings};
use dwcp_ask::{Engine, Spec};

/// Trains, writes and reports.
pub fn model(root: &Path) -> anyhow::Result<()> {
    let crate_dir = root.join("crates/dwcp-ask");
    let spec = Spec::builtin();
    let read = |name: &str| {
        std::fs::read_to_string(crate_dir.join("data").join(name))
            .with_context(|| format!("reading data/{name}"))
    };
    let mut train_templates = train::templates(spec, &read("train.txt")?)?;
    train_templates.extend(train::templates(spec, &read("extra.txt")?)?);
    let valid_templates = train::templates(spec, &read("valid.txt")?)?;
    let test_templates = train::templates(spec, &read("test.txt")?)?;
    let mut settings = Settings::default();
    // Experiments: DWCP_ASK_SET="none=1200,threshold=0.3,epochs=8".
    if let Ok(set) = std::env::var("DWCP_ASK_SET") {
        for kv in set.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').context("DWCP_ASK_SET: k=v,…")?;
            match k {
                "none" => settings.none = v.parse()?,
                "per" => settings.per_intent = v.parse()?,
                "threshold" => settings.none_threshold = v.parse()?,
                "epochs" => settings.classifier_epochs = v.parse()?,
                "tepochs" => settings.tagger_epochs = v.parse()?,
                "epsilon" => settings.epsilon = v.parse()?,
                _ => anyhow::bail!("DWCP_ASK_SET: unknown {k}"),
            }
        }
    }
    // Sentences to measure with: the templates' own intents, names from
    // the pool training never draws from.
    let sentences = |templates: &[dwcp_ask::grammar::Template], seed: u64| {
        train::corpus(
            spec,
            templates,
            Pool::Heldout,
            &Settings {
                per_intent: 40,
                none: 300,
                seed,
                ..settings
            },
        )
    };

    // Tuning view: trained without the validation templates.
    let tuning = Engine::new(
        spec.clone(),
        train::train(spec, &train_templates, &settings),
    );
    show(
        "validation (tuned on; model without it)",
        &evaluate(
            &tuning,
            &sentences(&valid_templates, settings.seed ^ 0x5EED),
        ),
    );

    let mut all = train_templates;
    all.extend(valid_templates);
    let started = Instant::now();
    let model = train::train(spec, &all, &settings);
    eprintln!(
        "trained in {:.1} s: {} classifier features, {} tagger features",
        started.elapsed().as_secs_f64(),
        model.classifier.keys.len(),
        model.tagger.keys.len()
    );
    let bytes = model.to_bytes();
    let path = crate_dir.join("model/ask.model");
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {} ({} KiB)", path.display(), bytes.len() / 1024);

    let engine = Engine::new(spec.clone(), model);
    show(
        "test (never trained or tuned on)",
        &evaluate(&engine, &sentences(&test_templates, settings.seed ^ 0x7E57)),
    );
    let dev = root.join("../shared/intents/dev.jsonl");
    match std::fs::read_to_string(&dev) {
        Ok(text) => {
            let examples = corpus::read_jsonl(&text)?;
            show("shared development set", &evaluate(&engine, &examples));
            latency(&engine, &examples);
        }
        Err(_) => eprintln!("no development set at {}: skipped", dev.display()),
    }
    Ok(())
}

fn show(name: &str, r: &Report) {
    eprintln!(
        "{name}: {} sentences ({} out of scope): intent {:.1}%, full frame {:.1}%, out-of-scope recall {:.1}%, in-scope answered none {}",
        r.total,
        r.out_of_scope,
        100.0 * r.intent_accuracy(),
        100.0 * r.frame_accuracy(),
        100.0 * r.none_recall(),
        r.false_none
    );
    let verbose = std::env::var_os("DWCP_ASK_ERRORS").is_some();
    for (text, want, got) in r.errors.iter().take(if verbose { usize::MAX } else { 12 }) {
        eprintln!("  {text}\n    want {want}\n    got  {got}");
    }
}

fn latency(engine: &Engine, examples: &[corpus::Example]) {
    let mut times: Vec<f64> = Vec::new();
    for _ in 0..5 {
        for e in examples {
            let t = Instant::now();
            std::hint::black_box(engine.parse(&e.text));
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    eprintln!(
        "latency per sentence (in process, {} parses): p50 {:.0} µs, p99 {:.0} µs",
        times.len(),
        at(0.5),
        at(0.99)
    );
}
