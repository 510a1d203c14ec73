//! Overriders that edit containers: imageOverrider, commandOverrider and
//! argsOverrider.
//!
//! Without a predicate they reach every container and init container of the
//! pod spec of the kinds below; other kinds are left alone (use a predicate
//! or plaintext for them). A container without an image is skipped; a
//! container whose image is not a valid reference is an error.

use hami_api::override_policy::{CommandArgsOperator, CommandArgsOverrider, ImageOverrider};
use serde_json::Value;

use crate::error::Cause;
use crate::image::ImageRef;

/// The container lists of a pod spec.
const CONTAINER_LISTS: [&str; 2] = ["initContainers", "containers"];

/// JSON pointer to the pod spec of a workload kind.
pub fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template/spec"),
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        "PodTemplate" => Some("/template/spec"),
        _ => None,
    }
}

/// Failure of one overrider: the pointer it failed at and why.
pub type Failed = (String, Cause);

/// Each container of the manifest's pod spec with its JSON pointer.
fn containers(manifest: &mut Value) -> Result<Vec<(String, &mut Value)>, Failed> {
    let kind = manifest
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(spec_ptr) = pod_spec_pointer(kind) else {
        return Ok(Vec::new());
    };
    let Some(Value::Object(spec)) = manifest.pointer_mut(spec_ptr) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (list, value) in spec.iter_mut() {
        if !CONTAINER_LISTS.contains(&list.as_str()) {
            continue;
        }
        let items = match value {
            Value::Null => continue,
            Value::Array(items) => items,
            _ => {
                return Err((
                    format!("{spec_ptr}/{list}"),
                    Cause::WrongType("a list of containers"),
                ));
            }
        };
        for (i, c) in items.iter_mut().enumerate() {
            let path = format!("{spec_ptr}/{list}/{i}");
            if !c.is_object() {
                return Err((path, Cause::WrongType("a container object")));
            }
            out.push((path, c));
        }
    }
    Ok(out)
}

/// Edits one image string in place.
fn edit_image(slot: &mut Value, path: &str, o: &ImageOverrider) -> Result<(), Failed> {
    let Value::String(image) = slot else {
        return Err((path.to_string(), Cause::WrongType("an image string")));
    };
    let fail = |error| {
        (
            path.to_string(),
            Cause::Image {
                image: image.as_str().into(),
                error,
            },
        )
    };
    let mut r = ImageRef::parse(image).map_err(fail)?;
    r.edit(o.component, o.operator, o.value.as_deref())
        .map_err(fail)?;
    *image = r.to_string();
    Ok(())
}

/// Applies one imageOverrider.
pub fn apply_image(manifest: &mut Value, o: &ImageOverrider) -> Result<(), Failed> {
    if let Some(pred) = &o.predicate {
        let slot = manifest
            .pointer_mut(&pred.path)
            .ok_or_else(|| (pred.path.clone(), Cause::NotFound))?;
        return edit_image(slot, &pred.path, o);
    }
    for (path, c) in containers(manifest)? {
        let Some(slot) = c.get_mut("image").filter(|v| !v.is_null()) else {
            continue;
        };
        edit_image(slot, &format!("{path}/image"), o)?;
    }
    Ok(())
}

/// Which container field a command/args overrider edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Command,
    Args,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Field::Command => "command",
            Field::Args => "args",
        }
    }
}

