//! kube's `pkg/apis/certificates/validation`: what a CertificateSigningRequest
//! must hold ([`object`]) and what an update may change ([`update`]), with
//! kube's field paths and messages.

use base64::Engine;
use serde_json::Value;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;

use super::{APPROVED, DENIED, FAILED};
use crate::server::objects::UpdateScope;
use crate::server::status::Cause;

/// kube's `allValidUsages`, sorted as `sets.String.List()` sorts them.
const USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// The legacy signer v1 refuses.
const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";

/// What hami reads of a valid PKCS#10 request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub organizations: Vec<String>,
}

/// The bytes of a `[]byte` field (base64 in JSON); `None` when absent,
/// empty or not base64.
pub(super) fn bytes_field(object: &Value, pointer: &str) -> Option<Vec<u8>> {
    let text = object.pointer(pointer)?.as_str()?;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .filter(|b| !b.is_empty())
}

/// kube's `certificates.ParseCSR` and `CheckSignature`: one PEM block of
/// type `CERTIFICATE REQUEST`, a PKCS#10 request signed by its own key.
pub fn parse_request(pem: &[u8]) -> Result<Request, String> {
    let block = match x509_parser::pem::parse_x509_pem(pem) {
        Ok((_, block)) if block.label == "CERTIFICATE REQUEST" => block,
        _ => return Err("PEM block type must be CERTIFICATE REQUEST".to_owned()),
    };
    let (_, csr) = X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| format!("x509: malformed certificate request: {e}"))?;
    csr.verify_signature()
        .map_err(|_| "x509: signature verification failure".to_owned())?;
    let organizations = csr
        .certification_request_info
        .subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Ok(Request { organizations })
}

/// kube's `validateCertificate`: every PEM block a parseable CERTIFICATE.
fn certificate_blocks(pem: &[u8]) -> Result<(), String> {
    let mut blocks = 0;
    for block in Pem::iter_from_buffer(pem) {
        let Ok(block) = block else { break };
        if block.label != "CERTIFICATE" {
            return Err(format!(
                "only CERTIFICATE PEM blocks are allowed, found {:?}",
                block.label
            ));
        }
        block.parse_x509().map_err(|e| e.to_string())?;
        blocks += 1;
    }
    if blocks == 0 {
        return Err("must contain at least one CERTIFICATE PEM block".to_owned());
    }
    Ok(())
}

/// kube's `ValidateSignerName`, reduced to its shape: `<domain>/<path>`.
fn signer_name(name: &str) -> Option<&'static str> {
    let Some((domain, path)) = name.split_once('/') else {
        return Some(
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        );
    };
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !domain_ok || path.is_empty() {
        return Some(
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        );
    }
    None
}

fn conditions(object: &Value) -> &[Value] {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn condition_type(c: &Value) -> &str {
    c.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// The conditions of `type_`, in order.
pub(super) fn of_type<'a>(object: &'a Value, type_: &str) -> Vec<&'a Value> {
    conditions(object)
        .iter()
        .filter(|c| condition_type(c) == type_)
        .collect()
}

/// kube's `validateCertificateSigningRequest` (object rules).
pub fn object(csr: &Value) -> Vec<Cause> {
    object_with(csr, true)
}

/// [`object`]; `certificate: false` skips `status.certificate`, as kube's
/// `allowArbitraryCertificate` does for an update that does not change it.
pub fn object_with(csr: &Value, certificate: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    match bytes_field(csr, "/spec/request") {
        None => causes.push(Cause::new(
            "FieldValueRequired",
            "spec.request",
            "Required value",
        )),
        Some(pem) => {
            if let Err(why) = parse_request(&pem) {
                causes.push(Cause::new(
                    "FieldValueInvalid",
                    "spec.request",
                    format!("Invalid value: \"<request data>\": {why}"),
                ));
            }
        }
    }
    let usages: Vec<&str> = csr
        .pointer("/spec/usages")
        .and_then(Value::as_array)
        .map(|u| u.iter().map(|v| v.as_str().unwrap_or_default()).collect())
        .unwrap_or_default();
    if usages.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "spec.usages",
            "Required value",
        ));
    }
    for (i, usage) in usages.iter().enumerate() {
        if !USAGES.contains(usage) {
            let supported: Vec<String> = USAGES.iter().map(|u| format!("{u:?}")).collect();
            causes.push(Cause::new(
                "FieldValueNotSupported",
                &format!("spec.usages[{i}]"),
                format!(
                    "Unsupported value: {usage:?}: supported values: {}",
                    supported.join(", ")
                ),
            ));
        }
        if usages[..i].contains(usage) {
            causes.push(Cause::new(
                "FieldValueDuplicate",
                &format!("spec.usages[{i}]"),
                format!("Duplicate value: {usage:?}"),
            ));
        }
    }
    let signer = csr
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if signer.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "spec.signerName",
            "Required value",
        ));
    } else if signer == LEGACY_UNKNOWN {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.signerName",
            format!(
                "Invalid value: {signer:?}: the legacy signerName is not allowed via this API version"
            ),
        ));
    } else if let Some(why) = signer_name(signer) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.signerName",
            format!("Invalid value: {signer:?}: {why}"),
        ));
    }
    if let Some(seconds) = csr
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        && seconds < 600
    {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.expirationSeconds",
            format!(
                "Invalid value: {seconds}: may not specify a duration less than 600 seconds (10 minutes)"
            ),
        ));
    }
    condition_causes(csr, &mut causes);
    if let Some(pem) = bytes_field(csr, "/status/certificate").filter(|_| certificate)
        && let Err(why) = certificate_blocks(&pem)
    {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "status.certificate",
            format!("Invalid value: \"<certificate data>\": {why}"),
        ));
    }
    causes
}

