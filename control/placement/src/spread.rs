//! Spread constraints: group clusters by provider, region, zone, a label or
//! the cluster itself, and choose between `minGroups` and `maxGroups` groups
//! that together can hold the workload.
//!
//! Constraints apply coarse to fine (provider, region, zone, label, cluster).
//! At each level the groups inside the groups chosen one level up are ranked
//! by locality (holding replicas of the binding), then capacity, then name;
//! every parent group keeps its best child, then more children are added in
//! rank order up to `maxGroups`. If the chosen groups cannot hold the
//! workload, the choice is made again by capacity alone (the `maxGroups`
//! largest groups hold the most). Karmada rejects zone and provider
//! spreading at selection time; this supports all four fields and labels.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use hami_api::propagation::{SpreadByField, SpreadConstraint};

use crate::outcome::{Problem, Reason};
use crate::view::ClusterView;

/// A cluster that may be chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item {
    /// Index into the cluster list.
    pub cluster: usize,
    /// It holds replicas of the binding now.
    pub locality: bool,
    /// Replicas it can hold (what it holds now included).
    pub capacity: i64,
}

/// What clusters are grouped by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Provider,
    Region,
    Zone,
    Label(String),
    Cluster,
}

impl Level {
    fn name(&self) -> String {
        match self {
            Level::Provider => "provider".into(),
            Level::Region => "region".into(),
            Level::Zone => "zone".into(),
            Level::Label(k) => format!("label {k}"),
            Level::Cluster => "cluster".into(),
        }
    }

    fn key<'a>(&self, c: &'a ClusterView) -> Option<Cow<'a, str>> {
        match self {
            Level::Provider => c.provider.as_deref().map(Cow::Borrowed),
            Level::Region => c.region.as_deref().map(Cow::Borrowed),
            Level::Zone => match c.zones.as_slice() {
                [] => None,
                [z] => Some(Cow::Borrowed(z.as_str())),
                many => Some(Cow::Owned(many.join(","))),
            },
            Level::Label(k) => c.labels.get(k).map(|v| Cow::Borrowed(v.as_str())),
            Level::Cluster => Some(Cow::Borrowed(c.name.as_str())),
        }
    }
}

/// One normalised constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    level: Level,
    min: usize,
    max: usize,
}

fn rules(constraints: &[SpreadConstraint]) -> Result<Vec<Rule>, Problem> {
    let mut by_level: BTreeMap<Level, (usize, usize)> = BTreeMap::new();
    for c in constraints {
        let level = match (&c.spread_by_field, &c.spread_by_label) {
            (Some(SpreadByField::Provider), _) => Level::Provider,
            (Some(SpreadByField::Region), _) => Level::Region,
            (Some(SpreadByField::Zone), _) => Level::Zone,
            (Some(SpreadByField::Cluster), _) => Level::Cluster,
            (None, Some(label)) => Level::Label(label.clone()),
            (None, None) => continue,
        };
        let min = usize::try_from(c.min_groups.unwrap_or(0).max(0)).unwrap_or(0);
        let max = c
            .max_groups
            .map_or(usize::MAX, |m| usize::try_from(m.max(0)).unwrap_or(0));
        let e = by_level.entry(level).or_insert((0, usize::MAX));
        e.0 = e.0.max(min);
        e.1 = e.1.min(max);
    }
    let mut out = Vec::with_capacity(by_level.len());
    for (level, (min, max)) in by_level {
        if min > max {
            return Err(Problem::Spread {
                message: format!("{}: minGroups {min} is above maxGroups {max}", level.name()),
            });
        }
        out.push(Rule { level, min, max });
    }
    Ok(out)
}

struct Unit<'a> {
    parent: usize,
    key: Cow<'a, str>,
    capacity: i64,
    locality: bool,
    members: Vec<usize>,
}

/// Chooses items under `constraints` so that the chosen ones can hold `need`
/// replicas. Returns positions in `items`, in input order. Items lacking a
/// field a constraint groups by are rejected (appended to `rejected`).
pub fn select(
    constraints: &[SpreadConstraint],
    clusters: &[ClusterView],
    items: &[Item],
    need: i64,
    rejected: &mut Vec<(usize, Reason)>,
) -> Result<Vec<usize>, Problem> {
    let rules = rules(constraints)?;
    if rules.is_empty() {
        return Ok((0..items.len()).collect());
    }
    // Items that have every key a rule groups by.
    let mut chosen: Vec<usize> = Vec::with_capacity(items.len());
    for (pos, it) in items.iter().enumerate() {
        let c = &clusters[it.cluster];
        let mut ok = true;
        for r in &rules {
            if r.level.key(c).is_none() {
                rejected.push((
                    it.cluster,
                    Reason::NoSpreadKey {
                        key: r.level.name(),
                    },
                ));
                ok = false;
            }
        }
        if ok {
            chosen.push(pos);
        }
    }
    // First prefer groups that hold replicas; if that fails anywhere, choose
    // again by capacity alone and report that pass's failure.
    match pass(&rules, clusters, items, &chosen, need, true) {
        Ok(picked) => Ok(picked),
        Err(_) => pass(&rules, clusters, items, &chosen, need, false),
    }
}

