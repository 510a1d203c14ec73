//! Container image references: `[registry/]repository[:tag][@digest]`, and
//! the add / remove / replace edits of an imageOverrider on one component.
//!
//! Parsing keeps what is written (`nginx` stays `nginx`, it is not expanded
//! to `docker.io/library/nginx`), so an image no rule changes round-trips
//! exactly. The first path part is a registry host when it contains `.` or
//! `:` or is `localhost` (Docker's rule); otherwise the whole name is the
//! repository and the registry is Docker Hub by default.
//!
//! Docker Hub defaults: on Docker Hub, a one-part repository such as `nginx`
//! is short for `library/nginx`. When a rule moves such an image to another
//! registry (add or replace of the registry), the `library/` part is written
//! out, because a mirror of Docker Hub stores it under that path and on any
//! other registry the short form names a different repository.

use std::fmt;

use hami_api::override_policy::{ImageComponent, OverriderOperator};

/// Docker Hub's names: an image without a registry lives there.
const DOCKER_HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
/// Docker Hub's namespace for official images.
const LIBRARY: &str = "library/";
/// Longest tag Docker accepts.
const MAX_TAG: usize = 128;
/// Longest name (registry and repository) Docker accepts.
const MAX_NAME: usize = 255;
/// Shortest digest hex accepted (Docker's rule).
const MIN_DIGEST_HEX: usize = 32;

