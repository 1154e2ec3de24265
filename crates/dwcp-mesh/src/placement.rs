//! Where an app's replicas go: deterministic, capacity aware, spread over
//! regions (or pinned to some), and explained.
//!
//! Every node computes the same placement from the same view of the
//! cluster (the members, their free capacity and the app's spec), so no
//! leader is needed to agree on it: each node serves what the placement
//! gives it. Replicas already placed stay where they are while their node
//! is schedulable and the app still wants them (no reshuffle on every
//! change); new ones go, in order, to the region with the fewest of the
//! app's replicas, then to the node with the most free memory, then by
//! node id.

use std::collections::BTreeMap;

/// A member as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// The node's id.
    pub id: String,
    /// Its region.
    pub region: String,
    /// Whether it takes new work (alive and neither cordoned nor draining).
    pub schedulable: bool,
    /// Whether it keeps the work it has (alive and not draining: a
    /// cordoned node keeps its replicas).
    pub keeps_work: bool,
    /// Memory it can still give instances, in bytes.
    pub free_memory: u64,
    /// Instance slots it has free.
    pub free_instances: u32,
}

/// What an app asks of placement.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSpec {
    /// How many replicas.
    pub replicas: u32,
    /// Only these regions (empty: any).
    pub pin_regions: Vec<String>,
    /// Memory one instance needs, in bytes.
    pub memory_bytes: u64,
}

/// The app's replicas after placement, with why.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Placement {
    /// Nodes that hold a replica, in the order chosen.
    pub nodes: Vec<String>,
    /// Nodes that held one and no longer do.
    pub removed: Vec<String>,
    /// One line per decision.
    pub reasons: Vec<String>,
}

