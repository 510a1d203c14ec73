//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!`exists) and
//! field selectors on `metadata.name`, `metadata.namespace` and the Event fields
//! (`involvedObject.*`, `reason`, `type`, `source`, `reportingComponent`).

use std::collections::BTreeMap;

use serde_json::Value;

/// A selector that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("unable to parse requirement: {0}")]
    Syntax(String),
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(input: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&input[start..]);
    parts
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 316
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_set(raw: &str, whole: &str) -> Result<Vec<String>, SelectorError> {
    let inner = raw
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| SelectorError::Syntax(whole.to_owned()))?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    if values.iter().any(|v| !valid_value(v)) {
        return Err(SelectorError::Syntax(whole.to_owned()));
    }
    Ok(values)
}

fn parse_requirement(part: &str) -> Result<Requirement, SelectorError> {
    let syntax = || SelectorError::Syntax(part.to_owned());
    let trimmed = part.trim();
    if let Some(key) = trimmed.strip_prefix('!') {
        let key = key.trim();
        return if valid_key(key) {
            Ok(Requirement {
                key: key.to_owned(),
                op: Op::DoesNotExist,
            })
        } else {
            Err(syntax())
        };
    }
    let (key, op) = if let Some((k, v)) = trimmed.split_once("!=") {
        (k, Op::NotEquals(v.trim().to_owned()))
    } else if let Some((k, v)) = trimmed.split_once("==") {
        (k, Op::Equals(v.trim().to_owned()))
    } else if let Some((k, v)) = trimmed.split_once('=') {
        (k, Op::Equals(v.trim().to_owned()))
    } else if let Some((k, v)) = trimmed.split_once(" notin ") {
        (k, Op::NotIn(parse_set(v, part)?))
    } else if let Some((k, v)) = trimmed.split_once(" in ") {
        (k, Op::In(parse_set(v, part)?))
    } else {
        (trimmed, Op::Exists)
    };
    let key = key.trim();
    if !valid_key(key) {
        return Err(syntax());
    }
    if let Op::Equals(v) | Op::NotEquals(v) = &op
        && !valid_value(v)
    {
        return Err(syntax());
    }
    Ok(Requirement {
        key: key.to_owned(),
        op,
    })
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        if input.trim().is_empty() {
            return Ok(Self::default());
        }
        let requirements = split_top_level(input)
            .into_iter()
            .map(parse_requirement)
            .collect::<Result<_, _>>()?;
        Ok(Self { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Does a label map satisfy every requirement?
    pub fn matches(&self, labels: &BTreeMap<&str, &str>) -> bool {
        self.requirements.iter().all(|r| {
            let value = labels.get(r.key.as_str());
            match &r.op {
                Op::Equals(v) => value == Some(&v.as_str()),
                Op::NotEquals(v) => value != Some(&v.as_str()),
                Op::In(set) => value.is_some_and(|x| set.iter().any(|s| s == x)),
                Op::NotIn(set) => value.is_none_or(|x| !set.iter().any(|s| s == x)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldRequirement {
    field: Field,
    equals: bool,
    value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Name,
    Namespace,
    /// One of Kubernetes' Event field selectors (what `kubectl describe`
    /// asks for), by its JSON pointer; a missing value reads as "".
    Event(&'static str),
}

/// Kubernetes' Event field labels and where they are in the object.
const EVENT_FIELDS: [(&str, &str); 11] = [
    ("involvedObject.kind", "/involvedObject/kind"),
    ("involvedObject.namespace", "/involvedObject/namespace"),
    ("involvedObject.name", "/involvedObject/name"),
    ("involvedObject.uid", "/involvedObject/uid"),
    ("involvedObject.apiVersion", "/involvedObject/apiVersion"),
    (
        "involvedObject.resourceVersion",
        "/involvedObject/resourceVersion",
    ),
    ("involvedObject.fieldPath", "/involvedObject/fieldPath"),
    ("reason", "/reason"),
    ("reportingComponent", "/reportingComponent"),
    ("source", "/source/component"),
    ("type", "/type"),
];

/// A parsed field selector over `metadata.name` / `metadata.namespace` and
/// the Event fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equals, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(SelectorError::Syntax(part.to_owned()));
            };
            let field = match field.trim() {
                "metadata.name" => Field::Name,
                "metadata.namespace" => Field::Namespace,
                other => match EVENT_FIELDS.iter().find(|(f, _)| *f == other) {
                    Some((_, pointer)) => Field::Event(pointer),
                    None => return Err(SelectorError::UnsupportedField(other.to_owned())),
                },
            };
            requirements.push(FieldRequirement {
                field,
                equals,
                value: value.trim().to_owned(),
            });
        }
        Ok(Self { requirements })
    }

    /// Does an object with this namespace and name match? (Event fields
    /// read as "".)
    pub fn matches(&self, namespace: &str, name: &str) -> bool {
        self.matches_with(namespace, name, |_| "")
    }

    /// Does `object` match?
    pub fn matches_object(&self, object: &Value) -> bool {
        let text = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("");
        self.matches_with(text("/metadata/namespace"), text("/metadata/name"), text)
    }

    fn matches_with<'a>(
        &self,
        namespace: &'a str,
        name: &'a str,
        other: impl Fn(&'static str) -> &'a str,
    ) -> bool {
        self.requirements.iter().all(|r| {
            let actual = match r.field {
                Field::Name => name,
                Field::Namespace => namespace,
                Field::Event(pointer) => other(pointer),
            };
            (actual == r.value) == r.equals
        })
    }
}

/// Label and field selectors of one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    /// Does this object (JSON) match?
    pub fn matches(&self, object: &Value) -> bool {
        let meta = object.get("metadata");
        if !self.fields.matches_object(object) {
            return false;
        }
        if self.labels.is_empty() {
            return true;
        }
        let labels: BTreeMap<&str, &str> = meta
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
                    .collect()
            })
            .unwrap_or_default();
        self.labels.matches(&labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&'static str, &'static str)]) -> BTreeMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn label_operators() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let cases = [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, api)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!gpu", true),
            ("gpu notin (a)", true),
            ("app=web,tier=back", false),
            ("app in (api),tier", false),
            ("", true),
        ];
        for (sel, want) in cases {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&l),
                want,
                "{sel}"
            );
        }
    }

    #[test]
    fn label_syntax_errors() {
        for bad in ["app in web", "a b c", "=x", "app=(x", "!"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_selectors() {
        let f = FieldSelector::parse("metadata.name=a,metadata.namespace!=kube-system").unwrap();
        assert!(f.matches("default", "a"));
        assert!(!f.matches("kube-system", "a"));
        assert!(!f.matches("default", "b"));
        assert!(matches!(
            FieldSelector::parse("spec.x=1"),
            Err(SelectorError::UnsupportedField(_))
        ));
        // What kubectl describe asks for an object's Events.
        let f = FieldSelector::parse(
            "involvedObject.name=web,involvedObject.namespace=shop,involvedObject.kind=ResourceBinding,involvedObject.uid=u-1",
        )
        .unwrap();
        let event = json!({"metadata": {"name": "web.1", "namespace": "shop"},
            "involvedObject": {"kind": "ResourceBinding", "name": "web", "namespace": "shop", "uid": "u-1"},
            "type": "Warning"});
        assert!(f.matches_object(&event));
        let mut other = event.clone();
        other["involvedObject"]["uid"] = json!("u-2");
        assert!(!f.matches_object(&other));
        let t = FieldSelector::parse("type!=Normal").unwrap();
        assert!(t.matches_object(&event));
        assert!(!t.matches_object(&json!({"type": "Normal"})));
    }

    #[test]
    fn selectors_on_objects() {
        let s = Selectors {
            labels: LabelSelector::parse("app=web").unwrap(),
            fields: FieldSelector::parse("metadata.namespace=ns").unwrap(),
        };
        let obj = json!({"metadata": {"name": "x", "namespace": "ns", "labels": {"app": "web"}}});
        assert!(s.matches(&obj));
        let other =
            json!({"metadata": {"name": "x", "namespace": "ns2", "labels": {"app": "web"}}});
        assert!(!s.matches(&other));
    }
}
