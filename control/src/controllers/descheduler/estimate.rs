//! Karmada's `GetUnschedulableReplicas` over gRPC, asked of the estimator
//! each cluster advertises in its `estimator.hami.io/endpoint` annotation
//! (the Pull agents', the Push agents' in this process, or any Karmada
//! estimator), dialed as [`EstimatorDial`] says (plain gRPC or TLS). One
//! channel per endpoint, kept; each call times out. A cluster that does not
//! answer counts as having none (its replicas stay).

use std::collections::HashMap;
use std::time::Duration;

use hami_api::binding::ObjectReference;
use hami_proto::github::com::karmada_io::karmada::pkg::estimator::{pb, service};
use parking_lot::Mutex;
use tonic::transport::Channel;

use crate::controllers::estimator_dial::{DialError, EstimatorDial};

/// Why an estimator gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("estimator call: {0}")]
    Call(#[from] tonic::Status),
    #[error("estimator call timed out")]
    Timeout,
}

/// Estimator clients, one channel per endpoint.
pub struct Unschedulable {
    timeout: Duration,
    dial: EstimatorDial,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Unschedulable {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            dial: EstimatorDial::plain(),
            channels: Mutex::default(),
        }
    }

    /// Dials the estimators as `dial` says (default: plain gRPC).
    pub fn with_dial(mut self, dial: EstimatorDial) -> Self {
        self.dial = dial;
        self
    }

    /// Drops the channels of endpoints no cluster advertises any more
    /// (an agent that restarted serves on a new port).
    pub fn keep_only<'a>(&self, endpoints: impl IntoIterator<Item = &'a String>) {
        let keep: std::collections::HashSet<&String> = endpoints.into_iter().collect();
        self.channels.lock().retain(|e, _| keep.contains(e));
    }

    fn channel(&self, endpoint: &str) -> Result<Channel, AskError> {
        if let Some(c) = self.channels.lock().get(endpoint) {
            return Ok(c.clone());
        }
        let channel = self.dial.connect_lazy(endpoint, self.timeout)?;
        self.channels
            .lock()
            .insert(endpoint.to_string(), channel.clone());
        Ok(channel)
    }

    /// Replicas of `resource` in `cluster` that have been unschedulable for
    /// at least `threshold`.
    pub async fn ask(
        &self,
        endpoint: &str,
        cluster: &str,
        resource: &ObjectReference,
        threshold: Duration,
    ) -> Result<i32, AskError> {
        let mut client = service::estimator_client::EstimatorClient::new(self.channel(endpoint)?);
        let request = pb::UnschedulableReplicasRequest {
            cluster: Some(cluster.to_string()),
            resource: Some(pb::ObjectReference {
                api_version: Some(resource.api_version.clone()),
                kind: Some(resource.kind.clone()),
                namespace: resource.namespace.clone(),
                name: Some(resource.name.clone()),
            }),
            unschedulable_threshold: Some(i64::try_from(threshold.as_nanos()).unwrap_or(i64::MAX)),
        };
        let answer =
            tokio::time::timeout(self.timeout, client.get_unschedulable_replicas(request)).await;
        match answer {
            Ok(Ok(r)) => Ok(r.into_inner().unschedulable_replicas.unwrap_or(0).max(0)),
            Ok(Err(status)) => {
                // A broken channel is rebuilt on the next call.
                self.channels.lock().remove(endpoint);
                Err(status.into())
            }
            Err(_) => Err(AskError::Timeout),
        }
    }
}
