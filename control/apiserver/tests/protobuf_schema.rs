//! Generates `src/server/protobuf/generated.rs`, the table the protobuf
//! transcoder reads, and fails when the checked-in table differs from what
//! the sources give today:
//!
//! - field numbers, labels and types come from the message types of the
//!   `k8s-pb` crate (kube-rs' prost bindings of Kubernetes'
//!   `generated.proto`), read from its source with `syn`;
//! - JSON names come from k8s-openapi's schema of each built-in kind the
//!   server serves (walked beside the messages), because prost's snake_case
//!   names lose Kubernetes' capitals (`hostIPC`, `podIPs`); fields the schema
//!   does not have (meta kinds, newer fields) take the lowerCamelCase name.
//!
//! Only the messages reachable from the served kinds, their lists, and the
//! meta kinds every group version carries are written.
//!
//! Regenerate with
//! `HAMI_UPDATE_PROTOBUF_SCHEMA=1 cargo test -p hami-apiserver --test protobuf_schema`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A field as k8s-pb declares it.
#[derive(Clone, Debug)]
struct PbField {
    number: u32,
    rust: String,
    label: &'static str,
    ty: String,
}

/// Where cargo unpacked k8s-pb (a dev-dependency, so always present).
fn k8s_pb_src() -> (PathBuf, String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pkg = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "k8s-pb")
        .expect("k8s-pb is a dependency");
    let manifest = PathBuf::from(pkg["manifest_path"].as_str().unwrap());
    (
        manifest.parent().unwrap().join("src"),
        pkg["version"].as_str().unwrap().to_owned(),
    )
}

/// The proto package of a module directory: `api/apps/v1` is `io.k8s.api.apps.v1`.
fn package(segments: &[String]) -> String {
    let mut name = String::from("io.k8s");
    for s in segments {
        name.push('.');
        name.push_str(&s.replace('_', "-"));
    }
    name
}

fn type_path_string(ty: &syn::Type) -> Vec<String> {
    match ty {
        syn::Type::Path(p) => p
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// The innermost type argument of `Option<T>`, `Vec<T>`, `BTreeMap<K, T>`.
fn inner(ty: &syn::Type) -> &syn::Type {
    if let syn::Type::Path(p) = ty
        && let Some(last) = p.path.segments.last()
        && matches!(
            last.ident.to_string().as_str(),
            "Option" | "Vec" | "BTreeMap" | "HashMap"
        )
        && let syn::PathArguments::AngleBracketed(args) = &last.arguments
        && let Some(syn::GenericArgument::Type(t)) = args.args.iter().last()
    {
        return inner(t);
    }
    ty
}

/// The full name of a message-typed field, resolving `super::` against the module.
fn resolve(module: &[String], ty: &syn::Type) -> String {
    let segs = type_path_string(inner(ty));
    let mut base: Vec<String> = module.to_vec();
    let mut rest = Vec::new();
    for s in segs {
        if s == "super" {
            base.pop();
        } else {
            rest.push(s);
        }
    }
    let name = rest.pop().unwrap();
    base.extend(rest);
    format!("{}.{name}", package(&base))
}

fn parse_messages(src: &Path) -> BTreeMap<String, Vec<PbField>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.file_name().is_none_or(|n| n != "mod.rs") {
                continue;
            }
            let module: Vec<String> = path
                .parent()
                .unwrap()
                .strip_prefix(src)
                .unwrap()
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let file = syn::parse_file(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for item in file.items {
                let syn::Item::Struct(s) = item else { continue };
                let mut fields = Vec::new();
                for f in &s.fields {
                    let Some(attr) = f.attrs.iter().find(|a| a.path().is_ident("prost")) else {
                        continue;
                    };
                    let syn::Meta::List(list) = &attr.meta else {
                        continue;
                    };
                    let spec = list.tokens.to_string();
                    fields.push(field(&module, f, &spec));
                }
                if !fields.is_empty() {
                    fields.sort_by_key(|f| f.number);
                    out.insert(format!("{}.{}", package(&module), s.ident), fields);
                }
            }
        }
    }
    out
}

