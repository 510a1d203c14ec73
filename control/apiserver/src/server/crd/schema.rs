//! The structural OpenAPI v3 schema of a CustomResourceDefinition version
//! (apiextensions.k8s.io/v1), handled as kube-apiserver handles it: the
//! checks made when the CRD is written ([`check_structural`]), then for each
//! custom object pruning ([`prune`]), defaulting ([`apply_defaults`]) and
//! validation ([`validate`]), with kube-apiserver's (kube-openapi's) paths
//! and wording. Everything here is pure and works on `serde_json::Value`.
//!
//! Knowingly left out: CEL (`x-kubernetes-validations` is refused, hami has
//! no evaluator), the ObjectMeta coercion of embedded resources, and the
//! string formats that are costly to check (`email`, `hostname`, `uri`,
//! `duration`, `isbn`, ... are accepted as they are).

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value, json};

use crate::server::status::Cause;

const PRESERVE: &str = "x-kubernetes-preserve-unknown-fields";
const EMBEDDED: &str = "x-kubernetes-embedded-resource";
const INT_OR_STRING: &str = "x-kubernetes-int-or-string";
const LIST_TYPE: &str = "x-kubernetes-list-type";
const LIST_KEYS: &str = "x-kubernetes-list-map-keys";
const MAP_TYPE: &str = "x-kubernetes-map-type";
const CEL: &str = "x-kubernetes-validations";
/// TypeMeta and ObjectMeta: kept by pruning at a resource's root.
const META: [&str; 3] = ["apiVersion", "kind", "metadata"];
const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

// ---- schema accessors -------------------------------------------------------

fn flag(s: &Value, k: &str) -> bool {
    s.get(k).and_then(Value::as_bool) == Some(true)
}

fn text<'a>(s: &'a Value, k: &str) -> &'a str {
    s.get(k).and_then(Value::as_str).unwrap_or("")
}

fn ty(s: &Value) -> &str {
    text(s, "type")
}

fn present(s: &Value, k: &str) -> bool {
    s.get(k).is_some_and(|v| !v.is_null())
}

fn props(s: &Value) -> Option<&Map<String, Value>> {
    s.get("properties").and_then(Value::as_object)
}

fn prop<'a>(s: &'a Value, k: &str) -> Option<&'a Value> {
    props(s).and_then(|p| p.get(k))
}

fn items(s: &Value) -> Option<&Value> {
    s.get("items").filter(|i| i.is_object())
}

/// `additionalProperties`: `None` when absent, `Some(None)` for a boolean,
/// `Some(Some(schema))` for a schema.
fn additional(s: &Value) -> Option<Option<&Value>> {
    match s.get("additionalProperties") {
        None | Some(Value::Null) => None,
        Some(v) if v.is_object() => Some(Some(v)),
        Some(_) => Some(None),
    }
}

/// A `default` of `null` is no default, as in kube-apiserver.
fn default_of(s: &Value) -> Option<&Value> {
    s.get("default").filter(|d| !d.is_null())
}

fn list<'a>(s: &'a Value, k: &str) -> &'a [Value] {
    s.get(k)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn num(s: &Value, k: &str) -> Option<f64> {
    s.get(k).and_then(Value::as_f64)
}

fn count(s: &Value, k: &str) -> Option<u64> {
    num(s, k).filter(|n| *n >= 0.0).map(|n| n as u64)
}

// ---- field paths and Go renderings ------------------------------------------

/// `field.Path.Child`.
fn child(p: &str, name: &str) -> String {
    if p.is_empty() {
        name.to_owned()
    } else {
        format!("{p}.{name}")
    }
}

/// `field.Path.Key` and `field.Path.Index`.
fn key(p: &str, k: impl std::fmt::Display) -> String {
    format!("{p}[{k}]")
}

