//! The kubeconfig `hami up` writes for kubectl and kube clients.

use std::io::Write;
use std::path::Path;

/// A kubeconfig with one plain-HTTP cluster, user and context, all named `hami`.
pub fn render(server: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: hami
  cluster:
    server: {server}
users:
- name: hami
  user: {{}}
contexts:
- name: hami
  context:
    cluster: hami
    user: hami
    namespace: default
current-context: hami
preferences: {{}}
"
    )
}

/// Writes `contents` to `path` atomically (temporary file, fsync, rename).
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
        let mut file = std::fs::File::create(&tmp)?;
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
}
