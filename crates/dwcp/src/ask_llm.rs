//! `dwcp ask --llm URL`: a second opinion from an OpenAI-compatible chat
//! endpoint (llama.cpp's server, Ollama), asked only when the offline engine
//! is unsure. Its answer is held to the same spec as the engine's: an
//! unknown intent or slot, or a value that does not normalize, is refused,
//! and nothing runs on its word alone that the spec would not allow.

use std::time::Duration;

use anyhow::{Context, bail};
use dwcp_ask::{Engine, NONE, Parse};
use serde_json::{Map, Value, json};

/// Asks the endpoint at `url` what `text` means; `Ok(None)` when it does not
/// know either.
pub fn consult(
    url: &str,
    model: &str,
    engine: &Engine,
    text: &str,
) -> anyhow::Result<Option<Parse>> {
    let endpoint = if url.ends_with("/chat/completions") {
        url.to_string()
    } else {
        format!("{}/chat/completions", url.trim_end_matches('/'))
    };
    let body = json!({
        "model": model,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": system_prompt(engine)},
            {"role": "user", "content": text},
        ],
    });
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .post(&endpoint)
        .send_json(&body)
        .with_context(|| format!("cannot reach {endpoint}"))?;
    if !response.status().is_success() {
        bail!("{endpoint} answered {}", response.status());
    }
    let answer: Value = response
        .body_mut()
        .read_json()
        .context("not a chat completion")?;
    let content = answer["choices"][0]["message"]["content"]
        .as_str()
        .context("the chat completion has no message content")?;
    validate(engine, content).map(|p| (p.intent != NONE).then_some(p))
}

fn system_prompt(engine: &Engine) -> String {
    let mut out = String::from(
        "You map one operator request for the DWCP platform to one intent. Answer with only a JSON object {\"intent\": NAME, \"slots\": {SLOT: VALUE}}; use intent \"none\" when nothing fits. Leave out slots the text does not give. Intents and their slots (? = optional):\n",
    );
    for intent in &engine.spec().intents {
        let slots: Vec<String> = intent
            .slots
            .iter()
            .map(|s| format!("{}{}", s.name, if s.required { "" } else { "?" }))
            .collect();
        out.push_str(&format!(
            "- {}({}): {}\n",
            intent.name,
            slots.join(", "),
            intent.summary
        ));
    }
    out.push_str("Rules:\n");
    for rule in &engine.spec().rules {
        out.push_str(&format!("- {rule}\n"));
    }
    out
}

/// Holds the endpoint's answer to the spec.
pub fn validate(engine: &Engine, content: &str) -> anyhow::Result<Parse> {
    // Models like to wrap JSON in a code fence.
    let trimmed = content
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    let value: Value = serde_json::from_str(trimmed).context("the answer is not JSON")?;
    let intent = value["intent"]
        .as_str()
        .context("the answer names no intent")?;
    if intent == NONE {
        return Ok(Parse {
            intent: NONE.into(),
            slots: Map::new(),
            confidence: 0.5,
            suggestions: Vec::new(),
            missing: Vec::new(),
        });
    }
    let spec = engine
        .spec()
        .intent(intent)
        .with_context(|| format!("the answer's intent `{intent}` is not in the spec"))?;
    let mut slots = Map::new();
    if let Some(given) = value["slots"].as_object() {
        for (name, v) in given {
            let slot = spec
                .slot(name)
                .with_context(|| format!("`{name}` is not a slot of {intent}"))?;
            let written = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => bail!("slot {name}: {other} is not a value"),
            };
            let normalized = dwcp_ask::values::normalize_written(name, &slot.kind, &written)
                .with_context(|| format!("slot {name}: `{written}` is not a valid value"))?;
            slots.insert(name.clone(), normalized);
        }
    }
    let missing = spec
        .slots
        .iter()
        .filter(|s| s.required && !slots.contains_key(&s.name))
        .map(|s| s.name.clone())
        .collect();
    Ok(Parse {
        intent: intent.into(),
        slots,
        confidence: 0.5,
        suggestions: Vec::new(),
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> &'static Engine {
        Engine::builtin().expect("the built-in model loads")
    }

    #[test]
    fn an_answer_inside_the_spec_is_taken_with_its_values_normalized() {
        let p = validate(
            engine(),
            "```json\n{\"intent\": \"set_limits\", \"slots\": {\"app\": \"Cart\", \"memory_mib\": \"1 GiB\"}}\n```",
        )
        .unwrap();
        assert_eq!(p.intent, "set_limits");
        assert_eq!(p.slots["app"], "cart");
        assert_eq!(p.slots["memory_mib"], 1024);
    }

    #[test]
    fn an_answer_outside_the_spec_is_refused() {
        for bad in [
            "not json",
            r#"{"intent": "format_disk"}"#,
            r#"{"intent": "delete_app", "slots": {"app": "x", "force": "yes"}}"#,
            r#"{"intent": "set_traffic_split", "slots": {"app": "x", "percent": "lots"}}"#,
        ] {
            assert!(validate(engine(), bad).is_err(), "{bad}");
        }
        let p = validate(engine(), r#"{"intent": "delete_app", "slots": {}}"#).unwrap();
        assert_eq!(p.missing, ["app"]);
    }
}
