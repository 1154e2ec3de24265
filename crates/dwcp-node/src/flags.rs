//! Tenants' feature flags on the node: each tenant's flagd flag-definition
//! document, validated whole before it is stored, kept parsed in memory for
//! OFREP and for the `x-dwcp-flags` header an app's requests carry.
//!
//! Every change goes through [`FlagStore`]: the new document is built,
//! parsed and checked (flagd's format, and targeting the evaluator
//! understands), written to the state store in one transaction and only
//! then swapped in. A document that does not pass changes nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use dwcp_release::flags::{ErrorCode, EvalOptions, FlagError, FlagSet, Reason, Resolution};
use dwcp_store::StoreError;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::control::Control;

/// The request header that carries a tenant's flags, evaluated for the
/// request's user, to its apps.
pub const FLAGS_HEADER: &str = "x-dwcp-flags";

/// The largest `x-dwcp-flags` value; flags past it are left out.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// The largest flag document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// Why a flag operation changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum FlagsError {
    /// The document (or flag) is malformed; the message has the line.
    #[error("flags refused, nothing changed: {0}")]
    Invalid(String),
    /// No flag with this key.
    #[error("no flag `{key}` in tenant `{tenant}` (`dwcp flags list` shows them)")]
    NoFlag {
        /// The tenant.
        tenant: String,
        /// The flag's key.
        key: String,
    },
    /// A flag with this key exists already.
    #[error(
        "flag `{key}` exists already in tenant `{tenant}` (change it with `dwcp flags set`, or delete it first)"
    )]
    Exists {
        /// The tenant.
        tenant: String,
        /// The flag's key.
        key: String,
    },
    /// A request that cannot be carried out as asked.
    #[error("{0}")]
    BadRequest(String),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One tenant's flags: the stored text, the document and its parsed form.
struct TenantFlags {
    text: String,
    doc: Value,
    set: FlagSet,
    /// Whether the header cap was reported for this document.
    header_capped: AtomicBool,
}

/// One flag as `dwcp flags list` shows it.
#[derive(Debug, Serialize)]
pub struct FlagRow {
    /// The flag's key.
    pub key: String,
    /// `ENABLED` or `DISABLED`.
    pub state: String,
    /// The default variant, if any.
    pub default_variant: Option<String>,
    /// Variant names and their values.
    pub variants: Map<String, Value>,
    /// Whether the flag has targeting rules.
    pub targeting: bool,
}

/// What an import changed.
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    /// The tenant.
    pub tenant: String,
    /// How many flags the tenant has now.
    pub flags: usize,
    /// Keys that are new.
    pub added: Vec<String>,
    /// Keys whose definition changed.
    pub changed: Vec<String>,
    /// Keys that are gone (a replacing import only).
    pub removed: Vec<String>,
}

/// Every tenant's flags, parsed, in front of the state store.
pub struct FlagStore {
    control: Arc<Control>,
    tenants: ArcSwap<HashMap<String, Arc<TenantFlags>>>,
    /// Changes are read-modify-write of a tenant's document: one at a time.
    writes: Mutex<()>,
    /// How flags are evaluated (`dwcp up --flags-fractional`).
    options: EvalOptions,
}

impl FlagStore {
    /// Loads every tenant's stored flags. A document that no longer parses
    /// is skipped with a warning (the tenant serves no flags until it is
    /// imported again); the node still starts.
    pub fn open(
        control: Arc<Control>,
        fractional: dwcp_release::flags::FractionalVersion,
    ) -> Result<Self, StoreError> {
        let mut tenants = HashMap::new();
        for (tenant, text) in control.state.all_flags()? {
            match validate(&text) {
                Ok((doc, set)) => {
                    tenants.insert(tenant, Arc::new(TenantFlags::new(text, doc, set)));
                }
                Err(e) => tracing::warn!(
                    tenant,
                    "stored flags not loaded: {e}; `dwcp --tenant {tenant} flags import FILE` replaces them"
                ),
            }
        }
        Ok(Self {
            control,
            tenants: ArcSwap::from_pointee(tenants),
            writes: Mutex::new(()),
            options: EvalOptions {
                fractional,
                now_unix_secs: None,
            },
        })
    }

