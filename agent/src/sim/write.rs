//! The writes the simulator's controllers decide, and the one function that
//! sends them to the API server. Decisions are pure values ([`Write`]);
//! every kind goes through one code path (a dynamic API over the kind's
//! resource), and "already there" / "already gone" answers count as done,
//! so a decision taken from a stale cache is harmless when repeated.

use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use serde_json::Value;

/// The kinds the simulator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// core/v1 Pod.
    Pod,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// batch/v1 Job.
    Job,
    /// core/v1 ResourceQuota (status only).
    ResourceQuota,
}

impl Kind {
    fn resource(self) -> ApiResource {
        match self {
            Kind::Pod => ApiResource::erase::<core::Pod>(&()),
            Kind::ReplicaSet => ApiResource::erase::<apps::ReplicaSet>(&()),
            Kind::Deployment => ApiResource::erase::<apps::Deployment>(&()),
            Kind::StatefulSet => ApiResource::erase::<apps::StatefulSet>(&()),
            Kind::Job => ApiResource::erase::<batch::Job>(&()),
            Kind::ResourceQuota => ApiResource::erase::<core::ResourceQuota>(&()),
        }
    }

    /// Kubernetes' kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::Job => "Job",
            Kind::ResourceQuota => "ResourceQuota",
        }
    }
}

/// One write.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Create an object (a full JSON object with apiVersion and kind).
    Create {
        /// Kind.
        kind: Kind,
        /// Namespace.
        namespace: String,
        /// The object.
        object: Value,
    },
    /// Delete an object.
    Delete {
        /// Kind.
        kind: Kind,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// JSON merge patch of the main resource (metadata, spec).
    Merge {
        /// Kind.
        kind: Kind,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The patch.
        patch: Value,
    },
    /// JSON merge patch `{"status": status}` of the status subresource.
    Status {
        /// Kind.
        kind: Kind,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The new status fields.
        status: Value,
    },
}

impl Write {
    /// The kind written.
    pub fn kind(&self) -> Kind {
        match self {
            Write::Create { kind, .. }
            | Write::Delete { kind, .. }
            | Write::Merge { kind, .. }
            | Write::Status { kind, .. } => *kind,
        }
    }

    /// Short verb, for logs and metrics (a fixed set).
    pub fn verb(&self) -> &'static str {
        match self {
            Write::Create { .. } => "create",
            Write::Delete { .. } => "delete",
            Write::Merge { .. } => "patch",
            Write::Status { .. } => "status",
        }
    }
}

/// How a write ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Done,
    /// Nothing to do: already exists (create) or already gone.
    Moot,
    /// The API answered an error or could not be reached.
    Failed(String),
}

/// Sends one write.
pub async fn send(client: &kube::Client, write: &Write, manager: &str) -> Outcome {
    let kind = write.kind();
    let ar = kind.resource();
    let result = match write {
        Write::Create {
            namespace, object, ..
        } => {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
            match serde_json::from_value::<DynamicObject>(object.clone()) {
                Ok(obj) => {
                    let pp = PostParams {
                        field_manager: Some(manager.to_string()),
                        ..PostParams::default()
                    };
                    api.create(&pp, &obj).await.map(|_| ())
                }
                Err(e) => return Outcome::Failed(format!("object: {e}")),
            }
        }
        Write::Delete {
            namespace, name, ..
        } => {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
            api.delete(name, &DeleteParams::background())
                .await
                .map(|_| ())
        }
        Write::Merge {
            namespace,
            name,
            patch,
            ..
        } => {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
            api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map(|_| ())
        }
        Write::Status {
            namespace,
            name,
            status,
            ..
        } => {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
            let patch = serde_json::json!({ "status": status });
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
        }
    };
    match result {
        Ok(()) => Outcome::Done,
        Err(kube::Error::Api(s)) if s.code == 409 && matches!(write, Write::Create { .. }) => {
            Outcome::Moot
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Outcome::Moot,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
