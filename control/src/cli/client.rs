//! `hami apply`, `hami get`, `hami delete`: kube clients of the API server,
//! resolving kinds through discovery like kubectl does.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, Config};
use serde_json::{Value, json};

use super::{ApplyArgs, ClientArgs, DeleteArgs, GetArgs, Output};
use crate::apiserver::meta::human_age;

/// One served resource, as discovery describes it.
#[derive(Clone, Debug)]
struct Served {
    resource: ApiResource,
    namespaced: bool,
    singular: String,
    short_names: Vec<String>,
}

pub(super) async fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig).with_context(|| {
        format!(
            "read kubeconfig {} (is `hami up` running?)",
            args.kubeconfig.display()
        )
    })?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

fn served_from(
    list: k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList,
    out: &mut Vec<Served>,
) {
    let (group, version) = match list.group_version.split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), list.group_version.clone()),
    };
    for r in list.resources.into_iter().filter(|r| !r.name.contains('/')) {
        out.push(Served {
            resource: ApiResource {
                group: group.clone(),
                version: version.clone(),
                api_version: list.group_version.clone(),
                kind: r.kind.clone(),
                plural: r.name.clone(),
            },
            namespaced: r.namespaced,
            singular: r.singular_name.clone(),
            short_names: r.short_names.unwrap_or_default(),
        });
    }
}

/// Every resource the server serves (preferred versions of each group).
async fn discover(client: &Client) -> anyhow::Result<Vec<Served>> {
    let mut out = Vec::new();
    for version in client.list_core_api_versions().await?.versions {
        served_from(client.list_core_api_resources(&version).await?, &mut out);
    }
    for group in client.list_api_groups().await?.groups {
        let Some(preferred) = group
            .preferred_version
            .or_else(|| group.versions.first().cloned())
        else {
            continue;
        };
        served_from(
            client
                .list_api_group_resources(&preferred.group_version)
                .await?,
            &mut out,
        );
    }
    Ok(out)
}

/// Finds a resource by kind, plural, singular or short name (optionally `name.group`).
fn resolve<'a>(served: &'a [Served], name: &str) -> anyhow::Result<&'a Served> {
    let lower = name.to_lowercase();
    let (name, group) = match lower.split_once('.') {
        Some((n, g)) => (n.to_owned(), Some(g.to_owned())),
        None => (lower.clone(), None),
    };
    served
        .iter()
        .filter(|s| group.as_deref().is_none_or(|g| s.resource.group == g))
        .find(|s| {
            s.resource.plural == name
                || s.singular == name
                || s.resource.kind.to_lowercase() == name
                || s.short_names.contains(&name)
        })
        .with_context(|| format!("the server doesn't have a resource type {lower:?}"))
}

fn by_gvk<'a>(served: &'a [Served], api_version: &str, kind: &str) -> anyhow::Result<&'a Served> {
    served
        .iter()
        .find(|s| s.resource.api_version == api_version && s.resource.kind == kind)
        .with_context(|| format!("no resource of kind {kind:?} in {api_version:?} is served"))
}

fn api_for(client: &Client, served: &Served, namespace: Option<&str>) -> Api<DynamicObject> {
    match (served.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &served.resource),
        (true, None) => Api::default_namespaced_with(client.clone(), &served.resource),
        (false, _) => Api::all_with(client.clone(), &served.resource),
    }
}

fn manifest_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("read {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
            })
            .collect();
        files.sort();
        Ok(files)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

/// Parses multi-document YAML (or JSON) into objects; `List` kinds are expanded.
pub fn parse_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).context("parse YAML")?;
    let mut out = Vec::new();
    for doc in docs {
        match doc {
            Value::Null => {}
            Value::Object(_)
                if doc
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List"))
                    && doc.get("items").is_some() =>
            {
                out.extend(doc["items"].as_array().into_iter().flatten().cloned());
            }
            Value::Object(_) => out.push(doc),
            other => bail!("a document is not an object: {other}"),
        }
    }
    Ok(out)
}

fn read_objects(paths: &[PathBuf]) -> anyhow::Result<Vec<Value>> {
    let mut objects = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            objects.extend(parse_documents(&text)?);
            continue;
        }
        for file in manifest_files(path)? {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            objects
                .extend(parse_documents(&text).with_context(|| format!("in {}", file.display()))?);
        }
    }
    Ok(objects)
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let objects = read_objects(&args.files)?;
    let client = connect(&args.client).await?;
    let served = discover(&client).await?;
    let params = PatchParams::apply(&args.field_manager).force();
    for object in objects {
        let target = by_gvk(
            &served,
            text(&object, "/apiVersion"),
            text(&object, "/kind"),
        )?;
        let name = text(&object, "/metadata/name").to_owned();
        if name.is_empty() {
            bail!(
                "an object of kind {} has no metadata.name",
                target.resource.kind
            );
        }
        let ns = match text(&object, "/metadata/namespace") {
            "" => args.namespace.clone(),
            ns => Some(ns.to_owned()),
        };
        let api = api_for(&client, target, ns.as_deref());
        api.patch(&name, &params, &Patch::Apply(&object))
            .await
            .with_context(|| format!("apply {} {name}", target.resource.plural))?;
        outln!("{}/{name} applied", target.singular_or_kind());
    }
    Ok(())
}

