//! One leader among the replicas (DESIGN.md: "one leader runs the
//! controllers (etcd lease)").
//!
//! A replica holds leadership while its key exists: created only if absent,
//! attached to an etcd lease it keeps alive. When the leader stops renewing
//! (it died, or lost etcd) etcd deletes the key as the lease expires and a
//! waiting replica creates it; a leader that resigns revokes its lease, so
//! the next one takes over at once. The key lives beside the store's prefix
//! (`/hami-leader/NAME` for `/hami/`), out of the store's keys.
//!
//! A leader stops acting as one when [`Leadership::lost`] resolves: its
//! lease could not be renewed for two thirds of its TTL (so before etcd can
//! give the key to another replica), or its key was deleted or replaced.

use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use tokio::sync::watch;

use super::EtcdStore;
use super::cache::timed_out;
use super::convert;
use crate::{Result, StoreError};

/// Held leadership. Dropping it stops renewing the lease (another replica
/// takes over once it expires); [`resign`](Self::resign) hands over at once.
pub struct Leadership {
    client: Client,
    lease: i64,
    lost: watch::Receiver<bool>,
    /// Stops the renewal and the key guard.
    stop: watch::Sender<bool>,
    timeout: Duration,
}

impl Leadership {
    /// Resolves once this replica must no longer act as the leader.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|l| *l).await;
    }

    /// True once [`lost`](Self::lost) has resolved.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// The etcd lease the leader key is attached to.
    pub fn lease_id(&self) -> i64 {
        self.lease
    }

    /// Gives leadership up now: revokes the lease, which deletes the key.
    pub async fn resign(self) -> Result<()> {
        self.stop.send_replace(true);
        let mut leases = self.client.lease_client();
        match tokio::time::timeout(self.timeout, leases.revoke(self.lease)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(convert::error(e)),
            Err(_) => Err(timed_out(self.timeout)),
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// `/hami-leader/NAME` for the prefix `/hami/`.
fn leader_key(prefix: &str, name: &str) -> Vec<u8> {
    format!("{}-leader/{name}", prefix.trim_end_matches('/')).into_bytes()
}

impl EtcdStore {
    /// Waits until this replica is the leader for `name`, then returns its
    /// [`Leadership`]; `identity` is written in the key (who leads). `ttl`
    /// (at least 2 s) bounds how long a dead leader keeps it.
    pub async fn campaign(&self, name: &str, identity: &str, ttl: Duration) -> Result<Leadership> {
        self.check_open()?;
        let ttl = ttl.max(Duration::from_secs(2));
        let timeout = self.options.request_timeout;
        let key = leader_key(&self.options.prefix, name);
        let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let mut leases = self.client.lease_client();
        let lease = tokio::time::timeout(timeout, leases.grant(ttl_secs, None))
            .await
            .map_err(|_| timed_out(timeout))?
            .map_err(convert::error)?
            .id();
        let (lost_tx, lost) = watch::channel(false);
        let (stop, stopped) = watch::channel(false);
        let leadership = Leadership {
            client: self.client.clone(),
            lease,
            lost,
            stop,
            timeout,
        };
        self.runtime.spawn(renew(
            self.client.clone(),
            lease,
            ttl,
            lost_tx.clone(),
            stopped.clone(),
        ));
        let mut closed = self.stop.subscribe();
        loop {
            if leadership.is_lost() {
                return Err(StoreError::Unavailable(
                    "the etcd lease expired while campaigning".into(),
                ));
            }
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key.clone(),
                    identity,
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            let (response, revision) = self.txn(txn).await?;
            if response.succeeded() {
                self.runtime
                    .spawn(guard(self.client.clone(), key, revision, lost_tx, stopped));
                tracing::info!(name, identity, lease, "elected leader");
                return Ok(leadership);
            }
            // Someone leads: wait for its key to go (or a while, then ask again).
            tokio::select! {
                _ = deleted(&self.client, &key, revision, ttl) => {}
                _ = closed.wait_for(|s| *s) => return Err(StoreError::Closed),
            }
        }
    }
}

/// Returns when `key` is deleted after `revision`, or after `limit`.
async fn deleted(client: &Client, key: &[u8], revision: u64, limit: Duration) {
    let options = WatchOptions::new().with_start_revision(convert::etcd_revision(revision + 1));
    let wait = async {
        let Ok(mut stream) = client.watch_client().watch(key, Some(options)).await else {
            return;
        };
        while let Ok(Some(response)) = stream.message().await {
            if response.canceled()
                || response
                    .events()
                    .iter()
                    .any(|e| e.kv().is_some_and(|kv| kv.version() == 0))
            {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(limit, wait).await;
}

/// Renews the lease every third of `ttl`; reports lost when etcd says the
/// lease is gone or when two thirds of `ttl` pass without a renewal.
async fn renew(
    client: Client,
    lease: i64,
    ttl: Duration,
    lost: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let every = ttl / 3;
    let mut renewed = Instant::now();
    let mut channel: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let attempt = async {
            if channel.is_none() {
                channel = Some(client.lease_client().keep_alive(lease).await?);
            }
            let Some((keeper, stream)) = channel.as_mut() else {
                return Ok(None);
            };
            keeper.keep_alive().await?;
            stream.message().await.map(|m| m.map(|r| r.ttl()))
        };
        match tokio::time::timeout(every, attempt).await {
            Ok(Ok(Some(remaining))) if remaining > 0 => renewed = Instant::now(),
            Ok(Ok(Some(_))) => {
                tracing::error!(lease, "the leader's etcd lease expired");
                lost.send_replace(true);
                return;
            }
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(e))) => {
                tracing::error!(lease, error = %e, "the leader's etcd lease is gone");
                lost.send_replace(true);
                return;
            }
            other => {
                channel = None;
                let error = match other {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer".into(),
                };
                tracing::warn!(lease, %error, "renewing the leader's etcd lease failed");
            }
        }
        if renewed.elapsed() >= ttl * 2 / 3 {
            tracing::error!(lease, "could not renew the leader's etcd lease in time");
            lost.send_replace(true);
            return;
        }
    }
}

/// Reports lost when the leader key changes after `revision` (deleted,
/// or written by someone else). When its watch breaks (or was compacted),
/// it reads the key: still the one created at `revision`, it watches again.
async fn guard(
    client: Client,
    key: Vec<u8>,
    revision: u64,
    lost: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut from = revision + 1;
    loop {
        let options = WatchOptions::new().with_start_revision(convert::etcd_revision(from));
        let watch = async {
            let mut stream = client
                .watch_client()
                .watch(key.clone(), Some(options))
                .await?;
            while let Some(response) = stream.message().await? {
                if response.compact_revision() > 0 || response.canceled() {
                    break;
                }
                if !response.events().is_empty() {
                    return Ok(true);
                }
            }
            Ok::<bool, etcd_client::Error>(false)
        };
        let changed = tokio::select! {
            changed = watch => changed,
            _ = stop.wait_for(|s| *s) => return,
        };
        if let Ok(true) = changed {
            tracing::error!(key = %String::from_utf8_lossy(&key), "the leader key changed");
            lost.send_replace(true);
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // Unreachable etcd: the renewal decides whether this replica still leads.
        let Ok(current) = client.kv_client().get(key.clone(), None).await else {
            continue;
        };
        let ours = current
            .kvs()
            .first()
            .is_some_and(|kv| convert::revision(kv.create_revision()) == revision);
        if !ours {
            tracing::error!(key = %String::from_utf8_lossy(&key), "the leader key is gone");
            lost.send_replace(true);
            return;
        }
        if let Some(header) = current.header() {
            from = convert::revision(header.revision()) + 1;
        }
    }
}
