//! create, update (PUT, main resource and status), delete and deletecollection.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::State;
use super::deletion::{self, DeleteOptions};
use super::dispatch::{Ctx, json_response};
use super::fields;
use super::objects::{self, UpdateScope};
use super::read;
use super::request;
use super::status::ApiError;

pub async fn create(state: Arc<State>, ctx: &Ctx, mut object: Value) -> Result<Response, ApiError> {
    let warnings = fields::check(&ctx.path.kind, ctx.query.field_validation, &mut object)?;
    let manager = ctx.manager();
    let created = objects::create(&state, &ctx.path.kind, ctx.ns(), object, Some(&manager)).await?;
    Ok(fields::with_warnings(
        json_response(StatusCode::CREATED, &created),
        &warnings,
    ))
}

fn scope(ctx: &Ctx) -> UpdateScope {
    UpdateScope::of_subresource(ctx.path.subresource.as_deref())
}

pub async fn update(state: Arc<State>, ctx: &Ctx, mut object: Value) -> Result<Response, ApiError> {
    let warnings = fields::check(&ctx.path.kind, ctx.query.field_validation, &mut object)?;
    let name = ctx.path.name.as_deref().unwrap_or_default();
    let manager = ctx.manager();
    let updated = objects::update(
        &state,
        &ctx.path.kind,
        ctx.ns(),
        name,
        object,
        scope(ctx),
        Some(&manager),
    )
    .await?;
    Ok(fields::with_warnings(
        json_response(StatusCode::OK, &updated),
        &warnings,
    ))
}

/// The optional DeleteOptions body (empty, JSON, YAML or protobuf); a
/// propagationPolicy kube-apiserver refuses is refused here too.
fn delete_options(ctx: &Ctx, body: &Bytes) -> Result<DeleteOptions, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DeleteOptions::default());
    }
    let value = request::decode_object(body, &request::content_type(&ctx.headers))?;
    DeleteOptions::from_body(Some(&value))
}

pub async fn delete(state: Arc<State>, ctx: &Ctx, body: Bytes) -> Result<Response, ApiError> {
    let options = delete_options(ctx, &body)?;
    let name = ctx.path.name.as_deref().unwrap_or_default();
    let (object, gone) = deletion::delete(&state, &ctx.path.kind, ctx.ns(), name, &options).await?;
    // 202 when finalizers (or namespace termination) keep the object.
    let code = if gone {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(json_response(code, &object))
}

/// Deletes every object the list selectors match; answers the list of them.
pub async fn delete_collection(
    state: Arc<State>,
    ctx: &Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let options = delete_options(ctx, &body)?;
    let kind = &ctx.path.kind;
    let mut list_options = ctx.query.list.clone();
    list_options.limit = 0;
    list_options.continue_token = None;
    let page = read::list_page(&state, kind, ctx.ns(), &list_options)?;
    let mut deleted = Vec::new();
    for object in page.items {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let ns = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match deletion::delete(&state, kind, ns.as_deref(), &name, &options).await {
            Ok((object, _)) => deleted.push(object),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({
        "kind": kind.list_kind,
        "apiVersion": kind.api_version(),
        "metadata": {"resourceVersion": state.store.current_revision().to_string()},
        "items": deleted,
    });
    Ok(json_response(StatusCode::OK, &body))
}