/// Places `spec`'s replicas on `nodes`, keeping those in `current` that
/// still may hold one.
pub fn place(spec: &AppSpec, nodes: &[NodeView], current: &[String]) -> Placement {
    let by_id: BTreeMap<&str, &NodeView> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let allowed =
        |n: &NodeView| spec.pin_regions.is_empty() || spec.pin_regions.contains(&n.region);
    let fits = |n: &NodeView| n.free_memory >= spec.memory_bytes && n.free_instances > 0;
    let mut out = Placement::default();
    let wanted = spec.replicas as usize;
    // Replicas in place stay while their node may hold them.
    for id in current {
        let keep = by_id
            .get(id.as_str())
            .filter(|n| n.keeps_work && allowed(n))
            .is_some();
        if keep && out.nodes.len() < wanted && !out.nodes.contains(id) {
            out.nodes.push(id.clone());
        } else if !out.nodes.contains(id) {
            let why = match by_id.get(id.as_str()) {
                None => "is no longer a member",
                Some(n) if !n.keeps_work => "is down or draining",
                Some(n) if !allowed(n) => "is outside the app's regions",
                Some(_) => "is beyond the replica count",
            };
            out.reasons.push(format!("removed from {id}: it {why}"));
            out.removed.push(id.clone());
        }
    }
    while out.nodes.len() < wanted {
        let mut per_region: BTreeMap<&str, usize> = BTreeMap::new();
        for id in &out.nodes {
            if let Some(n) = by_id.get(id.as_str()) {
                *per_region.entry(n.region.as_str()).or_default() += 1;
            }
        }
        let best = nodes
            .iter()
            .filter(|n| n.schedulable && allowed(n) && fits(n) && !out.nodes.contains(&n.id))
            .min_by(|a, b| {
                let ra = per_region.get(a.region.as_str()).copied().unwrap_or(0);
                let rb = per_region.get(b.region.as_str()).copied().unwrap_or(0);
                ra.cmp(&rb)
                    .then(b.free_memory.cmp(&a.free_memory))
                    .then(a.id.cmp(&b.id))
            });
        let Some(node) = best else {
            out.reasons.push(format!(
                "{} of {wanted} replicas placed: no other schedulable node{} has {} bytes and an instance slot free",
                out.nodes.len(),
                if spec.pin_regions.is_empty() {
                    String::new()
                } else {
                    format!(" in {}", spec.pin_regions.join(", "))
                },
                spec.memory_bytes
            ));
            break;
        };
        out.reasons.push(format!(
            "placed on {} in {}: fewest replicas in that region, {} bytes free",
            node.id, node.region, node.free_memory
        ));
        out.nodes.push(node.id.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn node(id: &str, region: &str, free_mib: u64) -> NodeView {
        NodeView {
            id: id.into(),
            region: region.into(),
            schedulable: true,
            keeps_work: true,
            free_memory: free_mib * MIB,
            free_instances: 100,
        }
    }

    fn spec(replicas: u32, pin: &[&str]) -> AppSpec {
        AppSpec {
            replicas,
            pin_regions: pin.iter().map(|r| r.to_string()).collect(),
            memory_bytes: 64 * MIB,
        }
    }

    fn cluster() -> Vec<NodeView> {
        vec![
            node("eu-1", "eu", 1_000),
            node("eu-2", "eu", 2_000),
            node("us-1", "us", 500),
            node("ap-1", "ap", 800),
        ]
    }

    #[test]
    fn replicas_spread_over_regions_then_go_where_memory_is_free() {
        let p = place(&spec(3, &[]), &cluster(), &[]);
        // One per region first (by free memory: eu-2, ap-1, us-1).
        assert_eq!(p.nodes, ["eu-2", "ap-1", "us-1"]);
        assert_eq!(p.reasons.len(), 3);
        let p = place(&spec(4, &[]), &cluster(), &[]);
        assert_eq!(p.nodes, ["eu-2", "ap-1", "us-1", "eu-1"]);
        // The order nodes are listed in changes nothing.
        let mut reversed = cluster();
        reversed.reverse();
        assert_eq!(place(&spec(4, &[]), &reversed, &[]).nodes, p.nodes);
    }

    #[test]
    fn pinned_apps_stay_in_their_regions_and_capacity_is_respected() {
        let p = place(&spec(2, &["eu"]), &cluster(), &[]);
        assert_eq!(p.nodes, ["eu-2", "eu-1"]);
        let p = place(&spec(3, &["eu"]), &cluster(), &[]);
        assert_eq!(p.nodes.len(), 2);
        assert!(
            p.reasons.last().unwrap().contains("2 of 3 replicas placed"),
            "{p:?}"
        );
        let mut small = cluster();
        small[1].free_memory = 10 * MIB;
        small[0].free_instances = 0;
        let p = place(&spec(1, &["eu"]), &small, &[]);
        assert!(p.nodes.is_empty(), "{p:?}");
    }

    #[test]
    fn replicas_in_place_stay_and_those_on_unschedulable_nodes_move() {
        let current = vec!["us-1".to_string(), "eu-1".to_string()];
        let p = place(&spec(2, &[]), &cluster(), &current);
        assert_eq!(p.nodes, current, "no reshuffle");
        assert!(p.removed.is_empty());
        // Cordoned: it keeps its replica, and gets no new one.
        let mut cordoned = cluster();
        cordoned[2].schedulable = false; // us-1
        let p = place(&spec(2, &[]), &cordoned, &current);
        assert_eq!(
            (p.nodes.as_slice(), p.removed.len()),
            (current.as_slice(), 0)
        );
        let p = place(&spec(3, &[]), &cordoned, &current);
        assert!(!p.nodes[2..].contains(&"us-1".to_string()), "{p:?}");
        // Draining (or dead): its replica moves.
        let mut draining = cordoned;
        draining[2].keeps_work = false;
        let p = place(&spec(2, &[]), &draining, &current);
        assert_eq!(p.removed, ["us-1"]);
        assert!(p.reasons[0].contains("down or draining"), "{p:?}");
        // Its replacement goes to the region with none (ap), not a second eu.
        assert_eq!(p.nodes, ["eu-1", "ap-1"]);
        // Fewer replicas wanted: the extra ones go.
        let p = place(&spec(1, &[]), &cluster(), &current);
        assert_eq!(
            (p.nodes.clone(), p.removed.clone()),
            (vec!["us-1".to_string()], vec!["eu-1".to_string()])
        );
        // A node gone from the membership.
        let p = place(&spec(2, &[]), &cluster(), &["gone".to_string()]);
        assert_eq!(p.removed, ["gone"]);
        assert_eq!(p.nodes.len(), 2);
    }
}