/// Why an image reference or an edit of it is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("empty image reference")]
    Empty,
    #[error("invalid registry {0:?}")]
    Registry(String),
    #[error("invalid repository {0:?} (lowercase letters, digits and . _ - separated by /)")]
    Repository(String),
    #[error("invalid tag {0:?} (letters, digits, _ . -, at most 128, not starting with . or -)")]
    Tag(String),
    #[error("invalid digest {0:?} (algorithm:hex, at least 32 hex digits)")]
    Digest(String),
    #[error("image name longer than 255 characters")]
    TooLong,
    #[error("the repository cannot be removed: an image needs one")]
    RemoveRepository,
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error(
        "{0:?} would read back differently: the first part of the repository looks like a registry host"
    )]
    Ambiguous(String),
}

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host with optional port; `None` means Docker Hub.
    pub registry: Option<String>,
    /// Repository path, e.g. `library/nginx` or `nginx`.
    pub repository: String,
    /// Tag, e.g. `1.25`.
    pub tag: Option<String>,
    /// Digest, e.g. `sha256:<hex>`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `[registry/]repository[:tag][@digest]`.
    pub fn parse(s: &str) -> Result<Self, ImageError> {
        if s.is_empty() {
            return Err(ImageError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                check_digest(d)?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag's ':' comes after the last '/', a port's before it.
        let last_part = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_part..].rfind(':') {
            Some(i) => {
                let t = &rest[last_part + i + 1..];
                check_tag(t)?;
                (&rest[..last_part + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        if name.len() > MAX_NAME {
            return Err(ImageError::TooLong);
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if is_registry_host(first) => {
                check_registry(first)?;
                (Some(first.to_string()), rest)
            }
            _ => (None, name),
        };
        check_repository(repository)?;
        Ok(ImageRef {
            registry,
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// Whether the image lives on Docker Hub (no registry, or one of its names).
    pub fn on_docker_hub(&self) -> bool {
        self.registry
            .as_deref()
            .is_none_or(|r| DOCKER_HUB.contains(&r))
    }

    /// Applies one imageOverrider edit. The result is checked as a whole, so
    /// an edited image always parses back to the same reference.
    ///
    /// - Registry: add appends the value to the registry (sets it when there
    ///   is none), replace sets it, remove drops it (Docker Hub then).
    /// - Repository: add appends, replace sets; remove is an error.
    /// - Tag: add appends to the tag (sets it when there is none), replace
    ///   sets the tag, or the digest when the value is `algorithm:hex`;
    ///   remove drops tag and digest. Setting a tag drops the digest, since a
    ///   digest pins the image and the runtime would ignore the new tag.
    ///
    /// On error `self` is unchanged.
    pub fn edit(
        &mut self,
        component: ImageComponent,
        op: OverriderOperator,
        value: Option<&str>,
    ) -> Result<(), ImageError> {
        let mut next = self.clone();
        next.edit_in_place(component, op, value)?;
        *self = next;
        Ok(())
    }

    fn edit_in_place(
        &mut self,
        component: ImageComponent,
        op: OverriderOperator,
        value: Option<&str>,
    ) -> Result<(), ImageError> {
        let value = || value.filter(|v| !v.is_empty());
        match (component, op) {
            (ImageComponent::Registry, OverriderOperator::Remove) => self.registry = None,
            (ImageComponent::Registry, op) => {
                let v = value().ok_or(ImageError::MissingValue("registry"))?;
                let new = match (op, &self.registry) {
                    (OverriderOperator::Add, Some(r)) => format!("{r}{v}"),
                    _ => v.to_string(),
                };
                // A host without '.' or ':' would read back as part of
                // the repository.
                if !is_registry_host(&new) {
                    return Err(ImageError::Registry(new));
                }
                check_registry(&new)?;
                if self.on_docker_hub()
                    && !DOCKER_HUB.contains(&new.as_str())
                    && !self.repository.contains('/')
                {
                    self.repository = format!("{LIBRARY}{}", self.repository);
                }
                self.registry = Some(new);
            }
            (ImageComponent::Repository, OverriderOperator::Remove) => {
                return Err(ImageError::RemoveRepository);
            }
            (ImageComponent::Repository, op) => {
                let v = value().ok_or(ImageError::MissingValue("repository"))?;
                let new = match op {
                    OverriderOperator::Add => format!("{}{v}", self.repository),
                    _ => v.to_string(),
                };
                check_repository(&new)?;
                self.repository = new;
            }
            (ImageComponent::Tag, OverriderOperator::Remove) => {
                self.tag = None;
                self.digest = None;
            }
            (ImageComponent::Tag, OverriderOperator::Add) => {
                let v = value().ok_or(ImageError::MissingValue("tag"))?;
                let new = format!("{}{v}", self.tag.as_deref().unwrap_or_default());
                check_tag(&new)?;
                self.tag = Some(new);
                self.digest = None;
            }
            (ImageComponent::Tag, OverriderOperator::Replace) => {
                let v = value().ok_or(ImageError::MissingValue("tag"))?;
                if v.contains(':') {
                    check_digest(v)?;
                    self.digest = Some(v.to_string());
                    self.tag = None;
                } else {
                    check_tag(v)?;
                    self.tag = Some(v.to_string());
                    self.digest = None;
                }
            }
        }
        let name_len = self.registry.as_ref().map_or(0, |r| r.len() + 1) + self.repository.len();
        if name_len > MAX_NAME {
            return Err(ImageError::TooLong);
        }
        // Without a registry, a repository such as `a.b/c` would read back
        // as registry `a.b` (after removing the registry or editing the
        // repository).
        if self.registry.is_none()
            && let Some((first, _)) = self.repository.split_once('/')
            && is_registry_host(first)
        {
            return Err(ImageError::Ambiguous(self.to_string()));
        }
        Ok(())
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Docker's rule for telling a registry host from a repository's first part.
fn is_registry_host(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

/// `host[:port]` or `[ipv6][:port]`.
fn check_registry(r: &str) -> Result<(), ImageError> {
    let bad = || ImageError::Registry(r.to_string());
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
        if ip.is_empty() || !ip.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(bad());
        }
        match after {
            "" => ("x", None),
            p => ("x", Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match r.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        }
    };
    let host_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Parts of lowercase letters and digits, joined inside a part by `.`, `_`,
/// `__` or runs of `-`, parts separated by `/`.
fn check_repository(repo: &str) -> Result<(), ImageError> {
    let part_ok = |p: &str| {
        let b = p.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &p[start..i];
            if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
                return false;
            }
        }
        true
    };
    if repo.split('/').all(part_ok) {
        Ok(())
    } else {
        Err(ImageError::Repository(repo.to_string()))
    }
}

fn check_tag(t: &str) -> Result<(), ImageError> {
    let ok = !t.is_empty()
        && t.len() <= MAX_TAG
        && !t.starts_with(['.', '-'])
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ImageError::Tag(t.to_string()))
    }
}

/// `algorithm:hex`, the algorithm in lowercase letters and digits joined by
/// `+ . _ -`, at least 32 hex digits.
fn check_digest(d: &str) -> Result<(), ImageError> {
    let ok = d.split_once(':').is_some_and(|(alg, hex)| {
        !alg.is_empty()
            && alg.split(['+', '.', '_', '-']).all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
            && hex.len() >= MIN_DIGEST_HEX
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if ok {
        Ok(())
    } else {
        Err(ImageError::Digest(d.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ImageComponent::{Registry, Repository, Tag};
    use OverriderOperator::{Add, Remove, Replace};

    const SHA: &str = "sha256:50d858e0985ecc7f60418aaf0cc5ab587f42c2570a884095a9e8ccacd0f6545c";

    fn img(reg: Option<&str>, repo: &str, tag: Option<&str>, digest: Option<&str>) -> ImageRef {
        ImageRef {
            registry: reg.map(Into::into),
            repository: repo.into(),
            tag: tag.map(Into::into),
            digest: digest.map(Into::into),
        }
    }

    #[test]
    fn parse_table() {
        let with_digest = format!("nginx@{SHA}");
        let tag_and_digest = format!("ghcr.io/org/app:v1@{SHA}");
        let cases: Vec<(&str, ImageRef)> = vec![
            ("nginx", img(None, "nginx", None, None)),
            ("nginx:1.25", img(None, "nginx", Some("1.25"), None)),
            ("library/nginx", img(None, "library/nginx", None, None)),
            (
                "docker.io/library/nginx:latest",
                img(Some("docker.io"), "library/nginx", Some("latest"), None),
            ),
            (
                "registry.k8s.io/pause:3.9",
                img(Some("registry.k8s.io"), "pause", Some("3.9"), None),
            ),
            ("localhost/app", img(Some("localhost"), "app", None, None)),
            (
                "localhost:5000/team/app:dev",
                img(Some("localhost:5000"), "team/app", Some("dev"), None),
            ),
            (
                "fictional.registry.example:10443/karmada/ctl:v1.0.0",
                img(
                    Some("fictional.registry.example:10443"),
                    "karmada/ctl",
                    Some("v1.0.0"),
                    None,
                ),
            ),
            ("[::1]:5000/app", img(Some("[::1]:5000"), "app", None, None)),
            // No '.', ':' or localhost: a Docker Hub namespace, not a host.
            ("myorg/app:1", img(None, "myorg/app", Some("1"), None)),
            (&with_digest, img(None, "nginx", None, Some(SHA))),
            (
                &tag_and_digest,
                img(Some("ghcr.io"), "org/app", Some("v1"), Some(SHA)),
            ),
            (
                "a__b/c-----d/e.f_g:T_1.-x",
                img(None, "a__b/c-----d/e.f_g", Some("T_1.-x"), None),
            ),
        ];
        for (s, want) in cases {
            let got = ImageRef::parse(s);
            assert_eq!(got.as_ref(), Ok(&want), "{s}");
            assert_eq!(want.to_string(), s, "round trip of {s}");
        }
    }

    #[test]
    fn parse_rejects() {
        let cases: Vec<(&str, ImageError)> = vec![
            ("", ImageError::Empty),
            ("Nginx", ImageError::Repository("Nginx".into())),
            ("nginx:", ImageError::Tag("".into())),
            ("nginx:-x", ImageError::Tag("-x".into())),
            ("nginx:a b", ImageError::Tag("a b".into())),
            ("nginx@sha256:abc", ImageError::Digest("sha256:abc".into())),
            ("nginx@", ImageError::Digest("".into())),
            ("reg.io/", ImageError::Repository("".into())),
            ("reg.io//app", ImageError::Repository("/app".into())),
            ("a..b/app", ImageError::Registry("a..b".into())),
            (
                "reg.io:port/app",
                ImageError::Registry("reg.io:port".into()),
            ),
            ("app-", ImageError::Repository("app-".into())),
            ("a.-b", ImageError::Repository("a.-b".into())),
            ("/app", ImageError::Repository("/app".into())),
        ];
        for (s, want) in cases {
            assert_eq!(ImageRef::parse(s), Err(want), "{s:?}");
        }
        let long = format!("reg.io/{}", "a".repeat(260));
        assert_eq!(ImageRef::parse(&long), Err(ImageError::TooLong));
    }

    #[test]
    fn edit_table() {
        let with_digest = format!("nginx@{SHA}");
        let tag_and_digest = format!("ghcr.io/org/app:v1@{SHA}");
        let pinned = format!("app@{SHA}");
        let quay = format!("quay.io/org/app:v1@{SHA}");
        let long_tag = "y".repeat(128);
        let too_long = format!("x{long_tag}");
        type Case<'a> = (
            &'a str,
            &'a str,
            ImageComponent,
            OverriderOperator,
            Option<&'a str>,
            Result<&'a str, ImageError>,
        );
        let cases: Vec<Case<'_>> = vec![
            // Registry.
            (
                "add registry to one without",
                "myorg/app:1",
                Registry,
                Add,
                Some("reg.example.com"),
                Ok("reg.example.com/myorg/app:1"),
            ),
            (
                "add registry appends",
                "registry.k8s.io/pause",
                Registry,
                Add,
                Some(".cn"),
                Ok("registry.k8s.io.cn/pause"),
            ),
            (
                "replace registry",
                "registry.k8s.io/pause:3.9",
                Registry,
                Replace,
                Some("mirror.local:5000"),
                Ok("mirror.local:5000/pause:3.9"),
            ),
            (
                "replace registry keeps digest",
                &tag_and_digest,
                Registry,
                Replace,
                Some("quay.io"),
                Ok(&quay),
            ),
            (
                "official image gets library/",
                "nginx:1.25",
                Registry,
                Replace,
                Some("mirror.local"),
                Ok("mirror.local/library/nginx:1.25"),
            ),
            (
                "explicit docker.io official image",
                "docker.io/nginx",
                Registry,
                Replace,
                Some("mirror.local"),
                Ok("mirror.local/library/nginx"),
            ),
            (
                "add registry to official image",
                "nginx",
                Registry,
                Add,
                Some("mirror.local"),
                Ok("mirror.local/library/nginx"),
            ),
            (
                "docker.io to docker.io stays short",
                "nginx",
                Registry,
                Replace,
                Some("docker.io"),
                Ok("docker.io/nginx"),
            ),
            (
                "remove registry",
                "docker.io/library/nginx:1",
                Registry,
                Remove,
                None,
                Ok("library/nginx:1"),
            ),
            (
                "remove registry of a repository that looks like a host",
                "reg.io/a.b/c",
                Registry,
                Remove,
                None,
                Err(ImageError::Ambiguous("a.b/c".into())),
            ),
            (
                "remove absent registry",
                "nginx",
                Registry,
                Remove,
                None,
                Ok("nginx"),
            ),
            (
                "bad registry",
                "nginx",
                Registry,
                Replace,
                Some("bad host"),
                Err(ImageError::Registry("bad host".into())),
            ),
            (
                "registry that reads as a namespace",
                "nginx",
                Registry,
                Replace,
                Some("team"),
                Err(ImageError::Registry("team".into())),
            ),
            (
                "registry needs a value",
                "nginx",
                Registry,
                Replace,
                None,
                Err(ImageError::MissingValue("registry")),
            ),
            // Repository.
            (
                "replace repository",
                "reg.io/a/b:1",
                Repository,
                Replace,
                Some("c/d"),
                Ok("reg.io/c/d:1"),
            ),
            (
                "add repository appends",
                "reg.io/app:1",
                Repository,
                Add,
                Some("-gpu"),
                Ok("reg.io/app-gpu:1"),
            ),
            (
                "repository that reads as a registry",
                "app",
                Repository,
                Replace,
                Some("localhost/app"),
                Err(ImageError::Ambiguous("localhost/app".into())),
            ),
            (
                "remove repository fails",
                "reg.io/app",
                Repository,
                Remove,
                None,
                Err(ImageError::RemoveRepository),
            ),
            (
                "uppercase repository",
                "app",
                Repository,
                Replace,
                Some("App"),
                Err(ImageError::Repository("App".into())),
            ),
            // Tag.
            (
                "replace tag",
                "nginx:1.25",
                Tag,
                Replace,
                Some("1.27"),
                Ok("nginx:1.27"),
            ),
            (
                "replace tag on digest image",
                &with_digest,
                Tag,
                Replace,
                Some("1.27"),
                Ok("nginx:1.27"),
            ),
            (
                "replace tag with a digest",
                "nginx:1.25",
                Tag,
                Replace,
                Some(SHA),
                Ok(&with_digest),
            ),
            (
                "add tag to one without",
                "nginx",
                Tag,
                Add,
                Some("1.25"),
                Ok("nginx:1.25"),
            ),
            (
                "add tag appends",
                "app:1.0",
                Tag,
                Add,
                Some("-cuda12"),
                Ok("app:1.0-cuda12"),
            ),
            (
                "add tag to pinned image",
                &pinned,
                Tag,
                Add,
                Some("v2"),
                Ok("app:v2"),
            ),
            (
                "remove tag",
                "reg.io/app:1.0",
                Tag,
                Remove,
                None,
                Ok("reg.io/app"),
            ),
            (
                "remove tag and digest",
                &tag_and_digest,
                Tag,
                Remove,
                None,
                Ok("ghcr.io/org/app"),
            ),
            ("remove absent tag", "app", Tag, Remove, None, Ok("app")),
            (
                "bad tag",
                "app",
                Tag,
                Replace,
                Some("a/b"),
                Err(ImageError::Tag("a/b".into())),
            ),
            (
                "bad digest",
                "app",
                Tag,
                Replace,
                Some("sha256:xyz"),
                Err(ImageError::Digest("sha256:xyz".into())),
            ),
            (
                "tag too long after add",
                "app:x",
                Tag,
                Add,
                Some(&long_tag),
                Err(ImageError::Tag(too_long.clone())),
            ),
        ];
        for (name, image, component, op, value, want) in cases {
            let mut r = ImageRef::parse(image).unwrap_or_else(|e| panic!("{name}: {e}"));
            let got = r.edit(component, op, value).map(|()| r.to_string());
            assert_eq!(got, want.map(str::to_string), "{name}");
        }
    }
}