/// One field from its `#[prost(...)]` spec, e.g. `int32 , optional , tag = "1"`
/// or `map = "string, message" , tag = "2"`.
fn field(module: &[String], f: &syn::Field, spec: &str) -> PbField {
    let parts: Vec<String> = split_top(spec);
    let number = parts
        .iter()
        .find_map(|p| p.strip_prefix("tag = "))
        .map(|t| t.trim_matches('"').parse().unwrap())
        .unwrap();
    let head = parts[0].as_str();
    let map = head
        .strip_prefix("map = ")
        .or_else(|| head.strip_prefix("btree_map = "));
    let (label, scalar) = if let Some(m) = map {
        let m = m.trim_matches('"');
        let (k, v) = m.split_once(',').unwrap();
        assert_eq!(
            k.trim(),
            "string",
            "only map<string, _> is expected: {spec}"
        );
        ("Map", v.trim().to_owned())
    } else {
        let label = if parts.iter().any(|p| p == "repeated") {
            "Many"
        } else {
            "One"
        };
        let scalar = head.split(" = ").next().unwrap().trim().to_owned();
        (label, scalar)
    };
    let ty = match scalar.as_str() {
        "string" => "Str".to_owned(),
        "bytes" => "Bytes".to_owned(),
        "bool" => "Bool".to_owned(),
        "int32" | "sint32" | "sfixed32" => "I32".to_owned(),
        "int64" | "sint64" | "sfixed64" => "I64".to_owned(),
        "uint32" | "fixed32" => "U32".to_owned(),
        "uint64" | "fixed64" => "U64".to_owned(),
        "float" => "F32".to_owned(),
        "double" => "F64".to_owned(),
        "message" => format!("Msg({:?})", resolve(module, &f.ty)),
        other => panic!("unexpected prost type {other} in {spec}"),
    };
    let rust = f.ident.as_ref().unwrap().to_string();
    PbField {
        number,
        rust: rust.trim_start_matches("r#").to_owned(),
        label,
        ty,
    }
}

/// Splits `a , b = "x, y" , c` at commas outside quotes.
fn split_top(spec: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    for c in spec.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                parts.last_mut().unwrap().push(c);
            }
            ',' if !quoted => parts.push(String::new()),
            _ => parts.last_mut().unwrap().push(c),
        }
    }
    parts.into_iter().map(|p| p.trim().to_owned()).collect()
}