    fn get_tenant(&self, tenant: &str) -> Option<Arc<TenantFlags>> {
        self.tenants.load().get(tenant).cloned()
    }

    /// The tenant's document as stored (`{"flags": {}}` when it has none).
    pub fn export(&self, tenant: &str) -> String {
        match self.get_tenant(tenant) {
            Some(flags) => flags.text.clone(),
            None => "{\n  \"flags\": {}\n}\n".to_string(),
        }
    }

    /// Resolves one of the tenant's flags for `context` (FLAG_NOT_FOUND
    /// when the tenant has no such flag).
    pub fn evaluate(&self, tenant: &str, key: &str, context: &Value) -> Resolution {
        match self.get_tenant(tenant) {
            Some(flags) => flags.set.evaluate(key, context, &self.options),
            None => Resolution {
                value: None,
                variant: None,
                reason: Reason::Error,
                error: Some(ErrorCode::FlagNotFound),
                metadata: Map::new(),
            },
        }
    }

    /// Whether `tenant` has any flag.
    pub fn has_flags(&self, tenant: &str) -> bool {
        self.tenants
            .load()
            .get(tenant)
            .is_some_and(|flags| flags.set.keys().next().is_some())
    }

    /// The variant flag `key` of `tenant` gives the user `targeting_key`
    /// (`None`: no such flag, or it resolves to none).
    pub fn variant(&self, tenant: &str, key: &str, targeting_key: &str) -> Option<String> {
        let flags = self.get_tenant(tenant)?;
        let context = serde_json::json!({ "targetingKey": targeting_key });
        flags.set.evaluate(key, &context, &self.options).variant
    }

    /// Resolves every flag of the tenant for `context`, by key.
    pub fn evaluate_all(&self, tenant: &str, context: &Value) -> Vec<(String, Resolution)> {
        let Some(flags) = self.get_tenant(tenant) else {
            return Vec::new();
        };
        flags
            .set
            .keys()
            .map(|key| {
                (
                    key.to_string(),
                    flags.set.evaluate(key, context, &self.options),
                )
            })
            .collect()
    }

    /// The tenant's flags, by key.
    pub fn list(&self, tenant: &str) -> Vec<FlagRow> {
        let Some(flags) = self.get_tenant(tenant) else {
            return Vec::new();
        };
        let Some(Value::Object(all)) = flags.doc.get("flags") else {
            return Vec::new();
        };
        let mut rows: Vec<FlagRow> = all
            .iter()
            .map(|(key, def)| FlagRow {
                key: key.clone(),
                state: def
                    .get("state")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                default_variant: def
                    .get("defaultVariant")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                variants: def
                    .get("variants")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
                targeting: match def.get("targeting") {
                    None | Some(Value::Null) => false,
                    Some(Value::Object(rule)) => !rule.is_empty(),
                    Some(_) => true,
                },
            })
            .collect();
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        rows
    }

    /// One flag's definition.
    pub fn get(&self, tenant: &str, key: &str) -> Result<Value, FlagsError> {
        self.get_tenant(tenant)
            .and_then(|flags| flags.doc.get("flags")?.get(key).cloned())
            .ok_or_else(|| no_flag(tenant, key))
    }

    /// Replaces the tenant's whole document with `text`, or with `merge`
    /// adds its flags and `$evaluators` to the stored ones (its own win).
    pub fn import(
        &self,
        tenant: &str,
        text: &str,
        merge: bool,
    ) -> Result<ImportReport, FlagsError> {
        check_size(text)?;
        let (incoming, _) = validate(text)?;
        let _writing = self.lock();
        let before = self.get_tenant(tenant);
        let old_flags = before
            .as_ref()
            .and_then(|f| f.doc.get("flags")?.as_object().cloned())
            .unwrap_or_default();
        let (text, doc, set) = if merge && before.is_some() {
            let mut doc = before.as_ref().map_or_else(empty_doc, |f| f.doc.clone());
            overlay(&mut doc, &incoming);
            let text = to_text(&doc);
            let (doc, set) = validate(&text).map_err(|e| after_merge(&e))?;
            (text, doc, set)
        } else {
            let (doc, set) = validate(text)?;
            (text.to_string(), doc, set)
        };
        let new_flags = doc
            .get("flags")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut report = ImportReport {
            tenant: tenant.to_string(),
            flags: new_flags.len(),
            ..ImportReport::default()
        };
        for (key, def) in &new_flags {
            match old_flags.get(key) {
                None => report.added.push(key.clone()),
                Some(old) if old != def => report.changed.push(key.clone()),
                Some(_) => {}
            }
        }
        report.removed = old_flags
            .keys()
            .filter(|k| !new_flags.contains_key(*k))
            .cloned()
            .collect();
        self.store(tenant, text, doc, set)?;
        tracing::info!(tenant, flags = report.flags, merge, "flags imported");
        Ok(report)
    }

