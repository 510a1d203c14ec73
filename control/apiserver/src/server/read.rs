//! get and list.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::State;
use super::dispatch::{Ctx, json_response};
use super::keys;
use super::meta;
use super::objects;
use super::registry::ResourceKind;
use super::request::{self, ListOptions, Representation};
use super::status::ApiError;
use super::table;

/// Renders one object as the client asked (object, Table row, metadata).
pub fn render_one(ctx: &Ctx, object: Value) -> Value {
    match ctx.repr {
        Representation::Object => object,
        Representation::Metadata => table::partial_metadata(&object),
        Representation::Table => {
            let rv = meta::meta_str(&object, "resourceVersion")
                .unwrap_or_default()
                .to_owned();
            table::table(
                &ctx.path.kind,
                &[object],
                json!({"resourceVersion": rv}),
                ctx.query.include_object.as_deref(),
            )
        }
    }
}

pub fn get(state: &Arc<State>, ctx: &Ctx) -> Result<Response, ApiError> {
    let name = ctx.path.name.as_deref().unwrap_or_default();
    let stored = objects::get(state, &ctx.path.kind, ctx.ns(), name)?;
    Ok(json_response(
        StatusCode::OK,
        &render_one(ctx, stored.object),
    ))
}

/// One page of a list: matching objects, the listing revision and the
/// continue token when more remain.
pub struct Page {
    pub items: Vec<Value>,
    pub revision: u64,
    pub continue_token: Option<String>,
}

/// Lists objects of `kind` (one namespace or all), filtered by selectors,
/// at most `options.limit` of them (0 = all).
pub fn list_page(
    state: &State,
    kind: &ResourceKind,
    ns: Option<&str>,
    options: &ListOptions,
) -> Result<Page, ApiError> {
    let prefix = keys::list_prefix(kind, ns);
    let mut start_after = match &options.continue_token {
        Some(token) => {
            let key = request::decode_continue(token)?;
            if !key.starts_with(&prefix) {
                return Err(ApiError::bad_request(
                    "continue token does not belong to this list",
                ));
            }
            Some(key)
        }
        None => None,
    };
    let limit = options.limit;
    let mut items = Vec::new();
    let mut revision = None;
    loop {
        let want = if limit > 0 { limit - items.len() } else { 0 };
        let page = state
            .store
            .list(&prefix, start_after.as_deref(), want)
            .map_err(|e| ApiError::from_store(e, &kind.group, &kind.plural, ""))?;
        revision.get_or_insert(page.revision);
        let last = page.items.last().map(|kv| kv.key.clone());
        for kv in page.items {
            let Some(mut object) = meta::decode_stored(&kv.value, kv.mod_revision) else {
                tracing::warn!(key = kv.key, "skipping undecodable stored object");
                continue;
            };
            kind.present(&mut object);
            if options.selectors.matches(&object) {
                items.push(object);
            }
        }
        if last.is_some() {
            start_after = last;
        }
        let full = limit > 0 && items.len() >= limit;
        if !page.more || full {
            let more = page.more;
            return Ok(Page {
                items,
                revision: revision.unwrap_or(page.revision),
                continue_token: if more {
                    start_after.as_deref().map(request::encode_continue)
                } else {
                    None
                },
            });
        }
    }
}

pub fn list(state: &Arc<State>, ctx: &Ctx) -> Result<Response, ApiError> {
    let kind = &ctx.path.kind;
    let page = list_page(state, kind, ctx.ns(), &ctx.query.list)?;
    let mut list_meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = &page.continue_token {
        list_meta["continue"] = json!(token);
    }
    let body = match ctx.repr {
        Representation::Table => table::table(
            kind,
            &page.items,
            list_meta,
            ctx.query.include_object.as_deref(),
        ),
        Representation::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta,
            "items": page.items.iter().map(table::partial_metadata).collect::<Vec<_>>(),
        }),
        Representation::Object => json!({
            "kind": kind.list_kind,
            "apiVersion": kind.api_version(),
            "metadata": list_meta,
            "items": page.items,
        }),
    };
    Ok(json_response(StatusCode::OK, &body))
}