/// Go's `strconv.Quote` (`%q`).
fn go_quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            '\u{7}' => o.push_str("\\a"),
            '\u{8}' => o.push_str("\\b"),
            '\u{c}' => o.push_str("\\f"),
            '\u{b}' => o.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(o, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn quoted(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    quoted.join(", ")
}

/// Go's `%v` of a float64: shortest digits, exponent form outside 1e-4..1e6.
fn go_float(f: f64) -> String {
    if !f.is_finite() {
        return (if f.is_nan() {
            "NaN"
        } else if f > 0.0 {
            "+Inf"
        } else {
            "-Inf"
        })
        .to_owned();
    }
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((e.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if f == 0.0 || (-4..6).contains(&exp) {
        format!("{f}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    }
}

/// A field error's bad value as kube-apiserver prints it: strings quoted,
/// numbers and booleans bare, anything else as JSON.
fn bad(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Number(n) => n
            .as_i64()
            .map_or_else(|| go_float(n.as_f64().unwrap_or(0.0)), |i| i.to_string()),
        other => other.to_string(),
    }
}

/// A Go `regexp` compile error, as near as the Rust one allows.
fn re_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    format!(
        "error parsing regexp: {}",
        last.trim().trim_start_matches("error: ")
    )
}

// ---- CRD-time checks ----------------------------------------------------------

const EMBEDDED_OBJECT: &str = "must be object if x-kubernetes-embedded-resource is true";
const EMBEDDED_NO_MAP: &str = "must not be used if x-kubernetes-embedded-resource is set";
const INT_OR_STRING_ONLY: &str = "must be false if x-kubernetes-int-or-string is true";
const METADATA_NAMES: &str = "must not specify anything other than name and generateName, but metadata is implicitly specified";
const EMBEDDED_PROPERTIES: &str = "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields";
const UNIQUE_ITEMS: &str =
    "uniqueItems cannot be set to true since the runtime complexity becomes quadratic";
const NO_CEL: &str = "CEL validation rules are not supported by hami; remove x-kubernetes-validations or validate with a webhook";
const NO_NULL_TYPE: &str = "type cannot be set to null, use nullable as an alternative";
const META_MAP_DEFAULT: &str = "inside additionalProperties applying to object metadata";
const MAP_ITEMS_NEEDED: &str = "must have a schema if x-kubernetes-list-type is map";
const MAP_KEY_UNKNOWN: &str = "entries must all be names of item properties";
const SET_ATOMIC: &str = "must be atomic as item of a list with x-kubernetes-list-type=set";
const MAP_ITEMS_ONE: &str = "must only have a single schema if x-kubernetes-list-type is map";
const MAP_ITEMS_OBJECT: &str = "must be object if parent array's x-kubernetes-list-type is map";
const MAP_KEY_SCALAR: &str =
    "must be a scalar type if parent array's x-kubernetes-list-type is map";
const MAP_KEY_DEFAULT: &str = "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property";
const MAP_KEY_NULLABLE: &str =
    "this property is in x-kubernetes-list-map-keys, so it cannot be nullable";

/// CRD-time messages, `<field path>: <what>` as kube's `field.Error` prints them.
#[derive(Default)]
struct Msgs(Vec<String>);

impl Msgs {
    fn required(&mut self, at: &str, detail: &str) {
        self.0.push(format!("{at}: Required value: {detail}"));
    }

    fn forbidden(&mut self, at: &str, detail: &str) {
        self.0.push(format!("{at}: Forbidden: {detail}"));
    }

    fn invalid(&mut self, at: &str, bad: &str, detail: &str) {
        self.0.push(format!("{at}: Invalid value: {bad}: {detail}"));
    }

    fn unsupported(&mut self, at: &str, bad: &str, allowed: &[&str]) {
        let allowed: Vec<String> = allowed.iter().map(|a| (*a).to_owned()).collect();
        self.0.push(format!(
            "{at}: Unsupported value: {bad}: supported values: {}",
            quoted(&allowed)
        ));
    }

    /// `Required` for an empty type, `Invalid` for a wrong one.
    fn typed(&mut self, at: &str, t: &str, detail: &str) {
        if t.is_empty() {
            self.required(at, detail);
        } else {
            self.invalid(at, &go_quote(t), detail);
        }
    }
}

/// CRD-time check of one version's openAPIV3Schema (`path` is the prefix
/// for messages, e.g. `spec.versions[0].schema.openAPIV3Schema`).
///
/// One message per problem, `<field path>: <what>`, worded as
/// kube-apiserver words it: the structural schema rules (sorted, as kube
/// sorts them), then — only for a structural schema — the `default`s, each
/// validated against its own schema and required to be pruned, then the
/// OpenAPI rules of an apiextensions.k8s.io/v1 schema (unsupported
/// keywords, `x-kubernetes-*` consistency). `x-kubernetes-validations` is
/// refused: hami has no CEL evaluator.
pub fn check_structural(schema: &Value, path: &str) -> Vec<String> {
    let mut m = Msgs::default();
    if flag(schema, "nullable") {
        let at = child(path, "nullable");
        m.forbidden(&at, "nullable cannot be true at the root");
    }
    let mut structural = Msgs::default();
    invariants(schema, Level::Root, path, &mut structural);
    completeness(schema, schema, path, path, &mut structural);
    structural.0.sort();
    if structural.0.is_empty() {
        defaults(schema, path, true, false, &mut m);
    }
    m.0.append(&mut structural.0);
    openapi(schema, path, &Ssv::default(), true, &mut m);
    m.0
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// kube's `validateStructuralInvariants`: every specified node has a type,
/// value validations (`allOf`, ...) stay value validations, the root is an
/// object whose metadata restricts at most name and generateName.
fn invariants(s: &Value, lvl: Level, p: &str, m: &mut Msgs) {
    let (t, tp, ip) = (ty(s), child(p, "type"), child(p, "items"));
    let (pp, app) = (child(p, "properties"), child(p, "additionalProperties"));
    if t == "array" && !present(s, "items") {
        m.required(&ip, "must be specified");
    }
    if let Some(it) = items(s) {
        invariants(it, Level::Item, &ip, m);
    }
    for (k, v) in props(s).into_iter().flatten() {
        invariants(v, Level::Field, &key(&pp, k), m);
    }
    let ap = additional(s);
    if ap.is_some() && lvl == Level::Root {
        m.forbidden(&app, "must not be used at the root");
    }
    if let Some(Some(ap)) = ap {
        invariants(ap, Level::Field, &app, m);
    }
    let (ios, keep, emb) = (flag(s, INT_OR_STRING), flag(s, PRESERVE), flag(s, EMBEDDED));
    if ios && keep {
        m.invalid(&child(p, PRESERVE), "true", INT_OR_STRING_ONLY);
    }
    if ios && emb {
        m.invalid(&child(p, EMBEDDED), "true", INT_OR_STRING_ONLY);
    }
    let first_all_of = list(s, "allOf").first().is_some_and(int_or_string_any_of);
    value_validation(s, (int_or_string_any_of(s), first_all_of), lvl, p, m);
    if emb && t != "object" {
        m.typed(&tp, t, EMBEDDED_OBJECT);
    } else if t.is_empty() && !ios && !keep {
        let d = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        m.required(&tp, d);
    }
    if emb && ap.is_some() {
        m.forbidden(&app, EMBEDDED_NO_MAP);
    }
    if lvl == Level::Root && !t.is_empty() && t != "object" {
        m.invalid(&tp, &go_quote(t), "must be object at the root");
    }
    let meta = [
        ("kind", "string"),
        ("apiVersion", "string"),
        ("metadata", "object"),
    ];
    for (name, want) in meta.into_iter().filter(|_| lvl == Level::Root || emb) {
        if let Some(f) = prop(s, name).map(ty).filter(|f| *f != want) {
            let at = child(&key(&pp, name), "type");
            m.invalid(&at, &go_quote(f), &format!("must be {want}"));
        }
    }
    if lvl == Level::Root && prop(s, "metadata").is_some_and(|md| !only_names(md)) {
        m.forbidden(&key(&pp, "metadata"), METADATA_NAMES);
    }
    if emb && !keep && props(s).is_none_or(Map::is_empty) {
        m.required(&pp, EMBEDDED_PROPERTIES);
    }
}

/// `anyOf: [{type: integer}, {type: string}]`, the int-or-string exception.
fn int_or_string_any_of(s: &Value) -> bool {
    list(s, "anyOf") == [json!({"type": "integer"}), json!({"type": "string"})]
}

/// The root's metadata may say it is an object and restrict name and
/// generateName (their schemas are ignored); anything else is refused.
fn only_names(md: &Value) -> bool {
    let names = |p: &Map<String, Value>| p.keys().all(|k| k == "name" || k == "generateName");
    md.as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| match (k.as_str(), v) {
            ("type" | "default", _) | (_, Value::Null) => true,
            ("properties", Value::Object(p)) => names(p),
            (_, Value::Bool(b)) => !b,
            (_, Value::String(s)) => s.is_empty(),
            (_, Value::Array(a)) => a.is_empty(),
            (_, Value::Object(o)) => o.is_empty(),
            (_, Value::Number(_)) => false,
        })
}

/// `allOf[i]`, `anyOf[i]`, `oneOf[i]` and `not`, with their names.
fn junctors(v: &Value) -> impl Iterator<Item = (String, &Value)> {
    let lists = ["allOf", "anyOf", "oneOf"].into_iter();
    let not = v.get("not").filter(|n| n.is_object());
    let named = move |j| {
        list(v, j)
            .iter()
            .enumerate()
            .map(move |(i, b)| (key(j, i), b))
    };
    lists
        .flat_map(named)
        .chain(not.map(|n| ("not".to_owned(), n)))
}

/// Junctors (and the pattern) of a value validation; the int-or-string
/// `anyOf` (at `v` or its `allOf[0]`) may name types.
fn value_validation(v: &Value, skip: (bool, bool), lvl: Level, p: &str, m: &mut Msgs) {
    for (name, b) in junctors(v).filter(|(n, _)| !(skip.0 && n.starts_with("anyOf"))) {
        let skip_any_of = skip.1 && name == "allOf[0]";
        nested(b, skip_any_of, lvl, &child(p, &name), m);
    }
    let pattern = text(v, "pattern");
    if let Some(e) = Some(pattern)
        .filter(|p| !p.is_empty())
        .and_then(|p| Regex::new(p).err())
    {
        let d = format!(
            "must be a valid regular expression, but isn't: {}",
            re_error(&e)
        );
        m.invalid(&child(p, "pattern"), &go_quote(pattern), &d);
    }
}

/// A schema under `allOf`/`anyOf`/`oneOf`/`not` may only validate values.
fn nested(v: &Value, skip_any_of: bool, lvl: Level, p: &str, m: &mut Msgs) {
    value_validation(v, (skip_any_of, false), lvl, p, m);
    if let Some(it) = items(v) {
        nested(it, false, lvl, &child(p, "items"), m);
    }
    let pp = child(p, "properties");
    for (k, f) in props(v).into_iter().flatten() {
        nested(f, false, Level::Field, &key(&pp, k), m);
    }
    let (empty, undefined, no) = ("must be empty", "must be undefined", "must be false");
    let checks = [
        ("type", !ty(v).is_empty(), empty),
        ("additionalProperties", additional(v).is_some(), undefined),
        ("default", default_of(v).is_some(), undefined),
        ("title", !text(v, "title").is_empty(), empty),
        ("description", !text(v, "description").is_empty(), empty),
        ("nullable", flag(v, "nullable"), no),
        (PRESERVE, flag(v, PRESERVE), no),
        (EMBEDDED, flag(v, EMBEDDED), no),
        (INT_OR_STRING, flag(v, INT_OR_STRING), no),
        (LIST_KEYS, !list(v, LIST_KEYS).is_empty(), empty),
        (LIST_TYPE, present(v, LIST_TYPE), undefined),
        (MAP_TYPE, present(v, MAP_TYPE), undefined),
        (CEL, !list(v, CEL).is_empty(), empty),
    ];
    for (k, _, detail) in checks.into_iter().filter(|c| c.1) {
        m.forbidden(&child(p, k), &format!("{detail} to be structural"));
    }
    if prop(v, "metadata").is_some() {
        let d = "must not be specified in a nested context";
        m.forbidden(&key(&pp, "metadata"), d);
    }
}

/// Every property a value validation of the root names must be specified
/// (kube checks the root's junctors only).
fn completeness(v: &Value, s: &Value, sp: &str, vp: &str, m: &mut Msgs) {
    for (name, b) in junctors(v) {
        complete_nested(b, Some(s), sp, &child(vp, &name), m);
    }
}

fn complete_nested(v: &Value, s: Option<&Value>, sp: &str, vp: &str, m: &mut Msgs) {
    let Some(s) = s else {
        return m.required(sp, &format!("because it is defined in {vp}"));
    };
    completeness(v, s, sp, vp, m);
    if let Some(vi) = items(v) {
        complete_nested(vi, items(s), &child(sp, "items"), &child(vp, "items"), m);
    }
    let (spp, vpp) = (child(sp, "properties"), child(vp, "properties"));
    for (k, f) in props(v).into_iter().flatten() {
        complete_nested(f, prop(s, k), &key(&spp, k), &key(&vpp, k), m);
    }
}

/// kube's `ValidateDefaults`: each default (outside additionalProperties)
/// must be pruned already and valid against the schema it sits in.
fn defaults(s: &Value, p: &str, resource_root: bool, inside_meta: bool, m: &mut Msgs) {
    let emb = resource_root || flag(s, EMBEDDED);
    let inside_meta = inside_meta && !emb;
    if let Some(d) = default_of(s) {
        let dp = child(p, "default");
        let (mut pruned, mut unknown) = (d.clone(), Vec::new());
        prune_at(&mut pruned, Some(s), emb, &mut String::new(), &mut unknown);
        if !inside_meta && pruned != *d {
            m.invalid(&dp, &bad(d), "must not have unknown fields");
        }
        let mut fails = Vec::new();
        node(s, d, "", false, &mut Cx::default(), &mut fails);
        let causes = fails.iter().map(|f| f.cause(&dp));
        m.0.extend(causes.map(|c| format!("{}: {}", c.field, c.message)));
    }
    if let Some(it) = items(s) {
        defaults(it, &child(p, "items"), false, inside_meta, m);
    }
    let pp = child(p, "properties");
    for (k, f) in props(s).into_iter().flatten() {
        let meta = inside_meta || (emb && META.contains(&k.as_str()));
        defaults(f, &key(&pp, k), false, meta, m);
    }
}

/// Where a schema sits: whether `default` is refused there (and why), and
/// whether it describes a resource's TypeMeta/ObjectMeta.
#[derive(Clone, Default)]
struct Ssv {
    no_defaults: Option<String>,
    inside_meta: bool,
}

/// kube's `ValidateCustomResourceDefinitionOpenAPISchema` for v1.
fn openapi(s: &Value, p: &str, ssv: &Ssv, root: bool, m: &mut Msgs) {
    let (tp, ip, app) = (
        child(p, "type"),
        child(p, "items"),
        child(p, "additionalProperties"),
    );
    match s.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t.is_empty() || TYPES.contains(&t.as_str()) => {}
        Some(t) => m.unsupported(&tp, &bad(t), &TYPES),
    }
    if let (Some(_), Some(why)) = (default_of(s), &ssv.no_defaults) {
        m.forbidden(&child(p, "default"), &format!("must not be set {why}"));
    }
    for k in [
        "id",
        "additionalItems",
        "patternProperties",
        "definitions",
        "dependencies",
        "$ref",
    ] {
        let set = match s.get(k) {
            None | Some(Value::Null) => false,
            Some(Value::String(t)) => !t.is_empty(),
            Some(Value::Object(o)) => {
                !o.is_empty() || !matches!(k, "patternProperties" | "definitions")
            }
            Some(_) => true,
        };
        if set {
            m.forbidden(&child(p, k), &format!("{k} is not supported"));
        }
    }
    if ty(s) == "null" {
        m.forbidden(&tp, NO_NULL_TYPE);
    }
    if s.get("items").is_some_and(Value::is_array) {
        m.forbidden(&ip, "items must be a schema object and not an array");
    }
    if ssv.inside_meta && flag(s, EMBEDDED) {
        let d = "must not be used inside of resource meta";
        m.forbidden(&child(p, EMBEDDED), d);
    }
    if flag(s, "uniqueItems") {
        m.forbidden(&child(p, "uniqueItems"), UNIQUE_ITEMS);
    }
    if let Some(ap) = additional(s) {
        let closed = s.get("additionalProperties") == Some(&Value::Bool(false));
        if props(s).is_some_and(|o| !o.is_empty()) && (ap.is_some() || closed) {
            m.forbidden(
                &app,
                "additionalProperties and properties are mutual exclusive",
            );
        }
        if let Some(ap) = ap {
            let mut sub = ssv.clone();
            if ssv.inside_meta {
                sub.no_defaults = Some(META_MAP_DEFAULT.into());
            }
            openapi(ap, &app, &sub, false, m);
        }
    }
    let pp = child(p, "properties");
    for (k, f) in props(s).into_iter().flatten() {
        let mut sub = ssv.clone();
        if (root || flag(s, EMBEDDED)) && META.contains(&k.as_str()) {
            sub.inside_meta = true;
            if root {
                sub.no_defaults = Some(format!("in top-level {k}"));
            }
        }
        openapi(f, &key(&pp, k), &sub, false, m);
    }
    for (name, b) in junctors(s) {
        openapi(b, &child(p, &name), ssv, false, m);
    }
    match s.get("items") {
        Some(Value::Array(a)) => {
            for (i, it) in a.iter().enumerate() {
                openapi(it, &key(&ip, i), ssv, false, m);
            }
        }
        Some(it) if it.is_object() => openapi(it, &ip, ssv, false, m),
        _ => {}
    }
    extensions(s, p, m);
    if !list(s, CEL).is_empty() {
        m.forbidden(&child(p, CEL), NO_CEL);
    }
}

/// The `x-kubernetes-*` vendor extensions agree with the schema they sit in.
fn extensions(s: &Value, p: &str, m: &mut Msgs) {
    let (t, tp, ip) = (ty(s), child(p, "type"), child(p, "items"));
    let (kp, ltp) = (child(p, LIST_KEYS), child(p, LIST_TYPE));
    if s.get(PRESERVE) == Some(&Value::Bool(false)) {
        m.invalid(&child(p, PRESERVE), "false", "must be true or undefined");
    }
    if let Some(mt) = s.get(MAP_TYPE).filter(|v| !v.is_null()) {
        if t != "object" {
            m.typed(
                &tp,
                t,
                "must be object if x-kubernetes-map-type is specified",
            );
        }
        if !matches!(mt.as_str(), Some("atomic" | "granular")) {
            m.unsupported(&child(p, MAP_TYPE), &bad(mt), &["atomic", "granular"]);
        }
    }
    let lt = s.get(LIST_TYPE).filter(|v| !v.is_null());
    let lts = lt.and_then(Value::as_str);
    if lt.is_some() && t != "array" {
        m.typed(
            &tp,
            t,
            "must be array if x-kubernetes-list-type is specified",
        );
    } else if let (Some("set"), Some(is)) = (lts, items(s)) {
        let inner = is.get(LIST_TYPE).filter(|l| !l.is_null());
        let shown = inner.map_or_else(|| "null".to_owned(), bad);
        match ty(is) {
            "array" if inner.is_some_and(|l| l.as_str() != Some("atomic")) => {
                m.invalid(&child(&ip, LIST_TYPE), &shown, SET_ATOMIC);
            }
            "object" if text(is, MAP_TYPE) != "atomic" => {
                m.invalid(&child(&ip, MAP_TYPE), &shown, SET_ATOMIC);
            }
            _ => {}
        }
    }
    if let Some(lt) = lt.filter(|_| !matches!(lts, Some("atomic" | "set" | "map"))) {
        m.unsupported(&ltp, &bad(lt), &["atomic", "set", "map"]);
    }
    let keys = list(s, LIST_KEYS);
    let shown = Value::from(keys.to_vec()).to_string();
    if !keys.is_empty() && lts != Some("map") {
        let d = "must be map if x-kubernetes-list-map-keys is non-empty";
        match lt {
            None => m.required(&ltp, d),
            Some(l) => m.invalid(&ltp, &bad(l), d),
        }
    }
    if lts == Some("map") {
        if keys.is_empty() {
            m.required(&kp, "must not be empty if x-kubernetes-list-type is map");
        }
        match s.get("items") {
            None | Some(Value::Null) => m.required(&ip, MAP_ITEMS_NEEDED),
            Some(a @ Value::Array(_)) => m.invalid(&ip, &bad(a), MAP_ITEMS_ONE),
            Some(is) if ty(is) != "object" => {
                let t = go_quote(ty(is));
                m.invalid(&child(&ip, "type"), &t, MAP_ITEMS_OBJECT);
            }
            Some(is) => {
                let mut seen = BTreeSet::new();
                for k in keys.iter().map(|k| k.as_str().unwrap_or("")) {
                    match prop(is, k).map(ty) {
                        Some("array" | "object") => {
                            let at = child(&key(&child(&ip, "properties"), k), "type");
                            m.invalid(&at, "\"object\"", MAP_KEY_SCALAR);
                        }
                        Some(_) => {}
                        None => m.invalid(&kp, &shown, MAP_KEY_UNKNOWN),
                    }
                    if !seen.insert(k) {
                        m.invalid(&kp, &shown, "must not contain duplicate entries");
                    }
                }
            }
        }
    }
    let Some((l, is)) = lts.filter(|l| matches!(*l, "set" | "map")).zip(items(s)) else {
        return;
    };
    if flag(is, "nullable") {
        let d = format!("cannot be nullable when x-kubernetes-list-type is {l}");
        m.forbidden(&child(&ip, "nullable"), &d);
    }
    let required = list(is, "required");
    for k in keys.iter().filter_map(Value::as_str).filter(|_| l == "map") {
        let Some(f) = prop(is, k) else { continue };
        let at = key(&child(&ip, "properties"), k);
        if !required.iter().any(|r| r.as_str() == Some(k)) && default_of(f).is_none() {
            m.required(&child(&at, "default"), MAP_KEY_DEFAULT);
        }
        if flag(f, "nullable") {
            m.forbidden(&child(&at, "nullable"), MAP_KEY_NULLABLE);
        }
    }
}

// ---- pruning and defaulting ----------------------------------------------------

/// Drops what the schema does not specify, as kube-apiserver prunes a
/// custom object: unknown fields go unless `x-kubernetes-preserve-unknown-fields`
/// holds at that node; `additionalProperties` keeps every key (a boolean
/// `additionalProperties` keeps only scalars below it, as in kube);
/// `x-kubernetes-embedded-resource` objects keep apiVersion, kind and
/// metadata, and so does the root. Then, as kube does at the same step,
/// `null`s of non-nullable fields without a default are dropped (not
/// reported). Returns the pruned fields, `spec.foo`, `spec.list[0].bar`,
/// sorted — kube's form, the one `server::fields` uses for built-in kinds.
pub fn prune(schema: &Value, object: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    prune_at(object, Some(schema), true, &mut String::new(), &mut out);
    drop_nulls(object, Some(schema));
    out.sort();
    out
}

fn prune_at(
    x: &mut Value,
    s: Option<&Value>,
    resource_root: bool,
    path: &mut String,
    out: &mut Vec<String>,
) {
    let emb = resource_root || s.is_some_and(|s| flag(s, EMBEDDED));
    let len = path.len();
    match x {
        Value::Object(m) => {
            let Some(s) = s else {
                out.extend(m.keys().map(|k| child(path, k)));
                m.clear();
                return;
            };
            let (props, ap, keep) = (props(s), additional(s), flag(s, PRESERVE));
            m.retain(|k, v| {
                if emb && META.contains(&k.as_str()) {
                    return true;
                }
                let sub = match (props.and_then(|p| p.get(k)), ap) {
                    (Some(p), _) => Some(p),
                    (None, Some(ap)) => ap,
                    (None, None) => {
                        if !keep && (!META.contains(&k.as_str()) || !path.is_empty()) {
                            out.push(child(path, k));
                        }
                        return keep;
                    }
                };
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                prune_at(v, sub, false, path, out);
                path.truncate(len);
                true
            });
        }
        Value::Array(a) => {
            let it = s.and_then(items);
            for (i, v) in a.iter_mut().enumerate() {
                let _ = write!(path, "[{i}]");
                prune_at(v, it, false, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// kube's `PruneNonNullableNullsWithoutDefaults`.
fn drop_nulls(x: &mut Value, s: Option<&Value>) {
    match x {
        Value::Object(m) => m.retain(|k, v| {
            let sub = s.and_then(|s| prop(s, k).or_else(|| additional(s).flatten()));
            if v.is_null() && sub.is_some_and(|f| !flag(f, "nullable") && default_of(f).is_none()) {
                return false;
            }
            drop_nulls(v, sub);
            true
        }),
        Value::Array(a) => {
            let it = s.and_then(items);
            for v in a {
                drop_nulls(v, it);
            }
        }
        _ => {}
    }
}

/// Fills absent fields that have a `default`, as kube-apiserver's
/// structural defaulting does: recursively, inside array items and
/// `additionalProperties` values, a defaulted object defaulted further,
/// and a `null` in a non-nullable field with a default replaced by it.
pub fn apply_defaults(schema: &Value, object: &mut Value) {
    match object {
        Value::Object(m) => {
            for (k, f) in props(schema).into_iter().flatten() {
                let Some(d) = default_of(f) else { continue };
                match m.get(k) {
                    None => {
                        m.insert(k.clone(), d.clone());
                    }
                    Some(Value::Null) if !flag(f, "nullable") => {
                        m.insert(k.clone(), d.clone());
                    }
                    _ => {}
                }
            }
            let ap = additional(schema).flatten();
            for (k, v) in m.iter_mut() {
                if let Some(f) = prop(schema, k) {
                    apply_defaults(f, v);
                } else if let Some(ap) = ap {
                    default_null(ap, v);
                    apply_defaults(ap, v);
                }
            }
        }
        Value::Array(a) => {
            if let Some(it) = items(schema) {
                for v in a {
                    default_null(it, v);
                    apply_defaults(it, v);
                }
            }
        }
        _ => {}
    }
}

fn default_null(s: &Value, v: &mut Value) {
    if v.is_null()
        && !flag(s, "nullable")
        && let Some(d) = default_of(s)
    {
        *v = d.clone();
    }
}

// ---- validation of custom objects ------------------------------------------------

/// Validates a custom object as kube-apiserver does (kube-openapi's schema
/// validator, then `x-kubernetes-list-type` set/map uniqueness). Fields
/// are as kube gives them (`spec.replicas`; `<nil>` for `anyOf`/`oneOf`/
/// `allOf`/`not` failures, which name no field); messages carry no field
/// prefix. The root's apiVersion, kind and metadata are left to the caller.
pub fn validate(schema: &Value, object: &Value) -> Vec<Cause> {
    let mut fails = Vec::new();
    node(schema, object, "", true, &mut Cx::default(), &mut fails);
    let mut out: Vec<Cause> = fails.iter().map(|f| f.cause("")).collect();
    lists(schema, object, "", true, &mut out);
    out
}

/// One kube-openapi failure; `name` is its path as kube-openapi spells it.
struct Fail {
    name: String,
    kind: Kind,
    msg: String,
}

enum Kind {
    /// The bad value is the value's type name (or the string, for a format).
    Type(String),
    Required,
    Enum(String, Vec<String>),
    TooLong(u64),
    TooMany(u64, u64),
    /// The bad value, already rendered.
    Invalid(String),
    /// A junctor's failure: no field.
    Composite,
}

impl Fail {
    fn new(name: &str, kind: Kind, msg: String) -> Self {
        Fail {
            name: name.to_owned(),
            kind,
            msg,
        }
    }

    /// kube's `ValidateCustomResource` conversion to a field error under `base`.
    fn cause(&self, base: &str) -> Cause {
        let name = self.name.strip_prefix('.').unwrap_or(&self.name);
        let field = match self.kind {
            Kind::Composite => base.to_owned(),
            _ if name.is_empty() => base.to_owned(),
            _ => child(base, name),
        };
        let field = if field.is_empty() { "<nil>" } else { &field };
        let reason = match self.kind {
            Kind::Type(_) => "FieldValueTypeInvalid",
            Kind::Required => "FieldValueRequired",
            Kind::Enum(..) => "FieldValueNotSupported",
            Kind::TooLong(_) => "FieldValueTooLong",
            Kind::TooMany(..) => "FieldValueTooMany",
            Kind::Invalid(_) | Kind::Composite => "FieldValueInvalid",
        };
        let (m, s) = (&self.msg, |n: u64| if n == 1 { "" } else { "s" });
        let message = match &self.kind {
            Kind::Type(v) => format!("Invalid value: {}: {m}", go_quote(v)),
            Kind::Required => "Required value".to_owned(),
            Kind::Enum(v, ok) => {
                format!("Unsupported value: {v}: supported values: {}", quoted(ok))
            }
            Kind::TooLong(n) => format!("Too long: may not be more than {n} byte{}", s(*n)),
            Kind::TooMany(a, n) => format!("Too many: {a}: must have at most {n} item{}", s(*n)),
            Kind::Invalid(v) => format!("Invalid value: {v}: {m}"),
            Kind::Composite => format!("Invalid value: \"\": {m}"),
        };
        Cause::new(reason, field, message)
    }
}

fn type_fail(path: &str, want: &str, got: &str) -> Fail {
    let msg = format!("{path} in body must be of type {want}: {}", go_quote(got));
    Fail::new(path, Kind::Type(got.to_owned()), msg)
}

/// A junctor's failure, which names no field.
fn composite(path: &str, what: &str) -> Fail {
    Fail::new("", Kind::Composite, format!("{} {what}", go_quote(path)))
}

/// Compiled `pattern`s of one validation.
#[derive(Default)]
struct Cx {
    patterns: HashMap<String, Result<Regex, String>>,
}

/// kube-openapi's `SchemaValidator` on one value (type, junctors, string,
/// format, number, array, enum, object checks, in that order); returns how
/// many schema nodes matched, to pick the closest failing `anyOf` branch.
fn node(s: &Value, d: &Value, path: &str, root: bool, cx: &mut Cx, out: &mut Vec<Fail>) -> usize {
    let types: Vec<&str> = if flag(s, INT_OR_STRING) {
        vec!["integer", "string"]
    } else {
        Some(ty(s)).filter(|t| !t.is_empty()).into_iter().collect()
    };
    if d.is_null() {
        if !types.is_empty() && !flag(s, "nullable") {
            out.push(type_fail(path, &types.join(","), "null"));
        }
        enum_check(s, d, path, out);
        return 1;
    }
    type_check(s, &types, d, path, out);
    let mut n = 1 + junctor_checks(s, d, path, cx, out);
    match d {
        Value::String(v) => strings(s, v, path, cx, out),
        Value::Number(_) => numbers(s, d, path, out),
        Value::Array(a) => {
            if let Some(it) = items(s) {
                for (i, e) in a.iter().enumerate() {
                    n += node(it, e, &format!("{path}[{i}]"), false, cx, out);
                }
            }
            array_limits(s, a, path, out);
        }
        _ => {}
    }
    enum_check(s, d, path, out);
    if let Value::Object(m) = d {
        n += object(s, m, path, root, cx, out);
    }
    n
}

fn type_check(s: &Value, types: &[&str], d: &Value, path: &str, out: &mut Vec<Fail>) {
    if types.is_empty() {
        return;
    }
    let (got, got_format) = match d {
        Value::Bool(_) => ("boolean", ""),
        Value::Number(n) if n.is_i64() => ("integer", "int64"),
        Value::Number(_) => ("number", "double"),
        Value::String(_) => ("string", ""),
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
        Value::Null => ("null", ""),
    };
    let integral = d.as_f64().is_some_and(|f| f.fract() == 0.0);
    let ok = types.contains(&got)
        || (got == "number" && integral && types.contains(&"integer"))
        || (got == "integer" && types.contains(&"number"));
    let format = text(s, "format");
    if !d.is_string() && !d.is_array() && !format.is_empty() && !ok && got_format != format {
        out.push(type_fail(path, format, got_format));
    } else if !ok {
        out.push(type_fail(path, &types.join(","), got));
    }
}

fn run(s: &Value, d: &Value, path: &str, cx: &mut Cx) -> (usize, Vec<Fail>) {
    let mut fails = Vec::new();
    let n = node(s, d, path, false, cx, &mut fails);
    (n, fails)
}

/// `anyOf`, `oneOf`, `allOf` and `not`, as kube-openapi reports them: a
/// field-less failure plus the errors of the closest branch.
fn junctor_checks(s: &Value, d: &Value, path: &str, cx: &mut Cx, out: &mut Vec<Fail>) -> usize {
    let mut n = 0;
    let any_of = list(s, "anyOf");
    if !any_of.is_empty() {
        let mut best: Option<(usize, Vec<Fail>)> = None;
        let mut passed = false;
        for b in any_of {
            let (c, fails) = run(b, d, path, cx);
            n += c;
            if fails.is_empty() {
                passed = true;
                best = None;
                break;
            }
            if best.as_ref().is_none_or(|(bc, _)| c > *bc) {
                best = Some((c, fails));
            }
        }
        if !passed {
            out.push(composite(path, "must validate at least one schema (anyOf)"));
        }
        out.extend(best.map(|b| b.1).into_iter().flatten());
    }
    let one_of = list(s, "oneOf");
    if !one_of.is_empty() {
        let (mut valid, mut best) = (0, None::<(usize, Vec<Fail>)>);
        for b in one_of {
            let (c, fails) = run(b, d, path, cx);
            n += c;
            if fails.is_empty() {
                valid += 1;
                best = None;
            } else if valid == 0 && best.as_ref().is_none_or(|(bc, _)| c > *bc) {
                best = Some((c, fails));
            }
        }
        if valid != 1 {
            let found = match valid {
                0 => "Found none valid".to_owned(),
                n => format!("Found {n} valid alternatives"),
            };
            let what = format!("must validate one and only one schema (oneOf). {found}");
            out.push(composite(path, &what));
            out.extend(best.map(|b| b.1).into_iter().flatten());
        }
    }
    let all_of = list(s, "allOf");
    if !all_of.is_empty() {
        let mut valid = 0;
        for b in all_of {
            let (c, fails) = run(b, d, path, cx);
            n += c;
            valid += usize::from(fails.is_empty());
            out.extend(fails);
        }
        if valid != all_of.len() {
            let none = if valid == 0 { ". None validated" } else { "" };
            let what = format!("must validate all the schemas (allOf){none}");
            out.push(composite(path, &what));
        }
    }
    if let Some(not) = s.get("not").filter(|v| v.is_object()) {
        let (c, fails) = run(not, d, path, cx);
        n += c;
        if fails.is_empty() {
            out.push(composite(path, "must not validate the schema (not)"));
        }
    }
    n
}

fn strings(s: &Value, v: &str, path: &str, cx: &mut Cx, out: &mut Vec<Fail>) {
    let chars = v.chars().count() as u64;
    if let Some(max) = count(s, "maxLength").filter(|max| chars > *max) {
        out.push(Fail::new(path, Kind::TooLong(max), String::new()));
    }
    if let Some(min) = count(s, "minLength").filter(|min| chars < *min) {
        let msg = format!("{path} in body should be at least {min} chars long");
        out.push(Fail::new(path, Kind::Invalid(go_quote(v)), msg));
    }
    let pattern = text(s, "pattern");
    if !pattern.is_empty() {
        let compiled = cx
            .patterns
            .entry(pattern.to_owned())
            .or_insert_with(|| Regex::new(pattern).map_err(|e| re_error(&e)));
        let msg = match compiled {
            Ok(re) if re.is_match(v) => None,
            Ok(_) => Some(format!("{path} in body should match '{pattern}'")),
            Err(e) => Some(format!(
                "{path} in body should match '{pattern}, but pattern is invalid: {e}'"
            )),
        };
        if let Some(msg) = msg {
            out.push(Fail::new(path, Kind::Invalid(go_quote(v)), msg));
        }
    }
    let format = text(s, "format");
    if !format_ok(format, v) {
        out.push(type_fail(path, format, v));
    }
}

fn numbers(s: &Value, d: &Value, path: &str, out: &mut Vec<Fail>) {
    let int = d.as_i64();
    let f = d.as_f64().unwrap_or(0.0);
    let shown = bad(d);
    if let Some(m) = num(s, "multipleOf") {
        // kube-openapi compares integers with the factor truncated to an integer.
        let mi = m as i64;
        let (factor, fails) = match int {
            Some(i) if mi != 0 => (mi.to_string(), mi > 0 && i % mi != 0),
            _ => {
                let mult = if m < 1.0 { 1.0 / m * f } else { f / m };
                (go_float(m), m >= 0.0 && !json_integer(mult))
            }
        };
        if m < 0.0 {
            let msg = format!("factor MultipleOf declared for {path} must be positive: {factor}");
            out.push(Fail::new(path, Kind::Invalid(factor), msg));
        } else if fails {
            let msg = format!("{path} in body should be a multiple of {factor}");
            out.push(Fail::new(path, Kind::Invalid(shown.clone()), msg));
        }
    }
    for (k, exclusive, below) in [
        ("maximum", "exclusiveMaximum", false),
        ("minimum", "exclusiveMinimum", true),
    ] {
        let Some(bound) = num(s, k) else { continue };
        let excl = flag(s, exclusive);
        let beyond = |o: Ordering| (excl && o.is_eq()) || if below { o.is_lt() } else { o.is_gt() };
        let (failed, shown_bound) = match int {
            Some(i) => (beyond(i.cmp(&(bound as i64))), (bound as i64).to_string()),
            None => (f.partial_cmp(&bound).is_some_and(beyond), go_float(bound)),
        };
        if failed {
            let rel = match (below, excl) {
                (false, false) => "less than or equal to",
                (false, true) => "less than",
                (true, false) => "greater than or equal to",
                (true, true) => "greater than",
            };
            let msg = format!("{path} in body should be {rel} {shown_bound}");
            out.push(Fail::new(path, Kind::Invalid(shown.clone()), msg));
        }
    }
}

/// go-openapi's `IsFloat64AJSONInteger`.
fn json_integer(f: f64) -> bool {
    if !f.is_finite() {
        return false;
    }
    let r = f.round();
    f == r || (f - r).abs() / (f.abs() + r.abs()) < 1e-9
}

fn array_limits(s: &Value, a: &[Value], path: &str, out: &mut Vec<Fail>) {
    let len = a.len() as u64;
    if let Some(min) = count(s, "minItems").filter(|min| len < *min) {
        let msg = format!("{path} in body should have at least {min} items");
        out.push(Fail::new(path, Kind::Invalid(len.to_string()), msg));
    }
    if let Some(max) = count(s, "maxItems").filter(|max| len > *max) {
        out.push(Fail::new(path, Kind::TooMany(len, max), String::new()));
    }
    if flag(s, "uniqueItems")
        && a.iter()
            .enumerate()
            .any(|(i, x)| a.iter().take(i).any(|y| y == x))
    {
        let msg = format!("{path} in body shouldn't contain duplicates");
        out.push(Fail::new(path, Kind::Invalid("\"\"".to_owned()), msg));
    }
}

fn enum_check(s: &Value, d: &Value, path: &str, out: &mut Vec<Fail>) {
    let allowed = list(s, "enum");
    let same =
        |e: &Value| e == d || matches!((e.as_f64(), d.as_f64()), (Some(x), Some(y)) if x == y);
    if allowed.is_empty() || (!d.is_null() && allowed.iter().any(same)) {
        return;
    }
    let names = allowed
        .iter()
        .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
        .collect();
    out.push(Fail::new(path, Kind::Enum(bad(d), names), String::new()));
}

fn object(
    s: &Value,
    m: &Map<String, Value>,
    path: &str,
    root: bool,
    cx: &mut Cx,
    out: &mut Vec<Fail>,
) -> usize {
    let len = m.len() as u64;
    if let Some(min) = count(s, "minProperties").filter(|min| len < *min) {
        let msg = format!("{path} in body should have at least {min} properties");
        out.push(Fail::new(path, Kind::Invalid(len.to_string()), msg));
        return 0;
    }
    if let Some(max) = count(s, "maxProperties").filter(|max| len > *max) {
        out.push(Fail::new(path, Kind::TooMany(len, max), String::new()));
        return 0;
    }
    let known = |k: &str| prop(s, k).is_some();
    let mut n = 0;
    match s.get("additionalProperties") {
        Some(Value::Bool(false)) => {
            for k in m.keys().filter(|k| !known(k)) {
                let msg = format!("{path}.{k} in body is a forbidden property");
                out.push(Fail::new(path, Kind::Invalid(go_quote(k)), msg));
            }
        }
        Some(ap) if ap.is_object() => {
            for (k, v) in m.iter().filter(|(k, _)| !known(k)) {
                n += node(ap, v, &format!("{path}.{k}"), false, cx, out);
            }
        }
        _ => {}
    }
    let skip = |k: &str| root && META.contains(&k);
    for (k, f) in props(s).into_iter().flatten().filter(|(k, _)| !skip(k)) {
        if let Some(v) = m.get(k) {
            n += node(f, v, &child(path, k), false, cx, out);
        }
    }
    for k in list(s, "required").iter().filter_map(Value::as_str) {
        if !skip(k) && !m.contains_key(k) {
            let at = format!("{path}.{k}");
            out.push(Fail::new(&at, Kind::Required, String::new()));
        }
    }
    n
}

/// kube's `ValidateListSetsAndMaps`: `set` items and `map` keys are unique.
fn lists(s: &Value, d: &Value, path: &str, root: bool, out: &mut Vec<Cause>) {
    match d {
        Value::Object(m) => {
            if let Some(Some(ap)) = additional(s) {
                for (k, v) in m {
                    lists(ap, v, &key(path, k), false, out);
                }
            }
            for (k, v) in m {
                if let Some(f) = prop(s, k).filter(|_| !(root && META.contains(&k.as_str()))) {
                    lists(f, v, &child(path, k), false, out);
                }
            }
        }
        Value::Array(a) => {
            let at = |i: usize| key(path, i);
            let dup = |i, shown| {
                Cause::new(
                    "FieldValueDuplicate",
                    &at(i),
                    format!("Duplicate value: {shown}"),
                )
            };
            match text(s, LIST_TYPE) {
                "set" => {
                    for i in second_sightings(a.iter().map(Value::to_string)) {
                        out.extend(a.get(i).map(|x| dup(i, bad(x))));
                    }
                }
                "map" => {
                    let scalar = a
                        .iter()
                        .enumerate()
                        .find(|(_, x)| !x.is_object() && !x.is_null());
                    if let Some((i, x)) = scalar {
                        let d = "must be an object for an array of list-type map";
                        let msg = format!("Invalid value: {}: {d}", bad(x));
                        out.push(Cause::new("FieldValueInvalid", &at(i), msg));
                    }
                    let names = list(s, LIST_KEYS).iter().filter_map(Value::as_str);
                    let key_of = |x: &Value| -> Value {
                        let kv = names
                            .clone()
                            .filter_map(|n| Some((n.to_owned(), x.get(n)?.clone())));
                        Value::Object(kv.collect())
                    };
                    let keys: Vec<Value> = a.iter().map(key_of).collect();
                    let dups = second_sightings(keys.iter().map(Value::to_string));
                    for i in dups.into_iter().filter(|_| scalar.is_none()) {
                        out.extend(keys.get(i).map(|k| dup(i, k.to_string())));
                    }
                }
                _ => {}
            }
            if let Some(it) = items(s) {
                for (i, v) in a.iter().enumerate() {
                    lists(it, v, &key(path, i), false, out);
                }
            }
        }
        _ => {}
    }
}

/// The indices where a value is seen for the second time.
fn second_sightings(values: impl Iterator<Item = String>) -> Vec<usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, v) in values.enumerate() {
        let times = seen.entry(v).or_insert(0);
        *times += 1;
        if *times == 2 {
            out.push(i);
        }
    }
    out
}

// ---- string formats ------------------------------------------------------------------

/// The string formats kube-apiserver checks that are cheap to check here;
/// any other format passes.
fn format_ok(format: &str, v: &str) -> bool {
    static TIME: OnceLock<Option<Regex>> = OnceLock::new();
    static UUID: OnceLock<Option<Regex>> = OnceLock::new();
    static MAC: OnceLock<Option<Regex>> = OnceLock::new();
    fn matching(cell: &OnceLock<Option<Regex>>, pattern: &str, v: &str) -> Option<Vec<String>> {
        let re = cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()?;
        let caps = re.captures(v)?;
        Some(
            caps.iter()
                .map(|c| c.map_or("", |c| c.as_str()).to_owned())
                .collect(),
        )
    }
    let uuid = |version: &str| {
        let pattern = r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?([0-9a-f])[0-9a-f]{3}-?([0-9a-f])[0-9a-f]{3}-?[0-9a-f]{12}$";
        matching(&UUID, pattern, v).is_some_and(|c| {
            let at = |i: usize| c.get(i).map_or("", String::as_str);
            version.is_empty() || (at(1) == version && (version == "3" || "89abAB".contains(at(2))))
        })
    };
    match format.replace(['-', '_'], "").as_str() {
        "datetime" => {
            let lower = v.to_lowercase();
            let mut parts = lower.split('t');
            let (Some(date), Some(time)) = (parts.next(), parts.next()) else {
                return false;
            };
            let pattern =
                r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$";
            let time = matching(&TIME, pattern, time);
            v.len() >= 4
                && is_date(date)
                && time.is_some_and(|c| {
                    let at = |i: usize| c.get(i).map_or("", String::as_str);
                    at(1) <= "23" && at(2) <= "59" && at(3) <= "59"
                })
        }
        "date" => is_date(v),
        "uuid" => uuid(""),
        "uuid3" => uuid("3"),
        "uuid4" => uuid("4"),
        "uuid5" => uuid("5"),
        "byte" => is_base64(v),
        "ipv4" => v.parse::<IpAddr>().is_ok() && v.contains('.'),
        "ipv6" => v.parse::<IpAddr>().is_ok() && v.contains(':'),
        "cidr" => v.split_once('/').is_some_and(|(ip, bits)| {
            let max = match ip.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => 32,
                Ok(IpAddr::V6(_)) => 128,
                Err(_) => return false,
            };
            !bits.is_empty()
                && bits.bytes().all(|b| b.is_ascii_digit())
                && bits.parse::<u32>().is_ok_and(|b| b <= max)
        }),
        "mac" => {
            let pattern = r"^(?:[[:xdigit:]]{2}(?:(?::[[:xdigit:]]{2}){5}|(?::[[:xdigit:]]{2}){7}|(?::[[:xdigit:]]{2}){19})|[[:xdigit:]]{2}(?:(?:-[[:xdigit:]]{2}){5}|(?:-[[:xdigit:]]{2}){7}|(?:-[[:xdigit:]]{2}){19})|[[:xdigit:]]{4}(?:(?:\.[[:xdigit:]]{4}){2}|(?:\.[[:xdigit:]]{4}){3}|(?:\.[[:xdigit:]]{4}){9}))$";
            matching(&MAC, pattern, v).is_some()
        }
        _ => true,
    }
}

/// `2006-01-02`, a real day.
fn is_date(v: &str) -> bool {
    let b = v.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return false;
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 0,
    };
    b.len() == 10 && b.get(4) == Some(&b'-') && b.get(7) == Some(&b'-') && (1..=days).contains(&d)
}

/// Standard, padded base64 (line breaks ignored), as Go's `StdEncoding`.
fn is_base64(v: &str) -> bool {
    let b: Vec<u8> = v.bytes().filter(|c| *c != b'\r' && *c != b'\n').collect();
    let body = b.iter().rposition(|c| *c != b'=').map_or(0, |i| i + 1);
    b.len().is_multiple_of(4)
        && b.len() - body <= 2
        && b.iter()
            .take(body)
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    const P: &str = "spec.versions[0].schema.openAPIV3Schema";

    /// A realistic CRD schema: the TrainingJob of an ML platform.
    fn training_job() -> Value {
        json!({
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "replicas": {"type": "integer", "format": "int32", "minimum": 0, "default": 1},
                        "image": {"type": "string", "minLength": 1, "pattern": "^[a-z0-9./:-]+$"},
                        "gpu": {
                            "type": "object",
                            "default": {},
                            "properties": {
                                "count": {"type": "integer", "minimum": 1, "maximum": 8, "default": 1},
                                "vendor": {"type": "string", "enum": ["nvidia", "amd"], "default": "nvidia"}
                            }
                        },
                        "resources": {
                            "type": "object",
                            "additionalProperties": {
                                "x-kubernetes-int-or-string": true,
                                "anyOf": [{"type": "integer"}, {"type": "string"}],
                                "pattern": "^[0-9]+(m|Mi|Gi)?$"
                            }
                        },
                        "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "ports": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "port": {"type": "integer", "minimum": 1, "maximum": 65535}
                                }
                            }
                        },
                        "tags": {
                            "type": "array",
                            "maxItems": 3,
                            "x-kubernetes-list-type": "set",
                            "items": {"type": "string"}
                        }
                    }
                },
                "status": {
                    "type": "object",
                    "properties": {
                        "replicas": {"type": "integer"},
                        "selector": {"type": "string"},
                        "phase": {"type": "string", "enum": ["Pending", "Running", "Succeeded", "Failed"]}
                    }
                }
            }
        })
    }

    fn job(spec: Value) -> Value {
        json!({
            "apiVersion": "ml.hami.io/v1",
            "kind": "TrainingJob",
            "metadata": {"name": "resnet", "namespace": "ml"},
            "spec": spec
        })
    }

    fn root(properties: Value) -> Value {
        json!({"type": "object", "properties": properties})
    }

    /// A cause as (field, reason, message).
    type Triple = (String, String, String);

    fn causes(schema: &Value, object: &Value) -> Vec<Triple> {
        validate(schema, object)
            .into_iter()
            .map(|c| (c.field, c.reason, c.message))
            .collect()
    }

    fn cause(field: &str, reason: &str, message: &str) -> Triple {
        (field.to_owned(), reason.to_owned(), message.to_owned())
    }

    #[test]
    fn the_training_job_schema_is_structural_and_its_defaults_valid() {
        assert_eq!(check_structural(&training_job(), P), Vec::<String>::new());
    }

    #[test]
    fn structural_rules_are_worded_as_kube_apiserver_words_them() {
        let cases: Vec<(Value, Vec<String>)> = vec![
            (
                root(json!({"spec": {"properties": {"a": {"type": "string"}}}})),
                vec![format!(
                    "{P}.properties[spec].type: Required value: must not be empty for specified object fields"
                )],
            ),
            (
                json!({"properties": {"spec": {"type": "object"}}}),
                vec![format!(
                    "{P}.type: Required value: must not be empty at the root"
                )],
            ),
            (
                root(json!({"list": {"type": "array", "items": {}}})),
                vec![format!(
                    "{P}.properties[list].items.type: Required value: must not be empty for specified array items"
                )],
            ),
            (
                root(json!({"list": {"type": "array"}})),
                vec![format!(
                    "{P}.properties[list].items: Required value: must be specified"
                )],
            ),
            (
                json!({"type": "string"}),
                vec![format!(
                    "{P}.type: Invalid value: \"string\": must be object at the root"
                )],
            ),
            (
                json!({"type": "object", "additionalProperties": {"type": "string"}}),
                vec![format!(
                    "{P}.additionalProperties: Forbidden: must not be used at the root"
                )],
            ),
            // preserve-unknown-fields and int-or-string nodes need no type
            (
                root(json!({"any": {"x-kubernetes-preserve-unknown-fields": true}})),
                vec![],
            ),
            (
                root(json!({"port": {"x-kubernetes-int-or-string": true}})),
                vec![],
            ),
            (
                root(json!({"port": {
                    "x-kubernetes-int-or-string": true,
                    "anyOf": [{"type": "integer"}, {"type": "string"}]
                }})),
                vec![],
            ),
            (
                root(json!({"port": {
                    "x-kubernetes-int-or-string": true,
                    "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"maximum": 9}]
                }})),
                vec![],
            ),
            (
                root(
                    json!({"port": {"type": "string", "anyOf": [{"type": "string", "maxLength": 3}]}}),
                ),
                vec![format!(
                    "{P}.properties[port].anyOf[0].type: Forbidden: must be empty to be structural"
                )],
            ),
            (
                root(json!({"spec": {
                    "type": "object",
                    "properties": {"a": {"type": "string"}},
                    "allOf": [{
                        "description": "d",
                        "nullable": true,
                        "additionalProperties": {"maxLength": 2},
                        "x-kubernetes-list-type": "set",
                        "properties": {"a": {"default": "x"}, "metadata": {}}
                    }]
                }})),
                vec![
                    format!(
                        "{P}.properties[spec].allOf[0].additionalProperties: Forbidden: must be undefined to be structural"
                    ),
                    format!(
                        "{P}.properties[spec].allOf[0].description: Forbidden: must be empty to be structural"
                    ),
                    format!(
                        "{P}.properties[spec].allOf[0].nullable: Forbidden: must be false to be structural"
                    ),
                    format!(
                        "{P}.properties[spec].allOf[0].properties[a].default: Forbidden: must be undefined to be structural"
                    ),
                    format!(
                        "{P}.properties[spec].allOf[0].properties[metadata]: Forbidden: must not be specified in a nested context"
                    ),
                    format!(
                        "{P}.properties[spec].allOf[0].x-kubernetes-list-type: Forbidden: must be undefined to be structural"
                    ),
                    // then the OpenAPI rules, which look inside junctors too
                    format!(
                        "{P}.properties[spec].allOf[0].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
                    ),
                    format!(
                        "{P}.properties[spec].allOf[0].type: Required value: must be array if x-kubernetes-list-type is specified"
                    ),
                ],
            ),
            (
                json!({
                    "type": "object",
                    "properties": {"spec": {"type": "object"}},
                    "anyOf": [{"required": ["spec"]}, {"properties": {"status": {"required": ["phase"]}}}]
                }),
                vec![format!(
                    "{P}.properties[status]: Required value: because it is defined in {P}.anyOf[1].properties[status]"
                )],
            ),
            (
                root(
                    json!({"metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 63}}}}),
                ),
                vec![],
            ),
            (
                root(
                    json!({"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}),
                ),
                vec![format!(
                    "{P}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
                )],
            ),
            (
                root(json!({"metadata": {"type": "string"}, "kind": {"type": "integer"}})),
                vec![
                    format!(
                        "{P}.properties[kind].type: Invalid value: \"integer\": must be string"
                    ),
                    format!(
                        "{P}.properties[metadata].type: Invalid value: \"string\": must be object"
                    ),
                ],
            ),
            (
                root(json!({"inner": {"x-kubernetes-embedded-resource": true}})),
                vec![
                    format!(
                        "{P}.properties[inner].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"
                    ),
                    format!(
                        "{P}.properties[inner].type: Required value: must be object if x-kubernetes-embedded-resource is true"
                    ),
                ],
            ),
            (
                root(json!({"inner": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": true,
                    "x-kubernetes-preserve-unknown-fields": true,
                    "properties": {"kind": {"type": "object"}}
                }})),
                vec![format!(
                    "{P}.properties[inner].properties[kind].type: Invalid value: \"object\": must be string"
                )],
            ),
            (
                root(
                    json!({"v": {"x-kubernetes-int-or-string": true, "x-kubernetes-preserve-unknown-fields": true}}),
                ),
                vec![format!(
                    "{P}.properties[v].x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if x-kubernetes-int-or-string is true"
                )],
            ),
            (
                root(json!({"name": {"type": "string", "pattern": "[a-"}})),
                vec![format!(
                    "{P}.properties[name].pattern: Invalid value: \"[a-\": must be a valid regular expression, but isn't: error parsing regexp: unclosed character class"
                )],
            ),
        ];
        for (schema, want) in cases {
            assert_eq!(check_structural(&schema, P), want, "{schema}");
        }
    }

    #[test]
    fn openapi_and_extension_rules_follow_the_structural_ones() {
        let cases: Vec<(Value, Vec<String>)> = vec![
            (
                root(json!({"spec": {"$ref": "#/definitions/Spec"}})),
                vec![
                    format!(
                        "{P}.properties[spec].type: Required value: must not be empty for specified object fields"
                    ),
                    format!("{P}.properties[spec].$ref: Forbidden: $ref is not supported"),
                ],
            ),
            (
                root(
                    json!({"spec": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}}),
                ),
                vec![format!(
                    "{P}.properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
                )],
            ),
            (
                root(
                    json!({"spec": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}}),
                ),
                vec![format!(
                    "{P}.properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
                )],
            ),
            (
                root(
                    json!({"spec": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": true}}),
                ),
                vec![],
            ),
            (
                root(
                    json!({"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true}}),
                ),
                vec![format!(
                    "{P}.properties[tags].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
                )],
            ),
            (
                root(json!({"a": {"type": "str"}})),
                vec![format!(
                    "{P}.properties[a].type: Unsupported value: \"str\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\""
                )],
            ),
            (
                root(json!({"a": {"type": "null"}})),
                vec![
                    format!(
                        "{P}.properties[a].type: Unsupported value: \"null\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\""
                    ),
                    format!(
                        "{P}.properties[a].type: Forbidden: type cannot be set to null, use nullable as an alternative"
                    ),
                ],
            ),
            (
                root(
                    json!({"a": {"type": "object", "x-kubernetes-preserve-unknown-fields": false}}),
                ),
                vec![format!(
                    "{P}.properties[a].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"
                )],
            ),
            (
                root(json!({"a": {"type": "object", "x-kubernetes-map-type": "loose"}})),
                vec![format!(
                    "{P}.properties[a].x-kubernetes-map-type: Unsupported value: \"loose\": supported values: \"atomic\", \"granular\""
                )],
            ),
            (
                root(
                    json!({"l": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "bag"}}),
                ),
                vec![format!(
                    "{P}.properties[l].x-kubernetes-list-type: Unsupported value: \"bag\": supported values: \"atomic\", \"set\", \"map\""
                )],
            ),
            (
                root(json!({"o": {"type": "object", "x-kubernetes-list-type": "set"}})),
                vec![format!(
                    "{P}.properties[o].type: Invalid value: \"object\": must be array if x-kubernetes-list-type is specified"
                )],
            ),
            (
                root(
                    json!({"l": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-map-keys": ["a"]}}),
                ),
                vec![format!(
                    "{P}.properties[l].x-kubernetes-list-type: Required value: must be map if x-kubernetes-list-map-keys is non-empty"
                )],
            ),
            (
                root(json!({"l": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "items": {"type": "object", "properties": {"name": {"type": "string"}}}
                }})),
                vec![format!(
                    "{P}.properties[l].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
                )],
            ),
            (
                root(json!({"l": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name", "port"],
                    "items": {"type": "object", "properties": {"name": {"type": "string", "nullable": true}}}
                }})),
                vec![
                    format!(
                        "{P}.properties[l].x-kubernetes-list-map-keys: Invalid value: [\"name\",\"port\"]: entries must all be names of item properties"
                    ),
                    format!(
                        "{P}.properties[l].items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"
                    ),
                    format!(
                        "{P}.properties[l].items.properties[name].nullable: Forbidden: this property is in x-kubernetes-list-map-keys, so it cannot be nullable"
                    ),
                ],
            ),
            (
                root(json!({"l": {
                    "type": "array",
                    "x-kubernetes-list-type": "set",
                    "items": {"type": "object", "properties": {"a": {"type": "string"}}}
                }})),
                vec![format!(
                    "{P}.properties[l].items.x-kubernetes-map-type: Invalid value: null: must be atomic as item of a list with x-kubernetes-list-type=set"
                )],
            ),
            (
                root(
                    json!({"spec": {"type": "object", "x-kubernetes-validations": [{"rule": "self.a > 0"}]}}),
                ),
                vec![format!(
                    "{P}.properties[spec].x-kubernetes-validations: Forbidden: CEL validation rules are not supported by hami; remove x-kubernetes-validations or validate with a webhook"
                )],
            ),
            (
                json!({"type": "object", "nullable": true}),
                vec![format!(
                    "{P}.nullable: Forbidden: nullable cannot be true at the root"
                )],
            ),
            (
                root(
                    json!({"metadata": {"type": "object", "properties": {"name": {"type": "string", "default": "x"}}}}),
                ),
                vec![format!(
                    "{P}.properties[metadata].properties[name].default: Forbidden: must not be set in top-level metadata"
                )],
            ),
            (
                root(json!({"pod": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": true,
                    "properties": {"metadata": {"type": "object", "additionalProperties": {"type": "string", "default": "x"}}}
                }})),
                vec![format!(
                    "{P}.properties[pod].properties[metadata].additionalProperties.default: Forbidden: must not be set inside additionalProperties applying to object metadata"
                )],
            ),
        ];
        for (schema, want) in cases {
            assert_eq!(check_structural(&schema, P), want, "{schema}");
        }
    }

    #[test]
    fn defaults_must_be_pruned_and_valid_against_their_schema() {
        let cases: Vec<(Value, Vec<String>)> = vec![
            (
                root(
                    json!({"spec": {"type": "object", "properties": {"replicas": {"type": "integer", "default": "one"}}}}),
                ),
                vec![format!(
                    "{P}.properties[spec].properties[replicas].default: Invalid value: \"string\":  in body must be of type integer: \"string\""
                )],
            ),
            (
                root(
                    json!({"spec": {"type": "object", "default": {"a": 1, "b": 2}, "properties": {"a": {"type": "integer"}}}}),
                ),
                vec![format!(
                    "{P}.properties[spec].default: Invalid value: {{\"a\":1,\"b\":2}}: must not have unknown fields"
                )],
            ),
            (
                root(
                    json!({"gpu": {"type": "object", "default": {"count": "x"}, "properties": {"count": {"type": "integer"}}}}),
                ),
                vec![format!(
                    "{P}.properties[gpu].default.count: Invalid value: \"string\": count in body must be of type integer: \"string\""
                )],
            ),
            (
                root(json!({"v": {"type": "string", "enum": ["a", "b"], "default": "c"}})),
                vec![format!(
                    "{P}.properties[v].default: Unsupported value: \"c\": supported values: \"a\", \"b\""
                )],
            ),
            (
                root(json!({"n": {"type": "integer", "minimum": 1, "default": 0}})),
                vec![format!(
                    "{P}.properties[n].default: Invalid value: 0:  in body should be greater than or equal to 1"
                )],
            ),
            (
                root(
                    json!({"l": {"type": "array", "items": {"type": "object", "properties": {"p": {"type": "string", "default": 8}}}}}),
                ),
                vec![format!(
                    "{P}.properties[l].items.properties[p].default: Invalid value: \"integer\":  in body must be of type string: \"integer\""
                )],
            ),
            // structural errors come alone: defaults are not looked at
            (
                root(json!({"n": {"default": "x"}})),
                vec![format!(
                    "{P}.properties[n].type: Required value: must not be empty for specified object fields"
                )],
            ),
            (
                root(
                    json!({"cfg": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "default": {"any": {"thing": 1}}}}),
                ),
                vec![],
            ),
        ];
        for (schema, want) in cases {
            assert_eq!(check_structural(&schema, P), want, "{schema}");
        }
    }

    #[test]
    fn pruning_drops_unknown_fields_and_names_them() {
        let mut object = json!({
            "apiVersion": "ml.hami.io/v1",
            "kind": "TrainingJob",
            "metadata": {"name": "resnet", "labels": {"team": "vision"}},
            "spec": {
                "image": "resnet:1",
                "extra": 1,
                "gpu": {"count": 2, "colour": "red"},
                "resources": {"cpu": "2", "nvidia.com/gpu": 1},
                "config": {"anything": {"deep": true}},
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                "tags": ["a"]
            },
            "status": {"replicas": 1, "selector": "app=resnet", "bogus": true},
            "top": 1
        });
        let pruned = prune(&training_job(), &mut object);
        assert_eq!(
            pruned,
            [
                "spec.extra",
                "spec.gpu.colour",
                "spec.ports[0].protocol",
                "status.bogus",
                "top"
            ]
        );
        assert_eq!(
            object,
            json!({
                "apiVersion": "ml.hami.io/v1",
                "kind": "TrainingJob",
                "metadata": {"name": "resnet", "labels": {"team": "vision"}},
                "spec": {
                    "image": "resnet:1",
                    "gpu": {"count": 2},
                    "resources": {"cpu": "2", "nvidia.com/gpu": 1},
                    "config": {"anything": {"deep": true}},
                    "ports": [{"name": "http", "port": 80}],
                    "tags": ["a"]
                },
                "status": {"replicas": 1, "selector": "app=resnet"}
            })
        );
    }

    #[test]
    fn pruning_follows_embedded_resources_maps_and_preserved_subtrees() {
        let schema = root(json!({
            "template": {
                "type": "object",
                "x-kubernetes-embedded-resource": true,
                "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}
            },
            "loose": {"type": "object", "additionalProperties": true},
            "raw": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {"known": {"type": "object", "properties": {"k": {"type": "string"}}}}
            },
            "list": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}}
        }));
        let mut object = json!({
            "template": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "anything": 1},
                "spec": {"a": "x", "b": "y"},
                "extra": 1
            },
            "loose": {"a": 1, "b": {"c": 2}},
            "raw": {"free": {"x": 1}, "known": {"k": "v", "drop": 1}},
            "list": [{"n": "a"}, {"n": "b", "m": 1}],
            "apiVersion": "keep/v1"
        });
        let pruned = prune(&schema, &mut object);
        assert_eq!(
            pruned,
            [
                "list[1].m",
                "loose.b.c",
                "raw.known.drop",
                "template.extra",
                "template.spec.b"
            ]
        );
        assert_eq!(
            object,
            json!({
                "template": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "p", "anything": 1},
                    "spec": {"a": "x"}
                },
                "loose": {"a": 1, "b": {}},
                "raw": {"free": {"x": 1}, "known": {"k": "v"}},
                "list": [{"n": "a"}, {"n": "b"}],
                "apiVersion": "keep/v1"
            })
        );
    }

    #[test]
    fn pruning_drops_nulls_that_are_neither_nullable_nor_defaulted() {
        let schema = root(json!({
            "a": {"type": "string"},
            "b": {"type": "string", "nullable": true},
            "c": {"type": "integer", "default": 3},
            "m": {"type": "object", "additionalProperties": {"type": "string"}}
        }));
        let mut object = json!({"a": null, "b": null, "c": null, "m": {"x": null, "y": "z"}});
        assert_eq!(prune(&schema, &mut object), Vec::<String>::new());
        assert_eq!(object, json!({"b": null, "c": null, "m": {"y": "z"}}));
    }

    #[test]
    fn defaulting_fills_absent_and_null_fields_recursively() {
        let schema = training_job();
        let mut object = job(json!({"image": "resnet:1", "replicas": null}));
        apply_defaults(&schema, &mut object);
        assert_eq!(
            object["spec"],
            json!({"image": "resnet:1", "replicas": 1, "gpu": {"count": 1, "vendor": "nvidia"}})
        );

        // what is there stays; a present object is defaulted inside
        let mut object = job(json!({"image": "x", "replicas": 0, "gpu": {"vendor": "amd"}}));
        apply_defaults(&schema, &mut object);
        assert_eq!(
            object["spec"],
            json!({"image": "x", "replicas": 0, "gpu": {"count": 1, "vendor": "amd"}})
        );

        let schema = root(json!({
            "ports": {
                "type": "array",
                "items": {"type": "object", "default": {"port": 80}, "properties": {
                    "port": {"type": "integer"},
                    "protocol": {"type": "string", "default": "TCP"}
                }}
            },
            "limits": {
                "type": "object",
                "additionalProperties": {"type": "object", "properties": {"burst": {"type": "integer", "default": 2}}}
            },
            "note": {"type": "string", "nullable": true, "default": "n/a"}
        }));
        let mut object = json!({
            "ports": [{"port": 443}, null],
            "limits": {"cpu": {}, "gpu": {"burst": 5}},
            "note": null
        });
        apply_defaults(&schema, &mut object);
        assert_eq!(
            object,
            json!({
                "ports": [{"port": 443, "protocol": "TCP"}, {"port": 80, "protocol": "TCP"}],
                "limits": {"cpu": {"burst": 2}, "gpu": {"burst": 5}},
                "note": null
            })
        );
    }

    #[test]
    fn a_valid_training_job_passes() {
        let object = job(json!({
            "image": "registry.local/resnet:1",
            "replicas": 2,
            "gpu": {"count": 8, "vendor": "amd"},
            "resources": {"cpu": "500m", "memory": "2Gi", "nvidia.com/gpu": 1},
            "config": {"anything": [1, {"x": null}]},
            "ports": [{"name": "http", "port": 80}, {"name": "grpc", "port": 9090}],
            "tags": ["a", "b"]
        }));
        assert_eq!(causes(&training_job(), &object), []);
    }

    #[test]
    fn training_job_violations_are_reported_as_kube_apiserver_reports_them() {
        let cases: Vec<(Value, Vec<Triple>)> = vec![
            (
                json!({"image": "x", "replicas": "two"}),
                vec![cause(
                    "spec.replicas",
                    "FieldValueTypeInvalid",
                    "Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
                )],
            ),
            (
                json!({"image": "x", "replicas": -1}),
                vec![cause(
                    "spec.replicas",
                    "FieldValueInvalid",
                    "Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
                )],
            ),
            (
                json!({"replicas": 1}),
                vec![cause("spec.image", "FieldValueRequired", "Required value")],
            ),
            (
                json!({"image": "Bad Image"}),
                vec![cause(
                    "spec.image",
                    "FieldValueInvalid",
                    "Invalid value: \"Bad Image\": spec.image in body should match '^[a-z0-9./:-]+$'",
                )],
            ),
            (
                json!({"image": ""}),
                vec![
                    cause(
                        "spec.image",
                        "FieldValueInvalid",
                        "Invalid value: \"\": spec.image in body should be at least 1 chars long",
                    ),
                    cause(
                        "spec.image",
                        "FieldValueInvalid",
                        "Invalid value: \"\": spec.image in body should match '^[a-z0-9./:-]+$'",
                    ),
                ],
            ),
            (
                json!({"image": "x", "gpu": {"vendor": "intel", "count": 9}}),
                vec![
                    cause(
                        "spec.gpu.count",
                        "FieldValueInvalid",
                        "Invalid value: 9: spec.gpu.count in body should be less than or equal to 8",
                    ),
                    cause(
                        "spec.gpu.vendor",
                        "FieldValueNotSupported",
                        "Unsupported value: \"intel\": supported values: \"nvidia\", \"amd\"",
                    ),
                ],
            ),
            (
                json!({"image": "x", "gpu": null}),
                vec![cause(
                    "spec.gpu",
                    "FieldValueTypeInvalid",
                    "Invalid value: \"null\": spec.gpu in body must be of type object: \"null\"",
                )],
            ),
            (
                json!({"image": "x", "resources": {"cpu": true, "nvidia.com/gpu": "lots"}}),
                vec![
                    cause(
                        "spec.resources.cpu",
                        "FieldValueTypeInvalid",
                        "Invalid value: \"boolean\": spec.resources.cpu in body must be of type integer,string: \"boolean\"",
                    ),
                    cause(
                        "<nil>",
                        "FieldValueInvalid",
                        "Invalid value: \"\": \"spec.resources.cpu\" must validate at least one schema (anyOf)",
                    ),
                    cause(
                        "spec.resources.cpu",
                        "FieldValueTypeInvalid",
                        "Invalid value: \"boolean\": spec.resources.cpu in body must be of type integer: \"boolean\"",
                    ),
                    cause(
                        "spec.resources.nvidia.com/gpu",
                        "FieldValueInvalid",
                        "Invalid value: \"lots\": spec.resources.nvidia.com/gpu in body should match '^[0-9]+(m|Mi|Gi)?$'",
                    ),
                ],
            ),
            (
                json!({"image": "x", "tags": ["a", "b", "a", "c"]}),
                vec![
                    cause(
                        "spec.tags",
                        "FieldValueTooMany",
                        "Too many: 4: must have at most 3 items",
                    ),
                    cause(
                        "spec.tags[2]",
                        "FieldValueDuplicate",
                        "Duplicate value: \"a\"",
                    ),
                ],
            ),
            (
                json!({"image": "x", "ports": [{"name": "http", "port": 80}, {"name": "http", "port": 0}, {"port": 1}]}),
                vec![
                    cause(
                        "spec.ports[1].port",
                        "FieldValueInvalid",
                        "Invalid value: 0: spec.ports[1].port in body should be greater than or equal to 1",
                    ),
                    cause("spec.ports[2].name", "FieldValueRequired", "Required value"),
                    cause(
                        "spec.ports[1]",
                        "FieldValueDuplicate",
                        "Duplicate value: {\"name\":\"http\"}",
                    ),
                ],
            ),
        ];
        let schema = training_job();
        for (spec, want) in cases {
            assert_eq!(causes(&schema, &job(spec.clone())), want, "{spec}");
        }
        // the root's apiVersion, kind and metadata are the caller's
        let object = json!({"apiVersion": 1, "kind": [], "metadata": "x", "spec": {"image": "x"}});
        assert_eq!(causes(&schema, &object), []);
    }

    #[test]
    fn each_value_validation_has_kube_openapis_wording() {
        type Case = (
            Value,
            Value,
            Vec<(&'static str, &'static str, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (
                json!({"type": "object"}),
                json!(true),
                vec![(
                    "f",
                    "FieldValueTypeInvalid",
                    "Invalid value: \"boolean\": f in body must be of type object: \"boolean\"",
                )],
            ),
            (json!({"type": "integer"}), json!(2.0), vec![]),
            (
                json!({"type": "integer"}),
                json!(2.5),
                vec![(
                    "f",
                    "FieldValueTypeInvalid",
                    "Invalid value: \"number\": f in body must be of type integer: \"number\"",
                )],
            ),
            (json!({"type": "number"}), json!(2), vec![]),
            (
                json!({"type": "string", "nullable": true}),
                json!(null),
                vec![],
            ),
            (
                json!({"type": "string"}),
                json!(null),
                vec![(
                    "f",
                    "FieldValueTypeInvalid",
                    "Invalid value: \"null\": f in body must be of type string: \"null\"",
                )],
            ),
            (
                json!({"type": "string", "maxLength": 2}),
                json!("abc"),
                vec![(
                    "f",
                    "FieldValueTooLong",
                    "Too long: may not be more than 2 bytes",
                )],
            ),
            (
                json!({"type": "string", "maxLength": 1}),
                json!("ab"),
                vec![(
                    "f",
                    "FieldValueTooLong",
                    "Too long: may not be more than 1 byte",
                )],
            ),
            (
                json!({"type": "string", "minLength": 3}),
                json!("ab"),
                vec![(
                    "f",
                    "FieldValueInvalid",
                    "Invalid value: \"ab\": f in body should be at least 3 chars long",
                )],
            ),
            (
                json!({"type": "array", "items": {"type": "string"}, "minItems": 2}),
                json!(["a"]),
                vec![(
                    "f",
                    "FieldValueInvalid",
                    "Invalid value: 1: f in body should have at least 2 items",
                )],
            ),
            (
                json!({"type": "array", "items": {"type": "string"}, "maxItems": 1}),
                json!(["a", "b"]),
                vec![(
                    "f",
                    "FieldValueTooMany",
                    "Too many: 2: must have at most 1 item",
                )],
            ),
            (
                json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true}),
                json!(["a", "a"]),
                vec![(
                    "f",
                    "FieldValueInvalid",
                    "Invalid value: \"\": f in body shouldn't contain duplicates",
                )],
            ),
            (
                json!({"type": "array", "items": {"type": "integer"}}),
                json!([1, "x"]),
                vec![(
                    "f[1]",
                    "FieldValueTypeInvalid",
                    "Invalid value: \"string\": f[1] in body must be of type integer: \"string\"",
                )],
            ),
            (
                json!({"type": "object", "minProperties": 2}),
                json!({"a": 1}),
                vec![(
                    "f",
                    "FieldValueInvalid",
                    "Invalid value: 1: f in body should have at least 2 properties",
                )],
            ),
            (
                json!({"type": "object", "maxProperties": 1}),
                json!({"a": 1, "b": 2}),
                vec![(
                    "f",
                    "FieldValueTooMany",
                    "Too many: 2: must have at most 1 item",
                )],
            ),
            (
                json!({"type": "object", "additionalProperties": false}),
                json!({"a": 1}),
                vec![(
                    "f",
                    "FieldValueInvalid",
                    "Invalid value: \"a\": f.a in body is a forbidden property",
                )],
            ),
            (
                json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true}),
                json!(0),
                vec![(
                    "f",
                    "FieldValueInvalid",
                    "Invalid value: 0: f in body should be greater than 0",
                )],
            ),
            (
                json!({"type": "number", "maximum": 1.5, "exclusiveMaximum": true}),
                json!(1.5),
                vec![(
                    "f",
                    "FieldValueInvalid",
                    "Invalid value: 1.5: f in body should be less than 1.5",
                )],
            ),
            (
                json!({"type": "number", "maximum": 1000000}),
                json!(2000000.5),
                vec![(
                    "f",
                    "FieldValueInvalid",
                    "Invalid value: 2.0000005e+06: f in body should be less than or equal to 1e+06",
                )],
            ),
            (
                json!({"type": "integer", "multipleOf": 5}),
                json!(7),
                vec![(
                    "f",
                    "FieldValueInvalid",
                    "Invalid value: 7: f in body should be a multiple of 5",
                )],
            ),
            (
                json!({"type": "number", "multipleOf": 0.5}),
                json!(0.7),
                vec![(
                    "f",
                    "FieldValueInvalid",
                    "Invalid value: 0.7: f in body should be a multiple of 0.5",
                )],
            ),
            (
                json!({"type": "number", "multipleOf": 0.5}),
                json!(1.5),
                vec![],
            ),
            (
                json!({"type": "integer", "enum": [1, 2]}),
                json!(3),
                vec![(
                    "f",
                    "FieldValueNotSupported",
                    "Unsupported value: 3: supported values: \"1\", \"2\"",
                )],
            ),
            (
                json!({"type": "integer", "enum": [1, 2]}),
                json!(2.0),
                vec![],
            ),
            (
                json!({"type": "string", "nullable": true, "enum": ["a"]}),
                json!(null),
                vec![(
                    "f",
                    "FieldValueNotSupported",
                    "Unsupported value: null: supported values: \"a\"",
                )],
            ),
            (
                json!({"type": "integer", "format": "int32"}),
                json!(5_000_000_000_i64),
                vec![],
            ),
            (
                json!({"type": "integer", "allOf": [{"minimum": 1}, {"maximum": 5}]}),
                json!(9),
                vec![
                    (
                        "f",
                        "FieldValueInvalid",
                        "Invalid value: 9: f in body should be less than or equal to 5",
                    ),
                    (
                        "<nil>",
                        "FieldValueInvalid",
                        "Invalid value: \"\": \"f\" must validate all the schemas (allOf)",
                    ),
                ],
            ),
            (
                json!({"type": "integer", "oneOf": [{"minimum": 1}, {"minimum": 2}]}),
                json!(5),
                vec![(
                    "<nil>",
                    "FieldValueInvalid",
                    "Invalid value: \"\": \"f\" must validate one and only one schema (oneOf). Found 2 valid alternatives",
                )],
            ),
            (
                json!({"type": "integer", "oneOf": [{"minimum": 10}, {"maximum": -10}]}),
                json!(5),
                vec![
                    (
                        "<nil>",
                        "FieldValueInvalid",
                        "Invalid value: \"\": \"f\" must validate one and only one schema (oneOf). Found none valid",
                    ),
                    (
                        "f",
                        "FieldValueInvalid",
                        "Invalid value: 5: f in body should be greater than or equal to 10",
                    ),
                ],
            ),
            (
                json!({"type": "string", "not": {"enum": ["x"]}}),
                json!("x"),
                vec![(
                    "<nil>",
                    "FieldValueInvalid",
                    "Invalid value: \"\": \"f\" must not validate the schema (not)",
                )],
            ),
            (
                json!({"type": "string", "not": {"enum": ["x"]}}),
                json!("y"),
                vec![],
            ),
        ];
        for (schema, value, want) in cases {
            let want: Vec<_> = want.into_iter().map(|(f, r, m)| cause(f, r, m)).collect();
            let got = causes(&root(json!({"f": schema.clone()})), &json!({"f": value}));
            assert_eq!(got, want, "{schema} with {value}");
        }
    }

    #[test]
    fn cheap_string_formats_are_checked_and_others_pass() {
        let cases = [
            ("date-time", "2024-01-02T03:04:05Z", true),
            ("date-time", "2024-01-02t03:04:05.123+01:00", true),
            ("date-time", "2024-01-02T24:00:00Z", false),
            ("date-time", "yesterday", false),
            ("date", "2024-02-29", true),
            ("date", "2023-02-29", false),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000", true),
            ("uuid", "123e4567", false),
            ("uuid4", "123e4567-e89b-42d3-a456-426614174000", true),
            ("uuid4", "123e4567-e89b-12d3-a456-426614174000", false),
            ("byte", "aGk=", true),
            ("byte", "aGk", false),
            ("ipv4", "10.0.0.1", true),
            ("ipv4", "10.0.0", false),
            ("ipv6", "fe80::1", true),
            ("cidr", "10.0.0.0/8", true),
            ("cidr", "10.0.0.0/33", false),
            ("mac", "00:1a:2b:3c:4d:5e", true),
            ("mac", "00:1a:2b", false),
            ("email", "not an address", true),
            ("int32", "x", true),
        ];
        for (format, value, ok) in cases {
            assert_eq!(format_ok(format, value), ok, "{format} {value}");
        }
        let schema = root(json!({"at": {"type": "string", "format": "date-time"}}));
        assert_eq!(
            causes(&schema, &json!({"at": "yesterday"})),
            [cause(
                "at",
                "FieldValueTypeInvalid",
                "Invalid value: \"yesterday\": at in body must be of type date-time: \"yesterday\""
            )]
        );
    }

    #[test]
    fn go_renderings() {
        for (f, want) in [
            (1e6, "1e+06"),
            (100000.0, "100000"),
            (1.5, "1.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456789.0, "1.23456789e+08"),
            (-2.5e-7, "-2.5e-07"),
            (0.0, "0"),
        ] {
            assert_eq!(go_float(f), want);
        }
        assert_eq!(go_quote("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\x01\"");
        assert_eq!(bad(&json!({"a": [1, 2.5]})), "{\"a\":[1,2.5]}");
    }
}