    /// Removes all of the tenant's flags; whether it had any.
    pub fn delete_all(&self, tenant: &str) -> Result<bool, FlagsError> {
        let _writing = self.lock();
        let removed = self.control.state.delete_flags(tenant)?;
        self.swap(|map| {
            map.remove(tenant);
        });
        tracing::info!(tenant, "flags removed");
        Ok(removed)
    }

    /// Forgets a tenant's flags in memory (its stored document went with
    /// the tenant).
    pub fn forget(&self, tenant: &str) {
        let _writing = self.lock();
        self.swap(|map| {
            map.remove(tenant);
        });
    }

    /// Sets one flag's definition from `text` (the JSON of one flag).
    pub fn set(&self, tenant: &str, key: &str, text: &str) -> Result<Value, FlagsError> {
        check_key(key)?;
        check_size(text)?;
        let def: Value = serde_json::from_str(text).map_err(|e| {
            FlagsError::Invalid(format!(
                "line {}, column {}: {}",
                e.line(),
                e.column(),
                strip_position(&e)
            ))
        })?;
        if !def.is_object() {
            return Err(FlagsError::Invalid(format!(
                "flag `{key}` must be a JSON object such as {{\"state\": \"ENABLED\", \"variants\": {{\"on\": true, \"off\": false}}, \"defaultVariant\": \"off\"}}"
            )));
        }
        self.change(tenant, |flags| {
            flags.insert(key.to_string(), def.clone());
            Ok(def.clone())
        })
    }

    /// Makes a boolean flag: variants `on` (true) and `off` (false), default
    /// `off`, state ENABLED.
    pub fn create(&self, tenant: &str, key: &str) -> Result<Value, FlagsError> {
        check_key(key)?;
        self.change(tenant, |flags| {
            if flags.contains_key(key) {
                return Err(FlagsError::Exists {
                    tenant: tenant.to_string(),
                    key: key.to_string(),
                });
            }
            let def = json!({
                "state": "ENABLED",
                "variants": {"on": true, "off": false},
                "defaultVariant": "off",
            });
            flags.insert(key.to_string(), def.clone());
            Ok(def)
        })
    }

    /// Sets a flag's state to ENABLED or DISABLED.
    pub fn set_enabled(&self, tenant: &str, key: &str, enabled: bool) -> Result<Value, FlagsError> {
        self.change(tenant, |flags| {
            let def = flags
                .get_mut(key)
                .and_then(Value::as_object_mut)
                .ok_or_else(|| no_flag(tenant, key))?;
            let state = if enabled { "ENABLED" } else { "DISABLED" };
            def.insert("state".into(), Value::from(state));
            Ok(Value::Object(def.clone()))
        })
    }

