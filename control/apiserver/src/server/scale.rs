//! The scale subresource (`autoscaling/v1` Scale) of kinds that declare one:
//! what `kubectl scale` reads and patches.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use hami_store::StoreError;
use serde_json::{Value, json};

use super::State;
use super::dispatch::{Ctx, json_response};
use super::meta;
use super::objects::{self, MAX_RETRIES, StoreOrApi, Stored, UpdateMode, UpdateScope};
use super::patching;
use super::registry::{ResourceKind, ScalePaths};
use super::request;
use super::status::{ApiError, Cause};

/// `.spec.replicas` -> `/spec/replicas`.
fn pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .fold(String::new(), |mut acc, p| {
            acc.push('/');
            acc.push_str(p);
            acc
        })
}

fn paths(kind: &ResourceKind) -> Result<&ScalePaths, ApiError> {
    kind.scale
        .as_ref()
        .ok_or_else(|| ApiError::not_found(&kind.group, &format!("{}/scale", kind.plural), ""))
}

/// The Scale view of an object.
fn scale_of(paths: &ScalePaths, object: &Value) -> Value {
    let mut metadata = serde_json::Map::new();
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = object.pointer(&format!("/metadata/{field}")) {
            metadata.insert(field.into(), v.clone());
        }
    }
    let replicas = |p: &str| {
        object
            .pointer(&pointer(p))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let mut status = json!({"replicas": replicas(&paths.status_replicas)});
    if let Some(selector) = paths
        .label_selector
        .as_deref()
        .and_then(|p| object.pointer(&pointer(p)))
        .and_then(Value::as_str)
    {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": replicas(&paths.spec_replicas)},
        "status": status,
    })
}

pub fn get(state: &Arc<State>, ctx: &Ctx) -> Result<Response, ApiError> {
    let kind = &ctx.path.kind;
    let name = ctx.path.name.as_deref().unwrap_or_default();
    let current = objects::get(state, kind, ctx.ns(), name)?;
    Ok(json_response(
        StatusCode::OK,
        &scale_of(paths(kind)?, &current.object),
    ))
}

/// Writes `spec.replicas` of the Scale that `change` makes of the current one.
async fn write(
    state: &State,
    ctx: &Ctx,
    change: impl Fn(&Value) -> Result<Value, ApiError>,
) -> Result<Response, ApiError> {
    let kind = &ctx.path.kind;
    let paths = paths(kind)?;
    let name = ctx.path.name.as_deref().unwrap_or_default();
    let manager = ctx.manager();
    for _ in 0..MAX_RETRIES {
        let current: Stored = objects::get(state, kind, ctx.ns(), name)?;
        let scale = change(&scale_of(paths, &current.object))?;
        let rv = meta::meta_str(&scale, "resourceVersion").filter(|rv| !rv.is_empty());
        let pinned = rv.is_some();
        if rv.is_some_and(|rv| rv != current.revision.to_string()) {
            return Err(ApiError::from_store(
                StoreError::Conflict {
                    key: String::new(),
                    expected: 0,
                    actual: current.revision,
                },
                &kind.group,
                &kind.plural,
                name,
            ));
        }
        let Some(replicas) = scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .filter(|r| *r >= 0)
        else {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                name,
                vec![Cause::new(
                    "FieldValueInvalid",
                    "spec.replicas",
                    "must be a non-negative integer",
                )],
            ));
        };
        let mut object = current.object.clone();
        if let Some(slot) = object.pointer_mut(&pointer(&paths.spec_replicas)) {
            *slot = json!(replicas);
        } else {
            return Err(ApiError::internal(format!(
                "object has no {}",
                paths.spec_replicas
            )));
        }
        let mode = UpdateMode {
            scope: UpdateScope::Main,
            manager: Some(&manager),
        };
        let prepared =
            objects::prepare_update(state, kind, ctx.ns(), name, &current, object, mode)?;
        match objects::commit_update(state, kind, ctx.ns(), name, &current, prepared).await {
            Ok(updated) => return Ok(json_response(StatusCode::OK, &scale_of(paths, &updated))),
            Err(StoreOrApi::Store(StoreError::Conflict { .. })) if !pinned => continue,
            Err(e) => return Err(e.into_api(kind, name)),
        }
    }
    Err(ApiError::too_many_updates(kind, name))
}

pub async fn update(state: Arc<State>, ctx: &Ctx, body: Bytes) -> Result<Response, ApiError> {
    let given = request::decode_object(&body, &request::content_type(&ctx.headers))?;
    write(&state, ctx, |_| Ok(given.clone())).await
}

pub async fn patch(state: Arc<State>, ctx: &Ctx, body: Bytes) -> Result<Response, ApiError> {
    let media_type = request::content_type(&ctx.headers);
    write(&state, ctx, |scale| {
        patching::patch_value(&media_type, &body, scale)
    })
    .await
}