/// kube's `validateConditions`.
fn condition_causes(csr: &Value, causes: &mut Vec<Cause>) {
    let (mut approved, mut denied) = (false, false);
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in conditions(csr).iter().enumerate() {
        let type_ = condition_type(c);
        let path = format!("status.conditions[{i}]");
        if type_.is_empty() {
            causes.push(Cause::new(
                "FieldValueRequired",
                &format!("{path}.type"),
                "Required value",
            ));
        }
        let status = c.get("status").and_then(Value::as_str).unwrap_or_default();
        let allowed: &[&str] = if [APPROVED, DENIED, FAILED].contains(&type_) {
            &["True"]
        } else {
            &["False", "True", "Unknown"]
        };
        if status.is_empty() {
            causes.push(Cause::new(
                "FieldValueRequired",
                &format!("{path}.status"),
                "Required value",
            ));
        } else if !allowed.contains(&status) {
            let quoted: Vec<String> = allowed.iter().map(|s| format!("{s:?}")).collect();
            causes.push(Cause::new(
                "FieldValueNotSupported",
                &format!("{path}.status"),
                format!(
                    "Unsupported value: {status:?}: supported values: {}",
                    quoted.join(", ")
                ),
            ));
        }
        approved |= type_ == APPROVED;
        denied |= type_ == DENIED;
        if (type_ == APPROVED || type_ == DENIED) && approved && denied {
            causes.push(Cause::new(
                "FieldValueInvalid",
                &format!("{path}.type"),
                format!(
                    "Invalid value: {type_:?}: Approved and Denied conditions are mutually exclusive"
                ),
            ));
        }
        if seen.contains(&type_) {
            causes.push(Cause::new(
                "FieldValueDuplicate",
                &format!("{path}.type"),
                format!("Duplicate value: {type_:?}"),
            ));
        }
        seen.push(type_);
    }
}

/// kube's `validateCertificateSigningRequestUpdate`: what `scope` may not
/// change between `old` and `new` (the subresource options:
/// `/approval` may add Approved/Denied, `/status` may set the certificate).
pub fn update(old: &Value, new: &Value, scope: UpdateScope) -> Vec<Cause> {
    let mut causes = Vec::new();
    let forbidden = |causes: &mut Vec<Cause>, field: &str, message: String| {
        causes.push(Cause::new(
            "FieldValueForbidden",
            field,
            format!("Forbidden: {message}"),
        ));
    };
    for t in [APPROVED, DENIED, FAILED] {
        if of_type(new, t).len() < of_type(old, t).len() {
            forbidden(
                &mut causes,
                "status.conditions",
                format!("updates may not remove a condition of type {t:?}"),
            );
        }
    }
    if scope != UpdateScope::Approval {
        for t in [APPROVED, DENIED] {
            let (before, after) = (of_type(old, t), of_type(new, t));
            if after.len() > before.len() {
                forbidden(
                    &mut causes,
                    "status.conditions",
                    format!("updates may not add a condition of type {t:?}"),
                );
            } else if after.len() == before.len() && after != before {
                forbidden(
                    &mut causes,
                    "status.conditions",
                    format!("updates may not modify a condition of type {t:?}"),
                );
            }
        }
    }
    let (before, after) = (
        bytes_field(old, "/status/certificate"),
        bytes_field(new, "/status/certificate"),
    );
    if before != after {
        if scope != UpdateScope::Status {
            forbidden(
                &mut causes,
                "status.certificate",
                "updates may not set certificate content".to_owned(),
            );
        } else if before.is_some() {
            forbidden(
                &mut causes,
                "status.certificate",
                "updates may not modify existing certificate content".to_owned(),
            );
        }
    }
    causes
}