    /// Sets a flag's targeting to a `fractional` split: `percent`% of users
    /// (by targeting key) get its on variant, the others its off variant.
    pub fn rollout(&self, tenant: &str, key: &str, percent: u32) -> Result<Value, FlagsError> {
        if percent > 100 {
            return Err(FlagsError::BadRequest(format!(
                "rollout percent {percent}: give a whole number from 0 to 100"
            )));
        }
        self.change(tenant, |flags| {
            let def = flags
                .get_mut(key)
                .and_then(Value::as_object_mut)
                .ok_or_else(|| no_flag(tenant, key))?;
            let variants = def
                .get("variants")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let (on, off) = on_off_variants(&variants).ok_or_else(|| {
                let names: Vec<&str> = variants.keys().map(String::as_str).collect();
                FlagsError::BadRequest(format!(
                    "flag `{key}` has no on/off variants (it has {}): a rollout splits between variants named `on` and `off`, or whose values are true and false; write other targeting with `dwcp flags set`",
                    if names.is_empty() { "none".to_string() } else { names.join(", ") }
                ))
            })?;
            // No bucketing expression: flagd's default, the flag key followed
            // by the targeting key, so each flag splits users its own way.
            def.insert(
                "targeting".into(),
                json!({"fractional": [[on, percent], [off, 100 - percent]]}),
            );
            Ok(Value::Object(def.clone()))
        })
    }

    /// Deletes one flag.
    pub fn delete(&self, tenant: &str, key: &str) -> Result<(), FlagsError> {
        self.change(tenant, |flags| {
            flags
                .remove(key)
                .map(drop)
                .ok_or_else(|| no_flag(tenant, key))
        })
    }

    /// The value of the `x-dwcp-flags` header for a request of `targeting_key`
    /// to one of `tenant`'s apps: every flag that resolves to a value, as a
    /// compact JSON object (non-ASCII escaped), at most
    /// [`MAX_HEADER_BYTES`]. `None` when the tenant has no flags.
    pub fn header_for(
        &self,
        tenant: &str,
        targeting_key: &str,
    ) -> Option<hyper::header::HeaderValue> {
        let flags = self.get_tenant(tenant)?;
        flags.set.keys().next()?;
        let (json, left_out) = header_json(&flags.set, targeting_key, &self.options);
        if left_out > 0 && !flags.header_capped.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                tenant,
                left_out,
                "{FLAGS_HEADER} is capped at {MAX_HEADER_BYTES} bytes: {left_out} flag(s) left out (logged once per flag document)"
            );
        }
        hyper::header::HeaderValue::from_str(&json).ok()
    }

    /// Applies `edit` to a copy of the tenant's flags object, then
    /// validates, stores and swaps in the new document.
    fn change<R>(
        &self,
        tenant: &str,
        edit: impl FnOnce(&mut Map<String, Value>) -> Result<R, FlagsError>,
    ) -> Result<R, FlagsError> {
        let _writing = self.lock();
        let mut doc = self
            .get_tenant(tenant)
            .map_or_else(empty_doc, |f| f.doc.clone());
        if !doc.get("flags").is_some_and(Value::is_object) {
            doc["flags"] = Value::Object(Map::new());
        }
        let out = match doc.get_mut("flags").and_then(Value::as_object_mut) {
            Some(flags) => edit(flags)?,
            None => return Err(FlagsError::Invalid("the document has no flags".into())),
        };
        let text = to_text(&doc);
        let (doc, set) = validate(&text).map_err(|e| without_lines(&e))?;
        self.store(tenant, text, doc, set)?;
        Ok(out)
    }

    /// Writes the document, then makes it the one evaluated.
    fn store(
        &self,
        tenant: &str,
        text: String,
        doc: Value,
        set: FlagSet,
    ) -> Result<(), FlagsError> {
        self.control.state.put_flags(tenant, &text)?;
        let flags = Arc::new(TenantFlags::new(text, doc, set));
        self.swap(|map| {
            map.insert(tenant.to_string(), flags);
        });
        Ok(())
    }

    fn swap(&self, edit: impl FnOnce(&mut HashMap<String, Arc<TenantFlags>>)) {
        let mut next = HashMap::clone(&self.tenants.load());
        edit(&mut next);
        self.tenants.store(Arc::new(next));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TenantFlags {
    fn new(text: String, doc: Value, set: FlagSet) -> Self {
        Self {
            text,
            doc,
            set,
            header_capped: AtomicBool::new(false),
        }
    }
}

fn no_flag(tenant: &str, key: &str) -> FlagsError {
    FlagsError::NoFlag {
        tenant: tenant.to_string(),
        key: key.to_string(),
    }
}

fn empty_doc() -> Value {
    json!({ "flags": {} })
}

fn to_text(doc: &Value) -> String {
    let mut text = serde_json::to_string_pretty(doc).unwrap_or_else(|_| doc.to_string());
    text.push('\n');
    text
}

fn check_size(text: &str) -> Result<(), FlagsError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(FlagsError::Invalid(format!(
            "the document is {} bytes; the limit is {MAX_DOCUMENT_BYTES}: split it across tenants or trim it",
            text.len()
        )));
    }
    Ok(())
}

