#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::decide::*;
use crate::pki::CsrSubject;

fn subject(cn: &str, orgs: &[&str]) -> CsrSubject {
    CsrSubject {
        common_name: cn.to_owned(),
        organizations: orgs.iter().map(|o| (*o).to_owned()).collect(),
        has_sans: false,
    }
}

/// A bootstrap token of cluster `gpu-x` asking for gpu-x's agent certificate.
fn first() -> Csr {
    Csr {
        signer_name: SIGNER.to_owned(),
        username: "system:bootstrap:abcdef".to_owned(),
        groups: vec![
            "system:bootstrappers".to_owned(),
            "system:bootstrappers:hami:cluster:gpu-x".to_owned(),
            "system:authenticated".to_owned(),
        ],
        usages: vec!["digital signature".to_owned(), "client auth".to_owned()],
        approved: false,
        denied: false,
        failed: false,
        issued: false,
        subject: Ok(subject("system:hami:agent:gpu-x", &["system:hami:agents"])),
    }
}

fn approve(message: &str) -> Decision {
    Decision::Approve {
        reason: REASON_AUTO_APPROVED,
        message: message.to_owned(),
    }
}

const FIRST: &str =
    "Auto approving the agent client certificate of cluster gpu-x after bootstrap token validation";

#[test]
fn the_approver_follows_its_rules() {
    let none = |_: &str| false;
    let has_x = |c: &str| c == "gpu-x";
    let leave = Decision::LeaveForAdmin {
        why: "cluster gpu-x already has an agent identity: a second one needs an administrator (kubectl certificate approve)".to_owned(),
    };
    type Case = (&'static str, fn(&mut Csr), bool, Decision);
    let cases: Vec<Case> = vec![
        ("first certificate", |_| {}, false, approve(FIRST)),
        ("cluster already has one", |_| {}, true, leave),
        (
            "renewal by the agent itself",
            |c| {
                c.username = "system:hami:agent:gpu-x".into();
                c.groups = vec!["system:hami:agents".into()];
            },
            true,
            approve("Auto approving the renewal of the agent client certificate of cluster gpu-x"),
        ),
        (
            "renewal by another cluster's agent",
            |c| c.username = "system:hami:agent:gpu-y".into(),
            true,
            Decision::Nothing,
        ),
        (
            "token of another cluster",
            |c| c.groups[1] = "system:bootstrappers:hami:cluster:gpu-y".into(),
            false,
            Decision::Nothing,
        ),
        (
            "CN of another cluster",
            |c| c.subject = Ok(subject("system:hami:agent:other", &["system:hami:agents"])),
            false,
            Decision::Nothing,
        ),
        (
            "not a bootstrap user",
            |c| c.username = "alice".into(),
            false,
            Decision::Nothing,
        ),
        (
            "extra organization",
            |c| {
                c.subject = Ok(subject(
                    "system:hami:agent:gpu-x",
                    &["system:hami:agents", "system:masters"],
                ))
            },
            false,
            Decision::Nothing,
        ),
        (
            "no organization",
            |c| c.subject = Ok(subject("system:hami:agent:gpu-x", &[])),
            false,
            Decision::Nothing,
        ),
        (
            "subject alternative names",
            |c| {
                c.subject = Ok(CsrSubject {
                    has_sans: true,
                    ..subject("system:hami:agent:gpu-x", &["system:hami:agents"])
                })
            },
            false,
            Decision::Nothing,
        ),
        (
            "server auth usage",
            |c| c.usages.push("server auth".into()),
            false,
            Decision::Nothing,
        ),
        (
            "no client auth",
            |c| c.usages = vec!["digital signature".into()],
            false,
            Decision::Nothing,
        ),
        (
            "unreadable request",
            |c| c.subject = Err("PEM block type must be CERTIFICATE REQUEST".into()),
            false,
            Decision::Nothing,
        ),
        (
            "another signer",
            |c| c.signer_name = "example.com/other".into(),
            false,
            Decision::Nothing,
        ),
        (
            "CN with a bad cluster name",
            |c| c.subject = Ok(subject("system:hami:agent:GPU_X", &["system:hami:agents"])),
            false,
            Decision::Nothing,
        ),
        ("denied", |c| c.denied = true, false, Decision::Nothing),
        ("failed", |c| c.failed = true, false, Decision::Nothing),
    ];
    for (name, change, identity, want) in cases {
        let mut csr = first();
        change(&mut csr);
        let has: &dyn Fn(&str) -> bool = if identity { &has_x } else { &none };
        assert_eq!(decide(&csr, has), want, "{name}");
    }
}

#[test]
fn the_signer_signs_what_is_approved_once() {
    let none = |_: &str| false;
    let approved = |change: fn(&mut Csr)| {
        let mut csr = first();
        csr.approved = true;
        change(&mut csr);
        decide(&csr, &none)
    };
    let agent = Decision::Sign {
        agent_cluster: Some("gpu-x".into()),
    };
    assert_eq!(approved(|_| {}), agent);
    // An administrator's approval of any client certificate is signed,
    // whoever asked; only agents' get a confinement.
    assert_eq!(
        approved(|c| c.subject = Ok(subject("alice", &["team-a"]))),
        Decision::Sign {
            agent_cluster: None
        }
    );
    assert_eq!(approved(|c| c.issued = true), Decision::Nothing);
    assert_eq!(approved(|c| c.denied = true), Decision::Nothing);
    assert_eq!(approved(|c| c.failed = true), Decision::Nothing);
    assert_eq!(
        approved(|c| c.signer_name = "example.com/x".into()),
        Decision::Nothing
    );
    assert_eq!(
        approved(|c| c.usages.push("server auth".into())),
        Decision::Fail {
            reason: REASON_SIGNER_FAILURE,
            message: "invalid usage for client certificate: server auth".into(),
        }
    );
    assert_eq!(
        approved(|c| c.subject = Ok(subject("", &["x"]))),
        Decision::Fail {
            reason: REASON_SIGNER_FAILURE,
            message: "the subject has no common name".into(),
        }
    );
}

#[test]
fn agent_cluster_names_fit_an_execution_namespace() {
    assert_eq!(agent_cluster("system:hami:agent:gpu-x"), Some("gpu-x"));
    for bad in [
        "system:hami:agent:",
        "system:hami:agent:-a",
        "system:hami:agent:a.b",
        "system:hami:agents",
        "system:node:a",
    ] {
        assert_eq!(agent_cluster(bad), None, "{bad}");
    }
    let long = format!("system:hami:agent:{}", "a".repeat(56));
    assert_eq!(agent_cluster(&long), None);
}

#[test]
fn signing_durations_read_as_go_writes_them() {
    use super::parse_go_duration as p;
    use std::time::Duration;
    assert_eq!(p("8760h").unwrap(), Duration::from_secs(8760 * 3600));
    assert_eq!(p("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(p("30s").unwrap(), Duration::from_secs(30));
    assert_eq!(p("10m").unwrap(), Duration::from_secs(600));
    assert_eq!(p("1500ms").unwrap(), Duration::from_millis(1500));
    for bad in ["", "h", "10", "10d", "0s", "-1h", "1.5h"] {
        assert!(p(bad).is_err(), "{bad}");
    }
}
