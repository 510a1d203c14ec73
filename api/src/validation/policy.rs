//! Rules for PropagationPolicy / ClusterPropagationPolicy and OverridePolicy /
//! ClusterOverridePolicy specs.

use std::collections::BTreeSet;

use super::FieldError;
use super::names::{is_dns1123_label, is_label_value};
use super::selector::{field_selector, label_key, label_selector, label_value_message, toleration};
use crate::override_policy::{
    CommandArgsOperator, LabelAnnotationOverrider, OverrideSpec, OverriderOperator, Overriders,
};
use crate::propagation::{
    ApplicationFailoverBehavior, ClusterAffinity, Placement, PropagationSpec, PurgeMode,
    ReplicaSchedulingStrategy, ResourceSelector, SpreadByField, SpreadConstraint,
};

/// Checks a propagation spec; `path` is where it sits (usually `spec`).
pub fn validate_propagation_spec(spec: &PropagationSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if spec.resource_selectors.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.resourceSelectors"),
            "at least one resource selector is required",
        ));
    }
    resource_selectors(
        &spec.resource_selectors,
        &format!("{path}.resourceSelectors"),
        &mut errs,
    );
    placement(&spec.placement, &format!("{path}.placement"), &mut errs);
    if let Some(app) = spec.failover.as_ref().and_then(|f| f.application.as_ref()) {
        application_failover(app, &format!("{path}.failover.application"), &mut errs);
    }
    errs
}

fn resource_selectors(selectors: &[ResourceSelector], path: &str, errs: &mut Vec<FieldError>) {
    for (i, s) in selectors.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if s.api_version.is_empty() {
            errs.push(FieldError::required(
                format!("{p}.apiVersion"),
                "Required value",
            ));
        } else if s.api_version.split('/').count() > 2
            || s.api_version.split('/').any(str::is_empty)
        {
            errs.push(FieldError::invalid(
                format!("{p}.apiVersion"),
                format!("{:?}: must be VERSION or GROUP/VERSION", s.api_version),
            ));
        }
        if s.kind.is_empty() {
            errs.push(FieldError::required(format!("{p}.kind"), "Required value"));
        }
        if let Some(ns) = s.namespace.as_deref().filter(|ns| !is_dns1123_label(ns)) {
            errs.push(FieldError::invalid(
                format!("{p}.namespace"),
                format!("{ns:?}: must be a DNS-1123 label"),
            ));
        }
        if let Some(sel) = &s.label_selector {
            label_selector(sel, &format!("{p}.labelSelector"), errs);
        }
    }
}

/// Checks a placement; `path` is where it sits (e.g. `spec.placement`).
pub fn validate_placement(p: &Placement, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    placement(p, path, &mut errs);
    errs
}

fn placement(p: &Placement, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(aff) = &p.cluster_affinity {
        cluster_affinity(aff, &format!("{path}.clusterAffinity"), errs);
        if !p.cluster_affinities.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.clusterAffinities"),
                "clusterAffinities cannot be set together with clusterAffinity",
            ));
        }
    }
    let mut names = BTreeSet::new();
    for (i, term) in p.cluster_affinities.iter().enumerate() {
        let tp = format!("{path}.clusterAffinities[{i}]");
        if term.affinity_name.is_empty() {
            errs.push(FieldError::required(
                format!("{tp}.affinityName"),
                "Required value",
            ));
        } else if !names.insert(term.affinity_name.as_str()) {
            errs.push(FieldError::duplicate(
                format!("{tp}.affinityName"),
                &term.affinity_name,
            ));
        }
        cluster_affinity(&term.affinity, &tp, errs);
    }
    for (i, t) in p.cluster_tolerations.iter().enumerate() {
        toleration(t, &format!("{path}.clusterTolerations[{i}]"), errs);
    }
    spread_constraints(
        &p.spread_constraints,
        &format!("{path}.spreadConstraints"),
        errs,
    );
    if let Some(rs) = &p.replica_scheduling {
        replica_scheduling(rs, &format!("{path}.replicaScheduling"), errs);
    }
}

/// Checks a cluster affinity; `path` is where it sits.
pub fn validate_cluster_affinity(aff: &ClusterAffinity, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    cluster_affinity(aff, path, &mut errs);
    errs
}

fn cluster_affinity(aff: &ClusterAffinity, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(sel) = &aff.label_selector {
        label_selector(sel, &format!("{path}.labelSelector"), errs);
    }
    if let Some(sel) = &aff.field_selector {
        field_selector(sel, &format!("{path}.fieldSelector"), errs);
    }
    cluster_names(&aff.cluster_names, &format!("{path}.clusterNames"), errs);
    cluster_names(&aff.exclude, &format!("{path}.exclude"), errs);
}