/// Flag keys are free text in flagd; here they must also travel in a URL
/// path and a header.
fn check_key(key: &str) -> Result<(), FlagsError> {
    if key.is_empty() || key.len() > 256 || key.chars().any(char::is_control) {
        return Err(FlagsError::BadRequest(format!(
            "flag key {key:?}: give 1 to 256 characters, no control characters"
        )));
    }
    Ok(())
}

/// The variants a rollout splits between: `on`/`off` by name, else the
/// ones whose values are `true` and `false`.
fn on_off_variants(variants: &Map<String, Value>) -> Option<(String, String)> {
    if variants.contains_key("on") && variants.contains_key("off") {
        return Some(("on".into(), "off".into()));
    }
    let named = |wanted: bool| {
        variants
            .iter()
            .find(|(_, v)| v.as_bool() == Some(wanted))
            .map(|(name, _)| name.clone())
    };
    Some((named(true)?, named(false)?))
}

/// Adds `incoming`'s flags, `$evaluators` and metadata to `doc`; its own
/// win. Other top-level members (`$schema`) are taken from `incoming`.
fn overlay(doc: &mut Value, incoming: &Value) {
    let (Some(doc), Some(incoming)) = (doc.as_object_mut(), incoming.as_object()) else {
        return;
    };
    for (name, value) in incoming {
        match (doc.get_mut(name), value) {
            (Some(Value::Object(mine)), Value::Object(theirs))
                if matches!(name.as_str(), "flags" | "$evaluators" | "metadata") =>
            {
                for (k, v) in theirs {
                    mine.insert(k.clone(), v.clone());
                }
            }
            _ => {
                doc.insert(name.clone(), value.clone());
            }
        }
    }
}

/// Parses and checks a whole document: flagd's format, and targeting the
/// evaluator understands (flagd would load a flag with an unknown operator
/// and fail it at each evaluation; an import refuses it instead).
pub fn validate(text: &str) -> Result<(Value, FlagSet), FlagsError> {
    let set = FlagSet::parse(text).map_err(|e| FlagsError::Invalid(describe(&e, text)))?;
    if let Some((key, reason)) = set.targeting_errors().next() {
        let at = key_line(text, &["flags", key, "targeting"])
            .map(|l| format!("line {l}: "))
            .unwrap_or_default();
        return Err(FlagsError::Invalid(format!(
            "{at}flag \"{key}\": targeting: {reason}"
        )));
    }
    // It parsed as a flag file, so it is JSON.
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| FlagsError::Invalid(format!("line {}: {}", e.line(), strip_position(&e))))?;
    Ok((doc, set))
}

/// A flag-file error with the line it is on.
fn describe(e: &FlagError, text: &str) -> String {
    let line = |path: &[&str]| {
        key_line(text, path)
            .map(|l| format!("line {l}: "))
            .unwrap_or_default()
    };
    match e {
        FlagError::Syntax {
            line,
            column,
            reason,
        } => format!("line {line}, column {column}: {reason}"),
        FlagError::Flag { key, .. } => format!("{}{e}", line(&["flags", key])),
        FlagError::RefCycle { .. } => format!("{}{e}", line(&["$evaluators"])),
        FlagError::Metadata { .. } => format!("{}{e}", line(&["metadata"])),
    }
}

/// A document built by the node has no line the user wrote: the reason only.
fn without_lines(e: &FlagsError) -> FlagsError {
    match e {
        FlagsError::Invalid(reason) => FlagsError::Invalid(strip_line_prefix(reason).to_string()),
        other => FlagsError::BadRequest(other.to_string()),
    }
}

