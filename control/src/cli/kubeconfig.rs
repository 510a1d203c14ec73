//! The kubeconfig `hami up` writes for kubectl and kube clients.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;

/// What a kubeconfig's cluster and user carry over TLS, all PEM.
pub struct TlsCredentials<'a> {
    /// The CA that signed the server's certificate.
    pub ca: &'a str,
    /// The client certificate and its key (x509 authentication).
    pub client_cert: &'a str,
    pub client_key: &'a str,
}

fn b64(pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(pem.as_bytes())
}

/// The `clusters:` part: one cluster `hami` at `server`, trusting `ca`.
fn clusters(server: &str, ca: Option<&str>) -> String {
    let ca = ca
        .map(|ca| format!("    certificate-authority-data: {}\n", b64(ca)))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: hami\n  cluster:\n    server: {server}\n{ca}"
    )
}

/// The rest of a kubeconfig after its clusters: user `hami` (`user`, the
/// YAML of its fields, or `{}`) and context `hami` on namespace default.
fn user_and_context(user: &str) -> String {
    format!(
        "users:\n- name: hami\n  user:{user}contexts:\n- name: hami\n  context:\n    cluster: hami\n    user: hami\n    namespace: default\ncurrent-context: hami\npreferences: {{}}\n"
    )
}

/// A kubeconfig with one cluster, user and context, all named `hami`; the
/// CA and the client pair are embedded (as kubeadm's admin.conf).
pub fn render_tls(server: &str, tls: &TlsCredentials<'_>) -> String {
    let user = format!(
        "\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(tls.client_cert),
        b64(tls.client_key)
    );
    clusters(server, Some(tls.ca)) + &user_and_context(&user)
}

/// The kubeconfig of `kube-public/cluster-info` (kubeadm's): the server
/// and its CA, no user.
pub fn render_cluster_info(server: &str, ca: &str) -> String {
    clusters(server, Some(ca))
}

/// The first cluster's server of a kubeconfig text.
pub fn server_of(text: &str) -> Option<String> {
    let kc = kube::config::Kubeconfig::from_yaml(text).ok()?;
    kc.clusters.first()?.cluster.as_ref()?.server.clone()
}

/// The PEM of the CA the current context's cluster trusts
/// (`certificate-authority-data`, or the file `certificate-authority`).
pub fn certificate_authority(path: &Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("read kubeconfig {}", path.display()))?;
    let context = kc
        .current_context
        .as_deref()
        .and_then(|name| kc.contexts.iter().find(|c| c.name == name))
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone());
    let cluster = kc
        .clusters
        .iter()
        .find(|c| context.as_deref().is_none_or(|name| c.name == name))
        .and_then(|c| c.cluster.as_ref())
        .with_context(|| format!("{}: no cluster", path.display()))?;
    if let Some(data) = &cluster.certificate_authority_data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .with_context(|| {
                format!(
                    "{}: certificate-authority-data is not base64",
                    path.display()
                )
            })?;
        return String::from_utf8(bytes)
            .with_context(|| format!("{}: certificate-authority-data is not PEM", path.display()));
    }
    if let Some(file) = &cluster.certificate_authority {
        return std::fs::read_to_string(file).with_context(|| format!("read {file}"));
    }
    anyhow::bail!(
        "{}: the cluster names no CA (certificate-authority-data): a plain-HTTP control plane has no bootstrap tokens",
        path.display()
    )
}

/// A kubeconfig with one plain-HTTP cluster, user and context, all named `hami`.
pub fn render(server: &str) -> String {
    clusters(server, None) + &user_and_context(" {}\n")
}

/// Writes `contents` to `path` atomically (temporary file, fsync, rename),
/// mode 0600.
pub fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("kubeconfig")
    ));
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let _ = std::fs::remove_file(&tmp);
        // It may hold a client key: readable by its owner only, from the
        // first byte.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_is_readable_by_kube() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        write_atomic(&path, &render("http://127.0.0.1:1234")).unwrap();
        let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("hami"));
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("http://127.0.0.1:1234"));
    }

    #[test]
    fn tls_kubeconfig_and_cluster_info_carry_the_ca_and_the_pair() {
        let tls = TlsCredentials {
            ca: "CA PEM\n",
            client_cert: "CERT PEM\n",
            client_key: "KEY PEM\n",
        };
        let text = render_tls("https://127.0.0.1:7443", &tls);
        let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:7443"));
        let decode = |s: &str| {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
        };
        assert_eq!(
            decode(cluster.certificate_authority_data.as_deref().unwrap()),
            "CA PEM\n"
        );
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(
            decode(user.client_certificate_data.as_deref().unwrap()),
            "CERT PEM\n"
        );
        assert_eq!(kc.current_context.as_deref(), Some("hami"));
        let info = render_cluster_info("https://h:1", "CA PEM\n");
        assert_eq!(server_of(&info).as_deref(), Some("https://h:1"));
        assert!(!info.contains("users:"));
    }
}
