//! PATCH: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge
//! patch for built-in kinds, and server-side apply. Every patch is applied to
//! the current object and written at its revision, retrying a lost race.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use hami_store::StoreError;
use serde_json::Value;

use super::State;
use super::dispatch::{Ctx, json_response};
use super::fields;
use super::meta;
use super::objects::{self, MAX_RETRIES, StoreOrApi, UpdateScope};
use super::registry::ResourceKind;
use super::request;
use super::status::ApiError;
use crate::patch::PatchError;

/// The patch formats the server accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_media_type(media_type: &str) -> Result<Self, ApiError> {
        match media_type {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            other => Err(ApiError::UnsupportedMediaType {
                message: format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
                ),
            }),
        }
    }
}

fn patch_error(err: PatchError) -> ApiError {
    match err {
        PatchError::UnsupportedMediaType { .. } => ApiError::UnsupportedMediaType {
            message: err.to_string(),
        },
        PatchError::BadPatch { .. } => ApiError::bad_request(err.to_string()),
    }
}

/// Applies a merge, JSON or strategic patch body to a plain value (no
/// strategy: strategic patches merge like merge patches), e.g. a Scale.
pub fn patch_value(media_type: &str, bytes: &[u8], doc: &Value) -> Result<Value, ApiError> {
    match PatchType::from_media_type(media_type)? {
        PatchType::Json => match decode(PatchType::Json, bytes)? {
            Body::Ops(ops) => {
                let mut doc = doc.clone();
                json_patch::patch(&mut doc, &ops).map_err(|e| ApiError::Invalid {
                    message: format!("the JSON patch could not be applied: {e}"),
                    target: Default::default(),
                    causes: Vec::new(),
                })?;
                Ok(doc)
            }
            Body::Value(_) => Err(ApiError::internal("patch body does not match its type")),
        },
        PatchType::Merge | PatchType::Strategic => {
            let patch = request::decode_object(bytes, "application/json")?;
            crate::patch::merge::merge_patch(doc, &patch).map_err(patch_error)
        }
        PatchType::Apply => Err(ApiError::UnsupportedMediaType {
            message: "server-side apply is not supported on the scale subresource".into(),
        }),
    }
}

/// A decoded patch body.
enum Body {
    Value(Value),
    Ops(json_patch::Patch),
}

fn decode(patch_type: PatchType, bytes: &[u8]) -> Result<Body, ApiError> {
    match patch_type {
        PatchType::Json => {
            let value = request::decode_value(bytes, "application/json")?;
            serde_json::from_value(value)
                .map(Body::Ops)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))
        }
        PatchType::Apply => request::decode_object(bytes, "application/yaml").map(Body::Value),
        PatchType::Merge | PatchType::Strategic => {
            request::decode_object(bytes, "application/json").map(Body::Value)
        }
    }
}

/// The object `patch` makes of `current` (None: the object does not exist).
fn apply_patch(
    kind: &ResourceKind,
    patch_type: PatchType,
    body: &Body,
    current: Option<&Value>,
    ctx: &Ctx,
) -> Result<Value, ApiError> {
    let name = ctx.path.name.as_deref().unwrap_or_default();
    let not_found = || ApiError::not_found(&kind.group, &kind.plural, name);
    match (patch_type, body) {
        (PatchType::Json, Body::Ops(ops)) => {
            let mut doc = current.cloned().ok_or_else(not_found)?;
            json_patch::patch(&mut doc, ops).map_err(|e| ApiError::Invalid {
                message: format!("the JSON patch could not be applied: {e}"),
                target: Default::default(),
                causes: Vec::new(),
            })?;
            Ok(doc)
        }
        (PatchType::Merge, Body::Value(patch)) => {
            let doc = current.ok_or_else(not_found)?;
            crate::patch::merge::merge_patch(doc, patch).map_err(patch_error)
        }
        (PatchType::Strategic, Body::Value(patch)) => {
            let doc = current.ok_or_else(not_found)?;
            crate::patch::strategic::strategic_merge_patch(
                doc,
                patch,
                &kind.api_version(),
                &kind.kind,
            )
            .map_err(patch_error)
        }
        (PatchType::Apply, Body::Value(applied)) => {
            let manager = ctx.query.field_manager.as_deref().unwrap_or_default();
            if manager.is_empty() {
                return Err(ApiError::bad_request(
                    "PATCH with application/apply-patch+yaml requires the fieldManager parameter",
                ));
            }
            let time = meta::now_rfc3339();
            let sub = ctx.path.subresource.as_deref();
            let writer = objects::writer(kind, manager, sub, &time);
            crate::patch::apply::apply(current, applied, &writer, ctx.query.force)
                .map_err(|e| objects::apply_error(kind, name, e))
        }
        _ => Err(ApiError::internal("patch body does not match its type")),
    }
}

pub async fn patch(state: Arc<State>, ctx: &Ctx, bytes: Bytes) -> Result<Response, ApiError> {
    let kind = ctx.path.kind.clone();
    let name = ctx.path.name.clone().unwrap_or_default();
    let ns = ctx.ns();
    let patch_type = PatchType::from_media_type(&request::content_type(&ctx.headers))?;
    let body = decode(patch_type, &bytes)?;
    let scope = UpdateScope::of_subresource(ctx.path.subresource.as_deref());
    for _ in 0..MAX_RETRIES {
        let current = match objects::get(&state, &kind, ns, &name) {
            Ok(current) => Some(current),
            Err(ApiError::NotFound { .. })
                if patch_type == PatchType::Apply && scope == UpdateScope::Main =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        let mut patched = apply_patch(
            &kind,
            patch_type,
            &body,
            current.as_ref().map(|c| &c.object),
            ctx,
        )?;
        let warnings = fields::check(&kind, ctx.query.field_validation, &mut patched)?;
        let Some(current) = current else {
            // Server-side apply of a missing object creates it.
            if meta::meta_str(&patched, "name").is_some_and(|n| n != name) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object does not match the name on the URL ({name})"
                )));
            }
            meta::metadata_mut(&mut patched).insert("name".into(), Value::String(name.clone()));
            match objects::create(&state, &kind, ns, patched, None).await {
                Ok(created) => {
                    return Ok(fields::with_warnings(
                        json_response(StatusCode::CREATED, &created),
                        &warnings,
                    ));
                }
                Err(ApiError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e),
            }
        };
        // A resourceVersion in the patch is a precondition; otherwise the
        // patch applies to whatever is current.
        let pinned = match &body {
            Body::Value(v) => meta::meta_str(v, "resourceVersion").is_some_and(|rv| !rv.is_empty()),
            Body::Ops(_) => false,
        };
        if !pinned {
            meta::set_resource_version(&mut patched, current.revision);
        }
        let manager = (patch_type != PatchType::Apply).then(|| ctx.manager());
        let prepared = objects::prepare_update(
            &state,
            &kind,
            ns,
            &name,
            &current,
            patched,
            objects::UpdateMode {
                scope,
                manager: manager.as_deref(),
            },
        )?;
        match objects::commit_update(&state, &kind, ns, &name, &current, prepared).await {
            Ok(object) => {
                return Ok(fields::with_warnings(
                    json_response(StatusCode::OK, &object),
                    &warnings,
                ));
            }
            Err(StoreOrApi::Store(StoreError::Conflict { .. })) if !pinned => continue,
            Err(e) => return Err(e.into_api(&kind, &name)),
        }
    }
    Err(ApiError::too_many_updates(&kind, &name))
}