/// A merged document's error: the lines are the merged document's.
fn after_merge(e: &FlagsError) -> FlagsError {
    match e {
        FlagsError::Invalid(reason) => FlagsError::Invalid(format!(
            "merged with the stored flags: {}",
            strip_line_prefix(reason)
        )),
        other => FlagsError::BadRequest(other.to_string()),
    }
}

fn strip_line_prefix(reason: &str) -> &str {
    match reason.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(reason, |(_, r)| r),
        None => reason,
    }
}

/// serde_json's message without its trailing " at line L column C".
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&position).unwrap_or(&text).to_string()
}

/// The 1-based line on which the member at `path` (object keys from the
/// top) is named in `text`, a JSON document; `None` if it is not found
/// (e.g. a key written with escapes).
pub fn key_line(text: &str, path: &[&str]) -> Option<usize> {
    // Each open container: for an object, the key its current member has.
    enum Frame {
        Object(Option<String>),
        Array,
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut line = 1;
    let mut expecting_key = false;
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            '\n' => line += 1,
            '{' => {
                stack.push(Frame::Object(None));
                expecting_key = true;
            }
            '[' => {
                stack.push(Frame::Array);
                expecting_key = false;
            }
            '}' | ']' => {
                stack.pop();
                expecting_key = false;
            }
            ',' => expecting_key = matches!(stack.last(), Some(Frame::Object(_))),
            '"' => {
                let start_line = line;
                let mut s = String::new();
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            // Kept escaped: such keys are not matched.
                            s.push('\\');
                            if let Some((_, n)) = chars.next() {
                                s.push(n);
                            }
                        }
                        '\n' => {
                            line += 1;
                            s.push(c);
                        }
                        _ => s.push(c),
                    }
                }
                if !expecting_key {
                    continue;
                }
                expecting_key = false;
                // Where this key sits: the keys of the enclosing objects.
                let depth = stack.len();
                let enclosing: Option<Vec<&str>> = stack[..depth.saturating_sub(1)]
                    .iter()
                    .map(|f| match f {
                        Frame::Object(Some(k)) => Some(k.as_str()),
                        _ => None,
                    })
                    .collect();
                if let Some(enclosing) = enclosing
                    && depth == path.len()
                    && enclosing.as_slice() == &path[..depth - 1]
                    && s == path[depth - 1]
                {
                    return Some(start_line);
                }
                if let Some(Frame::Object(current)) = stack.last_mut() {
                    *current = Some(s);
                }
            }
            _ => {}
        }
    }
    None
}

/// `{flagKey: value, …}` for every flag of `set` that resolves to a value
/// for `targeting_key`, in key order, compact and ASCII, at most
/// [`MAX_HEADER_BYTES`]; with the number of flags that did not fit.
fn header_json(set: &FlagSet, targeting_key: &str, options: &EvalOptions) -> (String, usize) {
    let mut context = Map::new();
    if !targeting_key.is_empty() {
        context.insert("targetingKey".into(), Value::from(targeting_key));
    }
    let context = Value::Object(context);
    let mut out = String::with_capacity(256);
    out.push('{');
    let mut left_out = 0usize;
    let mut any = false;
    for key in set.keys() {
        let Some(value) = set.evaluate(key, &context, options).value else {
            continue;
        };
        let entry = format!("{}:{}", ascii_json(&Value::from(key)), ascii_json(&value));
        // The entry, its comma and the closing brace must fit.
        if out.len() + entry.len() + usize::from(any) + 1 > MAX_HEADER_BYTES {
            left_out += 1;
            continue;
        }
        if any {
            out.push(',');
        }
        out.push_str(&entry);
        any = true;
    }
    out.push('}');
    (out, left_out)
}