impl Served {
    fn singular_or_kind(&self) -> String {
        let base = if self.singular.is_empty() {
            self.resource.kind.to_lowercase()
        } else {
            self.singular.clone()
        };
        if self.resource.group.is_empty() {
            base
        } else {
            format!("{base}.{}", self.resource.group)
        }
    }
}

fn print(
    output: Option<Output>,
    served: &Served,
    objects: Vec<Value>,
    single: bool,
    all_namespaces: bool,
) -> anyhow::Result<()> {
    let value = if single {
        objects.into_iter().next().unwrap_or(Value::Null)
    } else {
        json!({"apiVersion": "v1", "kind": "List", "items": objects})
    };
    match output {
        Some(Output::Json) => outln!("{}", serde_json::to_string_pretty(&value)?),
        Some(Output::Yaml) => out!("{}", serde_saphyr::to_string(&value)?),
        Some(Output::Name) => {
            let items = if single {
                vec![value]
            } else {
                value["items"].as_array().cloned().unwrap_or_default()
            };
            for item in items {
                outln!(
                    "{}/{}",
                    served.singular_or_kind(),
                    text(&item, "/metadata/name")
                );
            }
        }
        None => {
            let items = if single {
                vec![value]
            } else {
                value["items"].as_array().cloned().unwrap_or_default()
            };
            if items.is_empty() {
                eprintln!("No resources found");
                return Ok(());
            }
            let mut rows = vec![vec![
                "NAMESPACE".to_owned(),
                "NAME".to_owned(),
                "AGE".to_owned(),
            ]];
            for item in &items {
                rows.push(vec![
                    text(item, "/metadata/namespace").to_owned(),
                    text(item, "/metadata/name").to_owned(),
                    human_age(text(item, "/metadata/creationTimestamp")),
                ]);
            }
            let skip = usize::from(!(all_namespaces && served.namespaced));
            let widths: Vec<usize> = (0..3)
                .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
                .collect();
            for row in rows {
                let cells: Vec<String> = (skip..3)
                    .map(|c| format!("{:width$}", row[c], width = widths[c]))
                    .collect();
                outln!("{}", cells.join("   ").trim_end());
            }
        }
    }
    Ok(())
}

pub async fn get(args: GetArgs) -> anyhow::Result<()> {
    let client = connect(&args.client).await?;
    let served = discover(&client).await?;
    let target = resolve(&served, &args.kind)?;
    let api = if args.all_namespaces {
        Api::all_with(client.clone(), &target.resource)
    } else {
        api_for(&client, target, args.namespace.as_deref())
    };
    let objects: Vec<Value> = match &args.name {
        Some(name) => vec![serde_json::to_value(api.get(name).await?)?],
        None => {
            let mut params = ListParams::default();
            if let Some(selector) = &args.selector {
                params = params.labels(selector);
            }
            api.list(&params)
                .await?
                .items
                .into_iter()
                .map(|o| {
                    let mut v = serde_json::to_value(o)?;
                    v["apiVersion"] = json!(target.resource.api_version);
                    v["kind"] = json!(target.resource.kind);
                    Ok(v)
                })
                .collect::<anyhow::Result<_>>()?
        }
    };
    print(
        args.output,
        target,
        objects,
        args.name.is_some(),
        args.all_namespaces,
    )
}

pub async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let client = connect(&args.client).await?;
    let served = discover(&client).await?;
    let mut targets: Vec<(Served, Option<String>, String)> = Vec::new();
    if args.files.is_empty() {
        let [kind, name] = args.target.as_slice() else {
            bail!("give -f FILE, or KIND NAME");
        };
        targets.push((
            resolve(&served, kind)?.clone(),
            args.namespace.clone(),
            name.clone(),
        ));
    } else {
        for object in read_objects(&args.files)? {
            let target = by_gvk(
                &served,
                text(&object, "/apiVersion"),
                text(&object, "/kind"),
            )?;
            let ns = match text(&object, "/metadata/namespace") {
                "" => args.namespace.clone(),
                ns => Some(ns.to_owned()),
            };
            targets.push((
                target.clone(),
                ns,
                text(&object, "/metadata/name").to_owned(),
            ));
        }
    }
    for (target, ns, name) in targets {
        let api = api_for(&client, &target, ns.as_deref());
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => outln!("{}/{name} deleted", target.singular_or_kind()),
            Err(kube::Error::Api(status)) if status.code == 404 && args.ignore_not_found => {}
            Err(e) => {
                return Err(e).with_context(|| format!("delete {} {name}", target.resource.plural));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_and_lists_are_split() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: s}}\n";
        let docs = parse_documents(text).unwrap();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, vec!["ConfigMap", "Secret"]);
        assert!(parse_documents("- a\n").is_err());
    }
}
