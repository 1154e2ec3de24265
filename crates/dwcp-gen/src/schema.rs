//! The subset of each Terraform provider's schema the generator may use,
//! and a check of generated configurations against it.
//!
//! `terraform validate` needs the providers, and no registry is reachable
//! where the tests run, so `schema/*.json` keep, for each provider, the
//! resource and data source types and the attributes and nested blocks the
//! generator emits, copied from the providers' documented schemas. [`check`]
//! parses the configuration with hcl-rs and refuses anything outside that
//! subset, any reference to an undeclared variable, local, resource or data
//! source, and any function Terraform does not have.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use hcl::expr::TraversalOperator;
use hcl::{Body, Expression};
use serde::Deserialize;

use crate::GeneratedFile;
use crate::spec::Provider;

/// One provider's schema subset.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSchema {
    /// The provider's local name (`aws`, `google`, …), its blocks' label.
    pub name: String,
    /// Its registry source address (`hashicorp/aws`).
    pub source: String,
    /// The version constraint the configurations require.
    pub version: String,
    /// The `provider` block's arguments.
    pub provider: BlockSchema,
    /// Resource types by name.
    pub resources: BTreeMap<String, BlockSchema>,
    /// Data source types by name.
    #[serde(default)]
    pub data_sources: BTreeMap<String, BlockSchema>,
}

/// A block's allowed arguments and nested blocks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSchema {
    /// Argument names.
    #[serde(default)]
    pub attributes: BTreeSet<String>,
    /// Nested block types by name.
    #[serde(default)]
    pub blocks: BTreeMap<String, BlockSchema>,
}

/// The embedded schema of `provider`.
pub fn for_provider(provider: Provider) -> &'static ProviderSchema {
    static SCHEMAS: OnceLock<Vec<(Provider, ProviderSchema)>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        Provider::ALL
            .into_iter()
            .map(|p| {
                let text = match p {
                    Provider::Aws => include_str!("schema/aws.json"),
                    Provider::Gcp => include_str!("schema/gcp.json"),
                    Provider::Azure => include_str!("schema/azure.json"),
                    Provider::Hetzner => include_str!("schema/hetzner.json"),
                    Provider::DigitalOcean => include_str!("schema/digitalocean.json"),
                };
                // The files are part of this crate, and a unit test parses each.
                let schema = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("schema/{p}.json does not parse: {e}"));
                (p, schema)
            })
            .collect()
    });
    schemas
        .iter()
        .find_map(|(p, s)| (*p == provider).then_some(s))
        .unwrap_or_else(|| unreachable!("every provider has a schema"))
}

/// Meta-arguments Terraform accepts in every resource and data block.
const META_ARGUMENTS: [&str; 4] = ["count", "for_each", "depends_on", "provider"];

/// Terraform's built-in functions that generated files may call (a subset).
const FUNCTIONS: [&str; 13] = [
    "base64encode",
    "can",
    "concat",
    "format",
    "formatlist",
    "join",
    "jsonencode",
    "length",
    "lookup",
    "merge",
    "regex",
    "tolist",
    "yamlencode",
];

