//! `/readyz` checks beyond "the server answers", registered by whoever runs
//! beside the API in the same process (the controllers of `hami up`).
//!
//! As kube-apiserver's `/readyz`: each check has a name; `/readyz?verbose`
//! lists every check as `[+]name ok` or `[-]name failed: reason`; a failed
//! check answers 503 and lists itself even without `verbose`. A check may
//! also warn (`[!]name warning: reason`): listed, but the answer stays 200,
//! for conditions an operator must see that do not make the API unfit to
//! serve (a controller with a key stuck in retries).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

/// What one check says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Ok,
    /// Shown, but still ready.
    Warn(String),
    /// Not ready (503).
    Fail(String),
}

type CheckFn = Arc<dyn Fn() -> Check + Send + Sync>;

/// The registered checks (cheap to clone; clones share them).
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<BTreeMap<String, CheckFn>>>,
}

impl Readiness {
    /// Adds (or replaces) check `name`.
    pub fn register(
        &self,
        name: impl Into<String>,
        check: impl Fn() -> Check + Send + Sync + 'static,
    ) {
        self.checks.write().insert(name.into(), Arc::new(check));
    }

    /// Removes check `name` (its owner stopped).
    pub fn unregister(&self, name: &str) {
        self.checks.write().remove(name);
    }

    /// Runs every check: (ready, body). The body lists every check when
    /// `verbose`, else only those that failed or warn, then the verdict.
    pub fn report(&self, verbose: bool) -> (bool, String) {
        let checks: Vec<(String, CheckFn)> = self
            .checks
            .read()
            .iter()
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect();
        let mut ready = true;
        let mut lines = Vec::new();
        for (name, check) in checks {
            match check() {
                Check::Ok => {
                    if verbose {
                        lines.push(format!("[+]{name} ok"));
                    }
                }
                Check::Warn(why) => lines.push(format!("[!]{name} warning: {why}")),
                Check::Fail(why) => {
                    ready = false;
                    lines.push(format!("[-]{name} failed: {why}"));
                }
            }
        }
        if lines.is_empty() {
            return (ready, "ok".into());
        }
        lines.push(if ready {
            "readyz check passed".into()
        } else {
            "readyz check failed".into()
        });
        (ready, lines.join("\n") + "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_make_it_unready_warnings_do_not_and_verbose_lists_all() {
        let r = Readiness::default();
        assert_eq!(r.report(false), (true, "ok".into()));
        r.register("a", || Check::Ok);
        r.register("b", || Check::Warn("slow".into()));
        let (ready, body) = r.report(false);
        assert!(ready);
        assert_eq!(body, "[!]b warning: slow\nreadyz check passed\n");
        let (_, verbose) = r.report(true);
        assert!(
            verbose.starts_with("[+]a ok\n[!]b warning: slow\n"),
            "{verbose}"
        );
        r.register("c", || Check::Fail("not synced".into()));
        let (ready, body) = r.report(false);
        assert!(!ready);
        assert!(
            body.contains("[-]c failed: not synced\nreadyz check failed"),
            "{body}"
        );
        r.unregister("c");
        assert!(r.report(false).0);
    }
}