fn cluster_names(names: &[String], path: &str, errs: &mut Vec<FieldError>) {
    let mut seen = BTreeSet::new();
    for (i, n) in names.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if n.is_empty() {
            errs.push(FieldError::required(p, "cluster name must not be empty"));
        } else if !seen.insert(n.as_str()) {
            errs.push(FieldError::duplicate(p, n));
        }
    }
}

fn spread_constraints(list: &[SpreadConstraint], path: &str, errs: &mut Vec<FieldError>) {
    let mut fields = BTreeSet::new();
    for (i, c) in list.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match (&c.spread_by_field, &c.spread_by_label) {
            (Some(_), Some(_)) => errs.push(FieldError::invalid(
                format!("{p}.spreadByLabel"),
                "spreadByLabel cannot be set together with spreadByField",
            )),
            (None, None) => errs.push(FieldError::required(
                format!("{p}.spreadByField"),
                "one of spreadByField or spreadByLabel is required",
            )),
            (None, Some(label)) => label_key(label, &format!("{p}.spreadByLabel"), errs),
            (Some(field), None) => {
                if !fields.insert(*field) {
                    let name = format!("{field:?}").to_lowercase();
                    errs.push(FieldError::duplicate(format!("{p}.spreadByField"), &name));
                }
            }
        }
        if let Some(max) = c.max_groups.filter(|m| *m < 0) {
            errs.push(FieldError::invalid(
                format!("{p}.maxGroups"),
                format!("{max}: must be non-negative"),
            ));
        }
        if let Some(min) = c.min_groups.filter(|m| *m < 0) {
            errs.push(FieldError::invalid(
                format!("{p}.minGroups"),
                format!("{min}: must be non-negative"),
            ));
        }
        if let (Some(min), Some(max)) = (c.min_groups, c.max_groups)
            && min > max
        {
            errs.push(FieldError::invalid(
                format!("{p}.minGroups"),
                format!("{min}: must not be greater than maxGroups ({max})"),
            ));
        }
    }
    let by_other = fields.iter().any(|f| *f != SpreadByField::Cluster);
    if by_other && !fields.contains(&SpreadByField::Cluster) {
        errs.push(FieldError::invalid(
            path,
            "a spreadByField 'cluster' constraint is required when spreading by region, zone or provider",
        ));
    }
}

fn replica_scheduling(rs: &ReplicaSchedulingStrategy, path: &str, errs: &mut Vec<FieldError>) {
    let Some(pref) = &rs.weight_preference else {
        return;
    };
    let wp = format!("{path}.weightPreference.staticWeightList");
    let mut sum: i64 = 0;
    let mut overflow = false;
    let mut negative = false;
    for (i, w) in pref.static_weight_list.iter().enumerate() {
        let p = format!("{wp}[{i}]");
        cluster_affinity(&w.target_cluster, &format!("{p}.targetCluster"), errs);
        if w.weight < 0 {
            negative = true;
            errs.push(FieldError::invalid(
                format!("{p}.weight"),
                format!("{}: must be non-negative", w.weight),
            ));
        } else {
            match sum.checked_add(w.weight) {
                Some(s) => sum = s,
                None => overflow = true,
            }
        }
    }
    if overflow {
        errs.push(FieldError::invalid(
            wp,
            "the sum of the weights overflows a 64-bit integer",
        ));
    } else if !negative && !pref.static_weight_list.is_empty() && sum == 0 {
        errs.push(FieldError::invalid(wp, "the weights must not sum to zero"));
    }
}

fn application_failover(app: &ApplicationFailoverBehavior, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(secs) = app
        .decision_conditions
        .toleration_seconds
        .filter(|s| *s < 0)
    {
        errs.push(FieldError::invalid(
            format!("{path}.decisionConditions.tolerationSeconds"),
            format!("{secs}: must be non-negative"),
        ));
    }
    let gp = format!("{path}.gracePeriodSeconds");
    match (app.purge_mode, app.grace_period_seconds) {
        (Some(PurgeMode::Gracefully), None) => errs.push(FieldError::required(
            gp,
            "must be set when purgeMode is 'Gracefully'",
        )),
        (Some(mode @ (PurgeMode::Directly | PurgeMode::Never)), Some(_)) => {
            errs.push(FieldError::invalid(
                gp,
                format!("only takes effect when purgeMode is 'Gracefully', not '{mode:?}'"),
            ))
        }
        (_, Some(secs)) if secs <= 0 => errs.push(FieldError::invalid(
            gp,
            format!("{secs}: must be greater than 0"),
        )),
        _ => {}
    }
}