fn pass(
    rules: &[Rule],
    clusters: &[ClusterView],
    items: &[Item],
    eligible: &[usize],
    need: i64,
    locality: bool,
) -> Result<Vec<usize>, Problem> {
    let mut chosen = eligible.to_vec();
    // `parent[pos]` is the rank of the group chosen for `pos` one level up.
    let mut parent: Vec<usize> = vec![0; items.len()];
    for rule in rules {
        // Group the chosen items by (parent group, key).
        let mut index: BTreeMap<(usize, Cow<'_, str>), usize> = BTreeMap::new();
        let mut units: Vec<Unit<'_>> = Vec::new();
        for &pos in &chosen {
            let it = &items[pos];
            let key = rule.level.key(&clusters[it.cluster]).unwrap_or_default();
            let u = *index.entry((parent[pos], key.clone())).or_insert_with(|| {
                units.push(Unit {
                    parent: parent[pos],
                    key,
                    capacity: 0,
                    locality: false,
                    members: Vec::new(),
                });
                units.len() - 1
            });
            let unit = &mut units[u];
            unit.capacity = unit.capacity.saturating_add(it.capacity);
            unit.locality |= it.locality;
            unit.members.push(pos);
        }
        let picked = pick_units(&units, rule, need, locality)?;
        let mut next: Vec<usize> = Vec::with_capacity(chosen.len());
        for (rank, &u) in picked.iter().enumerate() {
            for &pos in &units[u].members {
                parent[pos] = rank;
                next.push(pos);
            }
        }
        next.sort_unstable();
        chosen = next;
    }
    Ok(chosen)
}

fn pick_units(
    units: &[Unit<'_>],
    rule: &Rule,
    need: i64,
    locality: bool,
) -> Result<Vec<usize>, Problem> {
    let parents: BTreeSet<usize> = units.iter().map(|u| u.parent).collect();
    if parents.len() > rule.max {
        return Err(Problem::Spread {
            message: format!(
                "{} groups above need one {} each, but maxGroups of {} is {}",
                parents.len(),
                rule.level.name(),
                rule.level.name(),
                rule.max
            ),
        });
    }
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by(|a, b| {
        let (x, y) = (&units[*a], &units[*b]);
        let l = if locality {
            y.locality.cmp(&x.locality)
        } else {
            std::cmp::Ordering::Equal
        };
        l.then_with(|| y.capacity.cmp(&x.capacity))
            .then_with(|| x.key.cmp(&y.key))
    });
    // Every parent keeps its best group, then more groups in rank order.
    let mut taken = vec![false; units.len()];
    let mut picked = Vec::new();
    let mut covered = BTreeSet::new();
    for &u in &order {
        if covered.insert(units[u].parent) {
            taken[u] = true;
            picked.push(u);
        }
    }
    for &u in &order {
        if picked.len() >= rule.max {
            break;
        }
        if !taken[u] {
            taken[u] = true;
            picked.push(u);
        }
    }
    let cap = picked
        .iter()
        .map(|&u| units[u].capacity)
        .fold(0i64, i64::saturating_add);
    if picked.len() < rule.min.max(1) {
        return Err(Problem::Spread {
            message: format!(
                "{} {} group(s) available, minGroups is {}",
                picked.len(),
                rule.level.name(),
                rule.min.max(1)
            ),
        });
    }
    if cap < need {
        return Err(Problem::Spread {
            message: format!(
                "the {} chosen {} group(s) can hold {cap} replicas, {need} needed",
                picked.len(),
                rule.level.name()
            ),
        });
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(field: SpreadByField, min: i32, max: i32) -> SpreadConstraint {
        SpreadConstraint {
            spread_by_field: Some(field),
            min_groups: Some(min),
            max_groups: Some(max),
            ..Default::default()
        }
    }

    /// (name, provider, region, zone, capacity, locality)
    fn fleet(spec: &[(&str, &str, &str, &str, i64, bool)]) -> (Vec<ClusterView>, Vec<Item>) {
        let clusters = spec
            .iter()
            .map(|(n, p, r, z, _, _)| ClusterView::new(*n).with_location(p, r, z))
            .collect();
        let items = spec
            .iter()
            .enumerate()
            .map(|(i, (_, _, _, _, cap, loc))| Item {
                cluster: i,
                locality: *loc,
                capacity: *cap,
            })
            .collect();
        (clusters, items)
    }

    fn names(clusters: &[ClusterView], items: &[Item], picked: &[usize]) -> Vec<String> {
        picked
            .iter()
            .map(|&p| clusters[items[p].cluster].name.clone())
            .collect()
    }

    #[test]
    fn table() {
        let spec = [
            ("a1", "aws", "us", "us-1", 10, false),
            ("a2", "aws", "us", "us-2", 30, false),
            ("a3", "aws", "eu", "eu-1", 5, false),
            ("g1", "gcp", "eu", "eu-2", 20, false),
            ("g2", "gcp", "asia", "as-1", 8, true),
        ];
        let (clusters, items) = fleet(&spec);
        type Case<'a> = (
            &'a str,
            Vec<SpreadConstraint>,
            i64,
            Result<Vec<&'a str>, &'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "none: all",
                vec![],
                5,
                Ok(vec!["a1", "a2", "a3", "g1", "g2"]),
            ),
            (
                "two clusters: locality first, then capacity",
                vec![sc(SpreadByField::Cluster, 1, 2)],
                0,
                Ok(vec!["a2", "g2"]),
            ),
            (
                "two clusters retried by capacity",
                vec![sc(SpreadByField::Cluster, 1, 2)],
                45,
                Ok(vec!["a2", "g1"]),
            ),
            (
                "one region: asia holds locality but not 20",
                vec![sc(SpreadByField::Region, 1, 1)],
                20,
                Ok(vec!["a1", "a2"]),
            ),
            (
                "one region, locality wins when it fits",
                vec![sc(SpreadByField::Region, 1, 1)],
                8,
                Ok(vec!["g2"]),
            ),
            (
                "regions min 2 max 2",
                vec![sc(SpreadByField::Region, 2, 2)],
                60,
                Ok(vec!["a1", "a2", "a3", "g1"]),
            ),
            (
                "regions min 4: only 3",
                vec![sc(SpreadByField::Region, 4, 5)],
                1,
                Err("3 region group(s) available, minGroups is 4"),
            ),
            (
                "zones max 3 by capacity",
                vec![sc(SpreadByField::Zone, 2, 3)],
                60,
                Ok(vec!["a1", "a2", "g1"]),
            ),
            (
                "providers max 1",
                vec![sc(SpreadByField::Provider, 1, 1)],
                40,
                Ok(vec!["a1", "a2", "a3"]),
            ),
            (
                "provider too small",
                vec![sc(SpreadByField::Provider, 1, 1)],
                50,
                Err("the 1 chosen provider group(s) can hold 45 replicas, 50 needed"),
            ),
            (
                "region 2 then one cluster per region",
                vec![
                    sc(SpreadByField::Region, 2, 2),
                    sc(SpreadByField::Cluster, 2, 2),
                ],
                40,
                Ok(vec!["a2", "g1"]),
            ),
            (
                "clusters max below regions",
                vec![
                    sc(SpreadByField::Region, 3, 3),
                    sc(SpreadByField::Cluster, 1, 2),
                ],
                1,
                Err("3 groups above need one cluster each, but maxGroups of cluster is 2"),
            ),
            (
                "min above max",
                vec![sc(SpreadByField::Zone, 3, 2)],
                1,
                Err("zone: minGroups 3 is above maxGroups 2"),
            ),
        ];
        for (name, constraints, need, want) in cases {
            let mut rejected = vec![];
            let got = select(&constraints, &clusters, &items, need, &mut rejected)
                .map(|p| names(&clusters, &items, &p))
                .map_err(|e| match e {
                    Problem::Spread { message } => message,
                    other => other.to_string(),
                });
            let want = want
                .map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .map_err(str::to_string);
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn clusters_without_the_key_are_rejected() {
        let clusters = vec![
            ClusterView::new("a").with_location("aws", "us", "us-1"),
            ClusterView::new("bare"),
        ];
        let items: Vec<Item> = (0..2)
            .map(|i| Item {
                cluster: i,
                locality: false,
                capacity: 5,
            })
            .collect();
        let mut rejected = vec![];
        let got = select(
            &[sc(SpreadByField::Region, 1, 2)],
            &clusters,
            &items,
            1,
            &mut rejected,
        )
        .unwrap();
        assert_eq!(got, vec![0]);
        assert_eq!(
            rejected,
            vec![(
                1,
                Reason::NoSpreadKey {
                    key: "region".into()
                }
            )]
        );
    }

    #[test]
    fn spread_by_label() {
        let clusters = vec![
            ClusterView::new("a").with_label("rack", "r1"),
            ClusterView::new("b").with_label("rack", "r2"),
            ClusterView::new("c").with_label("rack", "r2"),
        ];
        let items: Vec<Item> = (0..3)
            .map(|i| Item {
                cluster: i,
                locality: false,
                capacity: 5 + i as i64,
            })
            .collect();
        let c = SpreadConstraint {
            spread_by_label: Some("rack".into()),
            max_groups: Some(1),
            ..Default::default()
        };
        let got = select(&[c], &clusters, &items, 1, &mut vec![]).unwrap();
        assert_eq!(names(&clusters, &items, &got), vec!["b", "c"]);
    }
}