/// Compact JSON with every non-ASCII character (and DEL) escaped, so that
/// it is a valid header value.
fn ascii_json(value: &Value) -> String {
    let text = value.to_string();
    if text.bytes().all(|b| b.is_ascii() && b != 0x7f) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_ascii() && c != '\u{7f}' {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lines_follow_the_path() {
        let text = "{\n  \"metadata\": {\"flags\": 1},\n  \"flags\": {\n    \"a\": {\"state\": \"ENABLED\"},\n    \"b\": {\n      \"targeting\": {\"x\": [\"flags\"]}\n    }\n  }\n}\n";
        assert_eq!(key_line(text, &["flags"]), Some(3));
        assert_eq!(key_line(text, &["flags", "a"]), Some(4));
        assert_eq!(key_line(text, &["flags", "b", "targeting"]), Some(6));
        assert_eq!(key_line(text, &["metadata"]), Some(2));
        assert_eq!(key_line(text, &["flags", "c"]), None);
    }

    #[test]
    fn a_bad_flag_is_refused_with_its_line() {
        let text = "{\n  \"flags\": {\n    \"ok\": {\"state\": \"ENABLED\", \"variants\": {\"on\": true}, \"defaultVariant\": \"on\"},\n    \"bad\": {\"state\": \"ENABLED\", \"variants\": {\"on\": true}, \"defaultVariant\": \"nope\"}\n  }\n}\n";
        let e = validate(text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("line 4") && e.contains("\"bad\""), "{e}");
        let syntax = "{\n  \"flags\": {\n    \"x\": {,}\n  }\n}";
        let e = validate(syntax)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("line 3, column"), "{e}");
        let rule = "{\"flags\": {\n\"r\": {\"state\": \"ENABLED\", \"variants\": {\"on\": true}, \"defaultVariant\": \"on\",\n \"targeting\": {\"no_such_op\": [1]}}}}";
        let e = validate(rule)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("line 3") && e.contains("targeting"), "{e}");
    }

    #[test]
    fn the_header_holds_each_users_values_within_its_cap() {
        let doc = r#"{"flags": {
            "a": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                  "targeting": {"fractional": [["on", 100], ["off", 0]]}},
            "b": {"state": "ENABLED", "variants": {"x": "é"}, "defaultVariant": "x"},
            "c": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"}
        }}"#;
        let (_, set) = validate(doc).expect("a valid document");
        let (json, left_out) = header_json(&set, "alice", &EvalOptions::default());
        assert_eq!(json, r#"{"a":true,"b":"\u00e9"}"#);
        assert_eq!(left_out, 0);
        assert!(hyper::header::HeaderValue::from_str(&json).is_ok());
        // Without a targeting key `fractional` has nothing to bucket by.
        assert_eq!(
            header_json(&set, "", &EvalOptions::default()).0,
            r#"{"a":false,"b":"\u00e9"}"#
        );

        let big: Map<String, Value> = (0..100)
            .map(|i| {
                let flag = json!({"state": "ENABLED", "variants": {"v": "x".repeat(200)}, "defaultVariant": "v"});
                (format!("flag-{i:03}"), flag)
            })
            .collect();
        let doc = json!({ "flags": big }).to_string();
        let (_, set) = validate(&doc).expect("a valid document");
        let (json, left_out) = header_json(&set, "alice", &EvalOptions::default());
        assert!(json.len() <= MAX_HEADER_BYTES, "{}", json.len());
        assert!(left_out > 0 && left_out < 100, "{left_out}");
        let parsed: Map<String, Value> = serde_json::from_str(&json).expect("JSON");
        assert_eq!(parsed.len() + left_out, 100);
    }

    #[test]
    fn header_values_are_ascii_json() {
        assert_eq!(ascii_json(&json!("é")), "\"\\u00e9\"");
        assert_eq!(ascii_json(&json!("😀")), "\"\\ud83d\\ude00\"");
        assert_eq!(ascii_json(&json!({"a": 1})), "{\"a\":1}");
        assert_eq!(ascii_json(&json!("\u{7f}")), "\"\\u007f\"");
    }

    #[test]
    fn on_off_variants_by_name_or_value() {
        let m = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(
            on_off_variants(&m(json!({"on": 1, "off": 2}))),
            Some(("on".into(), "off".into()))
        );
        assert_eq!(
            on_off_variants(&m(json!({"yes": true, "no": false}))),
            Some(("yes".into(), "no".into()))
        );
        assert_eq!(on_off_variants(&m(json!({"red": "r", "blue": "b"}))), None);
    }
}