/// Checks the `.tf` files among `files` against `provider`'s schema subset.
/// Returns every problem found, each naming its file.
pub fn check(provider: Provider, files: &[GeneratedFile]) -> Result<(), Vec<String>> {
    let schema = for_provider(provider);
    let mut problems = Vec::new();
    let mut bodies = Vec::new();
    for file in files {
        if file.path.extension().is_some_and(|e| e == "tf") {
            let name = file.path.display().to_string();
            match hcl::parse(&file.contents) {
                Ok(body) => bodies.push((name, body)),
                Err(e) => problems.push(format!("{name}: does not parse as HCL: {e}")),
            }
        }
    }
    let declared = Declared::collect(&bodies);
    for (name, body) in &bodies {
        let mut report = |problem: String| problems.push(format!("{name}: {problem}"));
        for block in body.blocks() {
            let labels: Vec<&str> = block.labels().iter().map(|l| l.as_str()).collect();
            match (block.identifier(), labels.as_slice()) {
                ("terraform", []) => check_terraform_block(schema, block.body(), &mut report),
                ("provider", [label]) if *label == schema.name => {
                    check_block(&schema.provider, block.body(), &[], "provider", &mut report)
                }
                ("variable", [_]) => check_block(
                    &core_block(
                        &["type", "default", "description", "sensitive", "nullable"],
                        &[("validation", &["condition", "error_message"])],
                    ),
                    block.body(),
                    &[],
                    "variable",
                    &mut report,
                ),
                ("output", [_]) => check_block(
                    &core_block(&["value", "description", "sensitive", "depends_on"], &[]),
                    block.body(),
                    &[],
                    "output",
                    &mut report,
                ),
                ("locals", []) => {}
                ("resource", [kind, _]) => match schema.resources.get(*kind) {
                    Some(s) => check_block(s, block.body(), &META_ARGUMENTS, kind, &mut report),
                    None => report(format!(
                        "resource type {kind} is not in the {provider} schema"
                    )),
                },
                ("data", [kind, _]) => match schema.data_sources.get(*kind) {
                    Some(s) => check_block(s, block.body(), &META_ARGUMENTS, kind, &mut report),
                    None => report(format!(
                        "data source {kind} is not in the {provider} schema"
                    )),
                },
                (id, labels) => report(format!("unexpected block {id} {labels:?}")),
            }
        }
        walk_body(body, &mut |e| check_expression(e, &declared, &mut report));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn core_block(attributes: &[&str], blocks: &[(&str, &[&str])]) -> BlockSchema {
    BlockSchema {
        attributes: attributes.iter().map(|a| a.to_string()).collect(),
        blocks: blocks
            .iter()
            .map(|(name, attributes)| (name.to_string(), core_block(attributes, &[])))
            .collect(),
    }
}

fn check_terraform_block(schema: &ProviderSchema, body: &Body, report: &mut dyn FnMut(String)) {
    for attribute in body.attributes() {
        if attribute.key() != "required_version" {
            report(format!("terraform.{} is not allowed", attribute.key()));
        }
    }
    for block in body.blocks() {
        if block.identifier() != "required_providers" {
            report(format!("terraform.{} is not allowed", block.identifier()));
            continue;
        }
        for attribute in block.body().attributes() {
            let wanted = Expression::Object(
                [
                    ("source", schema.source.as_str()),
                    ("version", schema.version.as_str()),
                ]
                .into_iter()
                .map(|(k, v)| {
                    (
                        hcl::ObjectKey::Identifier(hcl::Identifier::unchecked(k)),
                        v.into(),
                    )
                })
                .collect(),
            );
            if attribute.key() != schema.name || attribute.expr() != &wanted {
                report(format!(
                    "required provider {} is not {} {}",
                    attribute.key(),
                    schema.source,
                    schema.version
                ));
            }
        }
    }
}

fn check_block(
    schema: &BlockSchema,
    body: &Body,
    meta: &[&str],
    at: &str,
    report: &mut dyn FnMut(String),
) {
    for attribute in body.attributes() {
        if !schema.attributes.contains(attribute.key()) && !meta.contains(&attribute.key()) {
            report(format!("{at}.{} is not in the schema", attribute.key()));
        }
    }
    for block in body.blocks() {
        let id = block.identifier();
        if !meta.is_empty() && id == "lifecycle" {
            continue;
        }
        match schema.blocks.get(id) {
            Some(nested) => check_block(nested, block.body(), &[], &format!("{at}.{id}"), report),
            None => report(format!("block {at}.{id} is not in the schema")),
        }
    }
}

/// The names a configuration declares.
#[derive(Default)]
struct Declared {
    variables: BTreeSet<String>,
    locals: BTreeSet<String>,
    resources: BTreeSet<(String, String)>,
    data: BTreeSet<(String, String)>,
}

impl Declared {
    fn collect(bodies: &[(String, Body)]) -> Declared {
        let mut declared = Declared::default();
        for (_, body) in bodies {
            for block in body.blocks() {
                let labels: Vec<String> = block
                    .labels()
                    .iter()
                    .map(|l| l.as_str().to_owned())
                    .collect();
                match (block.identifier(), labels.as_slice()) {
                    ("variable", [name]) => {
                        declared.variables.insert(name.clone());
                    }
                    ("locals", []) => declared
                        .locals
                        .extend(block.body().attributes().map(|a| a.key().to_owned())),
                    ("resource", [kind, name]) => {
                        declared.resources.insert((kind.clone(), name.clone()));
                    }
                    ("data", [kind, name]) => {
                        declared.data.insert((kind.clone(), name.clone()));
                    }
                    _ => {}
                }
            }
        }
        declared
    }
}

fn check_expression(expr: &Expression, declared: &Declared, report: &mut dyn FnMut(String)) {
    match expr {
        Expression::Traversal(traversal) => {
            let Expression::Variable(root) = &traversal.expr else {
                return;
            };
            let attr = |i: usize| match traversal.operators.get(i) {
                Some(TraversalOperator::GetAttr(a)) => a.as_str().to_owned(),
                _ => String::new(),
            };
            let root = root.as_str();
            let known = match root {
                "var" => declared.variables.contains(&attr(0)),
                "local" => declared.locals.contains(&attr(0)),
                "data" => declared.data.contains(&(attr(0), attr(1))),
                "count" => attr(0) == "index",
                "path" | "terraform" | "self" | "each" => true,
                kind => declared.resources.contains(&(kind.to_owned(), attr(0))),
            };
            if !known {
                report(format!("reference to undeclared {root}.{}", attr(0)));
            }
        }
        Expression::FuncCall(call) => {
            let name = call.name.name.as_str();
            if !call.name.namespace.is_empty() || !FUNCTIONS.contains(&name) {
                report(format!("call of unknown function {name}"));
            }
        }
        _ => {}
    }
}

/// Calls `visit` on every expression in `body`, nested ones included.
fn walk_body(body: &Body, visit: &mut dyn FnMut(&Expression)) {
    for attribute in body.attributes() {
        // A variable's type constraint is not an expression to evaluate.
        if attribute.key() != "type" {
            walk(attribute.expr(), visit);
        }
    }
    for block in body.blocks() {
        walk_body(block.body(), visit);
    }
}

fn walk(expr: &Expression, visit: &mut dyn FnMut(&Expression)) {
    visit(expr);
    match expr {
        Expression::Array(items) => items.iter().for_each(|e| walk(e, visit)),
        Expression::Object(object) => object.iter().for_each(|(key, value)| {
            if let hcl::ObjectKey::Expression(key) = key {
                walk(key, visit);
            }
            walk(value, visit);
        }),
        Expression::Traversal(traversal) => {
            walk(&traversal.expr, visit);
            for operator in &traversal.operators {
                if let TraversalOperator::Index(index) = operator {
                    walk(index, visit);
                }
            }
        }
        Expression::FuncCall(call) => call.args.iter().for_each(|e| walk(e, visit)),
        Expression::Parenthesis(inner) => walk(inner, visit),
        Expression::Conditional(c) => {
            walk(&c.cond_expr, visit);
            walk(&c.true_expr, visit);
            walk(&c.false_expr, visit);
        }
        Expression::Operation(operation) => match operation.as_ref() {
            hcl::expr::Operation::Unary(op) => walk(&op.expr, visit),
            hcl::expr::Operation::Binary(op) => {
                walk(&op.lhs_expr, visit);
                walk(&op.rhs_expr, visit);
            }
        },
        Expression::ForExpr(for_expr) => {
            walk(&for_expr.collection_expr, visit);
            walk(&for_expr.value_expr, visit);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_parses_and_names_its_provider() {
        for provider in Provider::ALL {
            let schema = for_provider(provider);
            assert!(!schema.resources.is_empty(), "{provider}");
            assert!(
                schema.source.ends_with(&format!("/{}", schema.name)),
                "{provider}"
            );
        }
    }
}
