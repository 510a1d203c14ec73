//! Patch formats of the Kubernetes API, as pure functions over `serde_json::Value`.
//!
//! - [`merge::merge_patch`]: RFC 7386 JSON merge patch (`application/merge-patch+json`).
//! - [`strategic::strategic_merge_patch`]: strategic merge patch
//!   (`application/strategic-merge-patch+json`) for the built-in kinds, as kubectl sends it.
//! - [`apply::apply`]: server-side apply (`application/apply-patch+yaml`) with
//!   `metadata.managedFields`, and [`apply::record_update`] for every other write.
//!
//! Which lists merge by key is declared once, in [`strategy`].

pub mod apply;
pub mod fieldset;
pub mod merge;
pub mod strategic;
pub mod strategy;

/// Why a merge patch or strategic merge patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The kind has no declared strategy (a custom resource): the server answers
    /// 415 Unsupported Media Type, as Kubernetes does.
    #[error(
        "the body of the request was in an unknown format - accepted media types include: \
         application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml \
         (strategic merge patch is not supported for {api_version}, Kind={kind})"
    )]
    UnsupportedMediaType { api_version: String, kind: String },
    /// The patch is malformed; `path` names where (the server answers 400).
    #[error("invalid patch at {path}: {reason}")]
    BadPatch { path: String, reason: String },
}

/// Renders a list of map keys as a JSON-path-like string for error messages.
pub(crate) fn dotted<S: AsRef<str>>(path: &[S]) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    path.iter().fold(String::new(), |mut acc, s| {
        acc.push('.');
        acc.push_str(s.as_ref());
        acc
    })
}