/// Applies one commandOverrider or argsOverrider: add appends the values
/// (creating the list), remove deletes every item equal to one of them.
/// A container name that matches nothing is a no-op.
pub fn apply_command_args(
    manifest: &mut Value,
    field: Field,
    o: &CommandArgsOverrider,
) -> Result<(), Failed> {
    let key = field.key();
    for (path, c) in containers(manifest)? {
        if c.get("name").and_then(Value::as_str) != Some(o.container_name.as_str()) {
            continue;
        }
        let Some(obj) = c.as_object_mut() else {
            continue;
        };
        let path = format!("{path}/{key}");
        match (o.operator, obj.get_mut(key)) {
            (CommandArgsOperator::Add, None | Some(Value::Null)) => {
                if !o.value.is_empty() {
                    let items = o.value.iter().cloned().map(Value::String).collect();
                    obj.insert(key.to_string(), Value::Array(items));
                }
            }
            (CommandArgsOperator::Add, Some(Value::Array(items))) => {
                items.extend(o.value.iter().cloned().map(Value::String));
            }
            (CommandArgsOperator::Remove, None | Some(Value::Null)) => {}
            (CommandArgsOperator::Remove, Some(Value::Array(items))) => {
                items.retain(|v| !v.as_str().is_some_and(|s| o.value.iter().any(|x| x == s)));
            }
            (_, Some(_)) => return Err((path, Cause::WrongType("a list of strings"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hami_api::override_policy::{ImageComponent, ImagePredicate, OverriderOperator};
    use serde_json::json;

    fn deploy(containers: Value, init: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": containers, "initContainers": init}}},
        })
    }

    fn image_o(
        component: ImageComponent,
        operator: OverriderOperator,
        value: Option<&str>,
    ) -> ImageOverrider {
        ImageOverrider {
            predicate: None,
            component,
            operator,
            value: value.map(Into::into),
        }
    }

    #[test]
    fn image_reaches_every_container_of_every_pod_kind() {
        let pod_spec = json!({"containers": [{"name": "a", "image": "nginx:1"}], "initContainers": [{"name": "i", "image": "busybox"}]});
        let kinds: Vec<(&str, Value)> = vec![
            ("Pod", json!({"kind": "Pod", "spec": pod_spec})),
            (
                "Deployment",
                json!({"kind": "Deployment", "spec": {"template": {"spec": pod_spec}}}),
            ),
            (
                "StatefulSet",
                json!({"kind": "StatefulSet", "spec": {"template": {"spec": pod_spec}}}),
            ),
            (
                "DaemonSet",
                json!({"kind": "DaemonSet", "spec": {"template": {"spec": pod_spec}}}),
            ),
            (
                "ReplicaSet",
                json!({"kind": "ReplicaSet", "spec": {"template": {"spec": pod_spec}}}),
            ),
            (
                "Job",
                json!({"kind": "Job", "spec": {"template": {"spec": pod_spec}}}),
            ),
            (
                "CronJob",
                json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}}),
            ),
        ];
        let o = image_o(
            ImageComponent::Registry,
            OverriderOperator::Replace,
            Some("reg.cn"),
        );
        for (kind, mut m) in kinds {
            apply_image(&mut m, &o).unwrap();
            let ptr = pod_spec_pointer(kind).unwrap();
            let at = |p: &str| m.pointer(&format!("{ptr}{p}")).cloned();
            assert_eq!(
                at("/containers/0/image"),
                Some(json!("reg.cn/library/nginx:1")),
                "{kind}"
            );
            assert_eq!(
                at("/initContainers/0/image"),
                Some(json!("reg.cn/library/busybox")),
                "{kind}"
            );
        }
    }

    #[test]
    fn image_with_predicate_changes_only_that_field() {
        let mut m = deploy(
            json!([{"name": "a", "image": "nginx:1"}, {"name": "b", "image": "redis:7"}]),
            json!(null),
        );
        let mut o = image_o(ImageComponent::Tag, OverriderOperator::Replace, Some("8"));
        o.predicate = Some(ImagePredicate {
            path: "/spec/template/spec/containers/1/image".into(),
        });
        apply_image(&mut m, &o).unwrap();
        assert_eq!(
            m.pointer("/spec/template/spec/containers/0/image"),
            Some(&json!("nginx:1"))
        );
        assert_eq!(
            m.pointer("/spec/template/spec/containers/1/image"),
            Some(&json!("redis:8"))
        );
    }

    #[test]
    fn image_errors_and_no_ops() {
        let o = image_o(ImageComponent::Tag, OverriderOperator::Replace, Some("2"));
        // Unknown kind: untouched.
        let mut crd = json!({"kind": "Widget", "spec": {"template": {"spec": {"containers": [{"image": "a:1"}]}}}});
        let before = crd.clone();
        apply_image(&mut crd, &o).unwrap();
        assert_eq!(crd, before);
        // A container without an image is skipped.
        let mut m = deploy(
            json!([{"name": "a"}, {"name": "b", "image": "x:1"}]),
            json!([]),
        );
        apply_image(&mut m, &o).unwrap();
        assert_eq!(
            m.pointer("/spec/template/spec/containers/1/image"),
            Some(&json!("x:2"))
        );
        // A bad image names its path.
        let mut m = deploy(json!([{"name": "a", "image": "Bad Image"}]), json!(null));
        let (path, cause) = apply_image(&mut m, &o).unwrap_err();
        assert_eq!(path, "/spec/template/spec/containers/0/image");
        assert!(matches!(cause, Cause::Image { .. }), "{cause:?}");
        // Predicate to a missing field or a non-string.
        let mut p = o.clone();
        p.predicate = Some(ImagePredicate {
            path: "/spec/nope".into(),
        });
        assert_eq!(
            apply_image(&mut m, &p),
            Err(("/spec/nope".into(), Cause::NotFound))
        );
        p.predicate = Some(ImagePredicate {
            path: "/spec".into(),
        });
        assert_eq!(
            apply_image(&mut m, &p),
            Err(("/spec".into(), Cause::WrongType("an image string")))
        );
        // Containers that are not a list.
        let mut m = deploy(json!({"a": 1}), json!(null));
        assert_eq!(
            apply_image(&mut m, &o),
            Err((
                "/spec/template/spec/containers".into(),
                Cause::WrongType("a list of containers")
            ))
        );
    }

    #[test]
    fn command_args_table() {
        let ca = |name: &str, op, v: &[&str]| CommandArgsOverrider {
            container_name: name.into(),
            operator: op,
            value: v.iter().map(|s| s.to_string()).collect(),
        };
        use CommandArgsOperator::{Add, Remove};
        type Case<'a> = (
            &'a str,
            Value,
            Field,
            CommandArgsOverrider,
            Result<Value, Failed>,
        );
        let base = || json!([{"name": "main", "command": ["run", "--x"], "args": ["-a", "-b", "-a"]}, {"name": "side"}]);
        let cases: Vec<Case<'_>> = vec![
            (
                "add command",
                base(),
                Field::Command,
                ca("main", Add, &["--y"]),
                Ok(json!(["run", "--x", "--y"])),
            ),
            (
                "remove args, all copies",
                base(),
                Field::Args,
                ca("main", Remove, &["-a"]),
                Ok(json!(["-b"])),
            ),
            (
                "remove absent value",
                base(),
                Field::Args,
                ca("main", Remove, &["-z"]),
                Ok(json!(["-a", "-b", "-a"])),
            ),
            (
                "unknown container is a no-op",
                base(),
                Field::Args,
                ca("nope", Add, &["-z"]),
                Ok(json!(["-a", "-b", "-a"])),
            ),
            (
                "args not a list",
                json!([{"name": "main", "args": "-a"}]),
                Field::Args,
                ca("main", Add, &["-z"]),
                Err((
                    "/spec/template/spec/containers/0/args".into(),
                    Cause::WrongType("a list of strings"),
                )),
            ),
            (
                "non-string items are kept",
                json!([{"name": "main", "args": [1, "-a"]}]),
                Field::Args,
                ca("main", Remove, &["-a", "1"]),
                Ok(json!([1])),
            ),
        ];
        for (name, cs, field, o, want) in cases {
            let mut m = deploy(cs, json!(null));
            let got = apply_command_args(&mut m, field, &o).map(|()| {
                m.pointer(&format!("/spec/template/spec/containers/0/{}", field.key()))
                    .cloned()
                    .unwrap_or(Value::Null)
            });
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn command_args_create_and_reach_init_containers() {
        let mut m = deploy(
            json!([{"name": "main"}]),
            json!([{"name": "setup", "args": ["a"]}]),
        );
        let add = CommandArgsOverrider {
            container_name: "main".into(),
            operator: CommandArgsOperator::Add,
            value: vec!["serve".into()],
        };
        apply_command_args(&mut m, Field::Command, &add).unwrap();
        assert_eq!(
            m.pointer("/spec/template/spec/containers/0/command"),
            Some(&json!(["serve"]))
        );
        let rm = CommandArgsOverrider {
            container_name: "setup".into(),
            operator: CommandArgsOperator::Remove,
            value: vec!["a".into()],
        };
        apply_command_args(&mut m, Field::Args, &rm).unwrap();
        assert_eq!(
            m.pointer("/spec/template/spec/initContainers/0/args"),
            Some(&json!([]))
        );
        // Remove from a container without the field does not create it.
        let rm_main = CommandArgsOverrider {
            container_name: "main".into(),
            ..rm
        };
        apply_command_args(&mut m, Field::Args, &rm_main).unwrap();
        assert_eq!(m.pointer("/spec/template/spec/containers/0/args"), None);
    }
}