/// Checks an override spec; `path` is where it sits (usually `spec`).
pub fn validate_override_spec(spec: &OverrideSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    resource_selectors(
        &spec.resource_selectors,
        &format!("{path}.resourceSelectors"),
        &mut errs,
    );
    for (i, rule) in spec.override_rules.iter().enumerate() {
        let p = format!("{path}.overrideRules[{i}]");
        if let Some(aff) = &rule.target_cluster {
            cluster_affinity(aff, &format!("{p}.targetCluster"), &mut errs);
        }
        overriders(&rule.overriders, &format!("{p}.overriders"), &mut errs);
    }
    errs
}

fn overriders(o: &Overriders, path: &str, errs: &mut Vec<FieldError>) {
    for (i, pt) in o.plaintext.iter().enumerate() {
        let p = format!("{path}.plaintext[{i}]");
        json_pointer(&pt.path, &format!("{p}.path"), errs);
        match (pt.operator, &pt.value) {
            (OverriderOperator::Add | OverriderOperator::Replace, None) => errs.push(
                FieldError::required(format!("{p}.value"), "must be set for add and replace"),
            ),
            (OverriderOperator::Remove, Some(_)) => errs.push(FieldError::invalid(
                format!("{p}.value"),
                "must not be set for remove",
            )),
            _ => {}
        }
    }
    for (i, img) in o.image_overrider.iter().enumerate() {
        let p = format!("{path}.imageOverrider[{i}]");
        if let Some(pred) = &img.predicate {
            json_pointer(&pred.path, &format!("{p}.predicate.path"), errs);
        }
        let empty = img.value.as_deref().unwrap_or_default().is_empty();
        if img.operator != OverriderOperator::Remove && empty {
            errs.push(FieldError::required(
                format!("{p}.value"),
                "must be set for add and replace",
            ));
        }
        if let Some(v) = img
            .value
            .as_deref()
            .filter(|v| v.chars().any(char::is_whitespace))
        {
            errs.push(FieldError::invalid(
                format!("{p}.value"),
                format!("{v:?}: must not contain whitespace"),
            ));
        }
    }
    command_args(
        &o.command_overrider,
        &format!("{path}.commandOverrider"),
        errs,
    );
    command_args(&o.args_overrider, &format!("{path}.argsOverrider"), errs);
    labels_annotations(
        &o.labels_overrider,
        &format!("{path}.labelsOverrider"),
        true,
        errs,
    );
    labels_annotations(
        &o.annotations_overrider,
        &format!("{path}.annotationsOverrider"),
        false,
        errs,
    );
}

fn command_args(
    list: &[crate::override_policy::CommandArgsOverrider],
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    for (i, c) in list.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if c.container_name.is_empty() {
            errs.push(FieldError::required(
                format!("{p}.containerName"),
                "Required value",
            ));
        }
        if c.value.is_empty() {
            let verb = match c.operator {
                CommandArgsOperator::Add => "add",
                CommandArgsOperator::Remove => "remove",
            };
            errs.push(FieldError::required(
                format!("{p}.value"),
                format!("at least one item to {verb} is required"),
            ));
        }
    }
}

fn labels_annotations(
    list: &[LabelAnnotationOverrider],
    path: &str,
    labels: bool,
    errs: &mut Vec<FieldError>,
) {
    for (i, l) in list.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if l.value.is_empty() {
            errs.push(FieldError::required(
                format!("{p}.value"),
                "at least one key is required",
            ));
        }
        for (k, v) in &l.value {
            let kp = format!("{p}.value[{k}]");
            label_key(k, &kp, errs);
            if labels && l.operator != OverriderOperator::Remove && !is_label_value(v) {
                errs.push(FieldError::invalid(kp, label_value_message(v)));
            }
        }
    }
}

/// A JSON pointer (RFC 6901) naming a field: starts with '/', and '~' only as
/// the escapes '~0' and '~1'.
fn json_pointer(path: &str, field: &str, errs: &mut Vec<FieldError>) {
    if path.is_empty() {
        errs.push(FieldError::required(
            field,
            "a JSON pointer such as /spec/replicas is required",
        ));
        return;
    }
    if !path.starts_with('/') {
        errs.push(FieldError::invalid(
            field,
            format!("{path:?}: a JSON pointer must start with '/'"),
        ));
        return;
    }
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            errs.push(FieldError::invalid(
                field,
                format!("{path:?}: '~' must be followed by '0' or '1' in a JSON pointer"),
            ));
            return;
        }
    }
}
