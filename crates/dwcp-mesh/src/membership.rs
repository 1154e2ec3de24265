//! Which nodes are in the cluster, which are alive, and which take new
//! work.
//!
//! Each node publishes a heartbeat (its region, labels, free capacity and
//! the state its operator set) every half second or so; a node not heard
//! from for `dead_after` is dead, and its work is placed elsewhere. With a
//! heartbeat every 500 ms and `dead_after` of 2 s, a dead node is noticed
//! within 2.5 s of its last beat, inside the 3 s. An operator's
//! `cordon` stops new work going to a node; `drain` also moves its work
//! away; both leave the node serving what it has until it is moved.

use std::collections::BTreeMap;

use crate::placement::NodeView;

/// What an operator set for a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Admission {
    /// Takes new work.
    #[default]
    Active,
    /// Keeps its work, takes no new work.
    Cordoned,
    /// Its work moves elsewhere; it takes no new work.
    Draining,
}

/// One node's last heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// The node's id.
    pub node: String,
    /// Its region.
    pub region: String,
    /// Its labels (`k=v`).
    pub labels: BTreeMap<String, String>,
    /// Memory it can still give instances, in bytes.
    pub free_memory: u64,
    /// Instance slots it has free.
    pub free_instances: u32,
    /// What its operator set.
    pub admission: Admission,
}

/// The members as one node sees them.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    /// Last heartbeat and when it came (milliseconds), by node.
    nodes: BTreeMap<String, (Heartbeat, u64)>,
}

/// A member's state as `dwcp nodes` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Heard from within `dead_after`.
    Alive,
    /// Not heard from within `dead_after`.
    Dead,
}

impl Membership {
    /// Records a heartbeat received at `now_ms`. An older heartbeat than
    /// the one held (by time) is ignored.
    pub fn heartbeat(&mut self, beat: Heartbeat, now_ms: u64) {
        match self.nodes.get(&beat.node) {
            Some((_, at)) if *at > now_ms => {}
            _ => {
                self.nodes.insert(beat.node.clone(), (beat, now_ms));
            }
        }
    }

    /// Forgets a node (it deregistered, or an operator removed it).
    pub fn remove(&mut self, node: &str) -> bool {
        self.nodes.remove(node).is_some()
    }

    /// A node's liveness at `now_ms` (`None`: not a member).
    pub fn liveness(&self, node: &str, now_ms: u64, dead_after_ms: u64) -> Option<Liveness> {
        self.nodes.get(node).map(|(_, at)| {
            if now_ms.saturating_sub(*at) > dead_after_ms {
                Liveness::Dead
            } else {
                Liveness::Alive
            }
        })
    }

    /// Nodes not heard from within `dead_after_ms`, by id.
    pub fn dead(&self, now_ms: u64, dead_after_ms: u64) -> Vec<&str> {
        self.nodes
            .keys()
            .filter(|id| self.liveness(id, now_ms, dead_after_ms) == Some(Liveness::Dead))
            .map(String::as_str)
            .collect()
    }

    /// Every member as placement sees it: schedulable when alive and
    /// active, keeping its work when alive and not draining; sorted by id.
    pub fn views(&self, now_ms: u64, dead_after_ms: u64) -> Vec<NodeView> {
        self.nodes
            .iter()
            .map(|(id, (beat, _))| {
                let alive = self.liveness(id, now_ms, dead_after_ms) == Some(Liveness::Alive);
                NodeView {
                    id: id.clone(),
                    region: beat.region.clone(),
                    schedulable: alive && beat.admission == Admission::Active,
                    keeps_work: alive && beat.admission != Admission::Draining,
                    free_memory: beat.free_memory,
                    free_instances: beat.free_instances,
                }
            })
            .collect()
    }

    /// The nodes whose work must move: dead or draining (cordoned nodes
    /// keep theirs).
    pub fn evacuating(&self, now_ms: u64, dead_after_ms: u64) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|(id, (beat, _))| {
                beat.admission == Admission::Draining
                    || self.liveness(id, now_ms, dead_after_ms) == Some(Liveness::Dead)
            })
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// Members in `region` (all with `None`), by id.
    pub fn in_region(&self, region: Option<&str>) -> Vec<&Heartbeat> {
        self.nodes
            .values()
            .map(|(beat, _)| beat)
            .filter(|beat| region.is_none_or(|r| beat.region == r))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::{AppSpec, place};

    const DEAD_AFTER: u64 = 2_000;

    fn beat(node: &str, region: &str) -> Heartbeat {
        Heartbeat {
            node: node.into(),
            region: region.into(),
            labels: BTreeMap::new(),
            free_memory: 1 << 30,
            free_instances: 100,
            admission: Admission::Active,
        }
    }

    #[test]
    fn a_node_not_heard_from_within_the_bound_is_dead_and_back_when_it_beats() {
        let mut m = Membership::default();
        m.heartbeat(beat("a", "eu"), 0);
        m.heartbeat(beat("b", "us"), 0);
        for t in (500..=2_000).step_by(500) {
            m.heartbeat(beat("a", "eu"), t);
        }
        assert_eq!(m.liveness("a", 2_000, DEAD_AFTER), Some(Liveness::Alive));
        assert_eq!(m.liveness("b", 2_000, DEAD_AFTER), Some(Liveness::Alive));
        assert_eq!(
            m.dead(2_001, DEAD_AFTER),
            ["b"],
            "b's last beat was 2,001 ms ago"
        );
        assert_eq!(m.liveness("c", 0, DEAD_AFTER), None);
        m.heartbeat(beat("b", "us"), 2_100);
        assert!(m.dead(2_100, DEAD_AFTER).is_empty());
        // A delayed older beat does not bring back an old state.
        let mut old = beat("b", "us");
        old.admission = Admission::Draining;
        m.heartbeat(old, 1_000);
        assert!(m.evacuating(2_100, DEAD_AFTER).is_empty());
        assert!(m.remove("b"));
        assert!(!m.remove("b"));
    }

    #[test]
    fn cordoned_nodes_keep_their_work_and_draining_or_dead_ones_lose_it() {
        let mut m = Membership::default();
        let mut cordoned = beat("eu-1", "eu");
        cordoned.admission = Admission::Cordoned;
        let mut draining = beat("eu-2", "eu");
        draining.admission = Admission::Draining;
        m.heartbeat(cordoned, 10_000);
        m.heartbeat(draining, 10_000);
        m.heartbeat(beat("us-1", "us"), 10_000);
        m.heartbeat(beat("ap-1", "ap"), 5_000);
        let views = m.views(10_000, DEAD_AFTER);
        let schedulable: Vec<&str> = views
            .iter()
            .filter(|v| v.schedulable)
            .map(|v| v.id.as_str())
            .collect();
        assert_eq!(schedulable, ["us-1"]);
        assert_eq!(m.evacuating(10_000, DEAD_AFTER), ["ap-1", "eu-2"]);
        assert_eq!(m.in_region(Some("eu")).len(), 2);
        assert_eq!(m.in_region(None).len(), 4);
        // Placement over this view: the cordoned node keeps its replica,
        // the dead one's moves to the only schedulable node.
        let spec = AppSpec {
            replicas: 2,
            pin_regions: Vec::new(),
            memory_bytes: 1 << 20,
        };
        let current = vec!["eu-1".to_string(), "ap-1".to_string()];
        let p = place(&spec, &views, &current);
        assert_eq!(p.removed, ["ap-1"], "{p:?}");
        assert_eq!(p.nodes, ["eu-1", "us-1"]);
    }
}