fn normalized(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn lower_camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The message name inside a `Msg("...")` type.
fn msg_name(ty: &str) -> Option<&str> {
    ty.strip_prefix("Msg(\"")
        .and_then(|t| t.strip_suffix("\")"))
}

/// JSON names found by walking a kind's schema beside its messages:
/// message → rust field name → JSON name.
fn name_walk(
    messages: &BTreeMap<String, Vec<PbField>>,
    names: &mut BTreeMap<String, HashMap<String, String>>,
    name: &str,
    schema: &Value,
) {
    let Some(fields) = messages.get(name) else {
        return;
    };
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for f in fields {
        let Some((json, prop)) = props
            .iter()
            .find(|(k, _)| normalized(k) == normalized(&f.rust))
        else {
            // A Go struct embedded in its parent: its own message on the
            // wire, its fields among the parent's in JSON.
            if let Some(child) = msg_name(&f.ty)
                && f.label == "One"
                && messages.get(child).is_some_and(|c| {
                    c.iter()
                        .any(|cf| props.keys().any(|k| normalized(k) == normalized(&cf.rust)))
                })
            {
                names
                    .entry(name.to_owned())
                    .or_default()
                    .insert(f.rust.clone(), INLINE.to_owned());
                name_walk(messages, names, child, schema);
            }
            continue;
        };
        names
            .entry(name.to_owned())
            .or_default()
            .insert(f.rust.clone(), json.clone());
        if let Some(child) = msg_name(&f.ty) {
            let child_schema = match f.label {
                "Many" => prop.get("items").unwrap_or(prop),
                "Map" => prop.get("additionalProperties").unwrap_or(prop),
                _ => prop,
            };
            name_walk(messages, names, child, child_schema);
        }
    }
}

/// The JSON name that marks an embedded struct.
const INLINE: &str = "";

/// Messages handled by the transcoder itself, not walked further.
const SPECIAL: &[&str] = &[
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Duration",
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    "io.k8s.apimachinery.pkg.runtime.RawExtension",
];

fn generate() -> String {
    let (src, version) = k8s_pb_src();
    let messages = parse_messages(&src);
    let mut roots = Vec::new();
    let mut names = BTreeMap::new();
    for kind in hami_apiserver::builtin::kinds() {
        let short = if kind.group.is_empty() {
            "core".to_owned()
        } else {
            let g = kind.group.trim_end_matches(".k8s.io");
            g.split('.').next().unwrap().to_owned()
        };
        let base = format!("io.k8s.api.{short}.{}.", kind.version);
        let root = format!("{base}{}", kind.kind);
        if let Some(schema) = &kind.schema {
            name_walk(&messages, &mut names, &root, schema);
        }
        roots.push(root);
        roots.push(format!("{base}{}", kind.list_kind));
    }
    let meta = "io.k8s.apimachinery.pkg.apis.meta.v1.";
    for k in [
        "Status",
        "DeleteOptions",
        "WatchEvent",
        "List",
        "PartialObjectMetadata",
    ] {
        roots.push(format!("{meta}{k}"));
    }
    roots.push("io.k8s.api.autoscaling.v1.Scale".to_owned());
    // Every message reachable from the roots.
    let mut reachable = std::collections::BTreeSet::new();
    let mut missing = Vec::new();
    while let Some(name) = roots.pop() {
        if !reachable.insert(name.clone()) || SPECIAL.contains(&name.as_str()) {
            continue;
        }
        let Some(fields) = messages.get(&name) else {
            missing.push(name);
            continue;
        };
        roots.extend(
            fields
                .iter()
                .filter_map(|f| msg_name(&f.ty))
                .map(str::to_owned),
        );
    }
    assert!(missing.is_empty(), "k8s-pb lacks {missing:?}");

    let mut text = format!(
        "//! @generated from k8s-pb {version}'s message types and k8s-openapi's JSON names by\n\
         //! `HAMI_UPDATE_PROTOBUF_SCHEMA=1 cargo test -p hami-apiserver --test protobuf_schema`.\n\
         //! Do not edit by hand.\n\n\
         use super::schema::Field as F;\n\
         use super::schema::Label::{{Inline, Many, Map, One}};\n\
         use super::schema::Ty::*;\n\n\
         /// Every message reachable from the served built-in kinds, by name.\n\
         #[rustfmt::skip]\n\
         pub static MESSAGES: &[(&str, &[F])] = &[\n"
    );
    let empty = HashMap::new();
    for name in &reachable {
        let json = names.get(name).unwrap_or(&empty);
        writeln!(text, "    ({name:?}, &[").unwrap();
        for f in messages.get(name).cloned().unwrap_or_default() {
            let j = json
                .get(&f.rust)
                .cloned()
                .unwrap_or_else(|| lower_camel(&f.rust));
            let label = if j == INLINE { "Inline" } else { f.label };
            writeln!(text, "        F({}, {j:?}, {label}, {}),", f.number, f.ty).unwrap();
        }
        text.push_str("    ]),\n");
    }
    text.push_str("];\n");
    text
}

#[test]
fn the_protobuf_table_is_generated_from_k8s_pb() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server/protobuf/generated.rs");
    let text = generate();
    if std::env::var_os("HAMI_UPDATE_PROTOBUF_SCHEMA").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == text,
        "{} is stale: regenerate with HAMI_UPDATE_PROTOBUF_SCHEMA=1 cargo test -p hami-apiserver --test protobuf_schema",
        path.display()
    );
}
