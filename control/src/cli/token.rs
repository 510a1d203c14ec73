//! `hami token create|list|delete`: bootstrap tokens for joining member
//! clusters, as `kubeadm token` manages them (Secrets
//! `kube-system/bootstrap-token-<id>`), each bound to one cluster name by
//! its extra group `system:bootstrappers:hami:cluster:<name>`.

use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

use super::{ClientArgs, kubeconfig};
use crate::apiserver::auth::bootstrap::{self, TokenSecret};

/// The extra group that binds a token to one cluster name.
pub const CLUSTER_GROUP_PREFIX: &str = "system:bootstrappers:hami:cluster:";

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a bootstrap token that joins one member cluster and print
    /// what the agent needs (the token and the CA's hash).
    Create(CreateArgs),
    /// List the bootstrap tokens (never their secrets).
    List(ListArgs),
    /// Delete (revoke) a bootstrap token by its id or whole value.
    Delete(DeleteArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The member cluster the token may join (and nothing else).
    #[arg(long)]
    pub cluster: String,
    /// How long the token is valid: 30m, 24h, 7d; 0 never expires.
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    pub ttl: Duration,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// The token's id (6 characters) or the whole token.
    pub token: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `30m`, `24h`, `7d`, `90s` or `0`.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30m, 24h or 7d"))?;
    let secs = match unit {
        "" | "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    secs.map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// A DNS-1123 label: what a cluster name (and its `hami-es-<name>`
/// namespace) must be.
fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63 - "hami-es-".len()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// `n` characters of `[a-z0-9]` from the system's random source.
fn random_chars(n: usize) -> anyhow::Result<String> {
    use ring::rand::SecureRandom as _;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let rng = ring::rand::SystemRandom::new();
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut byte = [0u8; 1];
        rng.fill(&mut byte)
            .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
        // Rejection sampling keeps every character equally likely.
        if usize::from(byte[0]) < 252 {
            out.push(char::from(ALPHABET[usize::from(byte[0]) % 36]));
        }
    }
    Ok(out)
}

fn rfc3339(t: SystemTime) -> anyhow::Result<String> {
    let ts = k8s_openapi::jiff::Timestamp::try_from(t).context("expiration time")?;
    Ok(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// The Secret of a new token (what `kubeadm token create` writes).
pub fn token_secret(
    cluster: &str,
    id: &str,
    secret: &str,
    expiration: Option<&str>,
) -> serde_json::Value {
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut data = json!({
        "token-id": b(id),
        "token-secret": b(secret),
        "usage-bootstrap-authentication": b("true"),
        "usage-bootstrap-signing": b("true"),
        "auth-extra-groups": b(&format!("{CLUSTER_GROUP_PREFIX}{cluster}")),
        "description": b(&format!("joins member cluster {cluster} (hami token create)")),
    });
    if let Some(at) = expiration {
        data["expiration"] = json!(b(at));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": bootstrap::SECRET_TYPE,
        "metadata": {
            "name": format!("{}{id}", bootstrap::SECRET_PREFIX),
            "namespace": bootstrap::NAMESPACE,
            "labels": {"hami.io/cluster": cluster},
        },
        "data": data,
    })
}

pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Create(a) => create(a).await,
        TokenCommand::List(a) => list(a).await,
        TokenCommand::Delete(a) => delete(a).await,
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    if !valid_cluster_name(&args.cluster) {
        bail!(
            "--cluster {:?}: a cluster name must be a DNS label of at most 55 characters (lower case letters, digits and '-', starting and ending with a letter or digit)",
            args.cluster
        );
    }
    let client = super::client::connect(&args.client).await?;
    let (id, secret) = (random_chars(6)?, random_chars(16)?);
    let expiration = if args.ttl.is_zero() {
        None
    } else {
        Some(rfc3339(SystemTime::now() + args.ttl)?)
    };
    let object = token_secret(&args.cluster, &id, &secret, expiration.as_deref());
    let secret_obj: Secret = serde_json::from_value(object)?;
    Api::<Secret>::namespaced(client.clone(), bootstrap::NAMESPACE)
        .create(&PostParams::default(), &secret_obj)
        .await
        .context("create the token's Secret")?;
    // The CA the joining agent must find in cluster-info, by its hash.
    let ca = kubeconfig::certificate_authority(&args.client.kubeconfig)?;
    let hash = crate::pki::ca_cert_hash_of_pem(&ca)?;
    let server = Api::<ConfigMap>::namespaced(client, "kube-public")
        .get_opt("cluster-info")
        .await
        .ok()
        .flatten()
        .and_then(|cm| cm.data?.get("kubeconfig").cloned())
        .and_then(|kc| kubeconfig::server_of(&kc));
    outln!("{id}.{secret}");
    outln!("  cluster:        {}", args.cluster);
    match &expiration {
        Some(at) => outln!("  expires:        {at}"),
        None => outln!("  expires:        never"),
    }
    outln!("  ca-cert-hash:   {hash}");
    if let Some(server) = &server {
        outln!("  control plane:  {server}");
    }
    // hami-agent's --join flags (kubeadm's `token create --print-join-command`).
    let url = server
        .as_deref()
        .unwrap_or("https://<control-plane>:<port>");
    outln!("join the member cluster's agent with:");
    outln!(
        "  hami-agent --cluster-name {} --join {url} --token {id}.{secret} --ca-cert-hash {hash}",
        args.cluster
    );
    Ok(())
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = super::client::connect(&args.client).await?;
    let secrets = Api::<Secret>::namespaced(client, bootstrap::NAMESPACE)
        .list(&ListParams::default())
        .await?;
    outln!("{:<8} {:<24} {:<22} CLUSTER", "ID", "EXPIRES", "STATE");
    let now = SystemTime::now();
    for s in secrets.items {
        let Some(token) = serde_json::to_value(&s)
            .ok()
            .and_then(|v| TokenSecret::from_object(&v))
        else {
            continue;
        };
        let expires = match token.expiration {
            Some(at) => rfc3339(at)?,
            None => "never".to_owned(),
        };
        let state = if token.expired(now) {
            "expired"
        } else {
            "valid"
        };
        let cluster = token
            .extra_groups
            .iter()
            .find_map(|g| g.strip_prefix(CLUSTER_GROUP_PREFIX))
            .unwrap_or("-");
        outln!("{:<8} {expires:<24} {state:<22} {cluster}", token.id);
    }
    Ok(())
}

async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let id = args.token.split('.').next().unwrap_or_default();
    if id.len() != 6 {
        bail!(
            "{:?} is neither a token id (6 characters) nor a token",
            args.token
        );
    }
    let client = super::client::connect(&args.client).await?;
    Api::<Secret>::namespaced(client, bootstrap::NAMESPACE)
        .delete(
            &format!("{}{id}", bootstrap::SECRET_PREFIX),
            &DeleteParams::default(),
        )
        .await
        .with_context(|| format!("delete bootstrap token {id}"))?;
    outln!("bootstrap token {id} deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_secret_is_a_bootstrap_token_for_its_cluster() {
        let object = token_secret(
            "east",
            "abcdef",
            "0123456789abcdef",
            Some("2030-01-01T00:00:00Z"),
        );
        let read = TokenSecret::from_object(&object).unwrap();
        assert!(read.authentication && read.signing);
        assert_eq!(
            read.user().groups,
            vec![
                "system:bootstrappers".to_owned(),
                "system:bootstrappers:hami:cluster:east".to_owned()
            ]
        );
        assert_eq!(
            read.expiration,
            bootstrap::parse_rfc3339("2030-01-01T00:00:00Z")
        );
    }

    #[test]
    fn random_tokens_have_the_bootstrap_shape() {
        for _ in 0..50 {
            let token = format!("{}.{}", random_chars(6).unwrap(), random_chars(16).unwrap());
            assert!(bootstrap::parse_token(&token).is_some(), "{token}");
        }
    }

    #[test]
    fn ttl_and_cluster_names() {
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_ttl("0"), Ok(Duration::ZERO));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(valid_cluster_name("gpu-east-1"));
        for bad in ["", "-a", "a-", "A", "a.b", &"a".repeat(56)] {
            assert!(!valid_cluster_name(bad), "{bad}");
        }
    }
}
