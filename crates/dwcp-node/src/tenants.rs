//! Tenants' quotas as the ingress enforces them.

use std::sync::{Arc, Mutex};

use dwcp_store::TenantQuota;
use serde::Serialize;

/// What a tenant's requests use now, against its quota. One per tenant,
/// shared by all its apps; a quota change applies to it in place.
#[derive(Debug, Default)]
pub struct TenantGate {
    state: Mutex<Usage>,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Usage {
    quota: TenantQuota,
    memory_bytes: u64,
    instances: u32,
}

/// A tenant's live use.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TenantUsage {
    /// Memory reserved by the instances serving now (each counts its app's limit).
    pub memory_bytes: u64,
    /// Instances serving now.
    pub instances: u32,
}

/// Why a request could not enter its tenant's quota.
#[derive(Debug, PartialEq, Eq)]
pub enum QuotaExceeded {
    /// All the instances it may have are serving.
    Instances(u32),
    /// The memory its serving instances reserve would pass the quota.
    Memory(u64),
}

impl QuotaExceeded {
    /// What the tenant is at, for a 503's reason.
    pub fn describe(&self) -> String {
        match self {
            QuotaExceeded::Instances(n) => format!("its quota of {n} instances"),
            QuotaExceeded::Memory(m) => format!("its memory quota of {m} bytes"),
        }
    }
}

impl TenantGate {
    /// A gate enforcing `quota`.
    pub fn new(quota: TenantQuota) -> Self {
        Self {
            state: Mutex::new(Usage {
                quota,
                ..Usage::default()
            }),
        }
    }

    /// Applies a new quota; requests already in flight finish.
    pub fn set_quota(&self, quota: TenantQuota) {
        if let Ok(mut state) = self.state.lock() {
            state.quota = quota;
        }
    }

    /// What the tenant uses now.
    pub fn usage(&self) -> TenantUsage {
        let state = self.state.lock().map(|s| *s).unwrap_or_default();
        TenantUsage {
            memory_bytes: state.memory_bytes,
            instances: state.instances,
        }
    }

    /// Takes room for one instance with `memory` bytes of limit, or says
    /// which quota is full. The room is given back when the slot drops.
    pub fn try_enter(self: &Arc<Self>, memory: u64) -> Result<TenantSlot, QuotaExceeded> {
        let mut state = self.state.lock().map_err(|_| QuotaExceeded::Instances(0))?;
        if let Some(max) = state.quota.instances
            && state.instances >= max
        {
            return Err(QuotaExceeded::Instances(max));
        }
        if let Some(max) = state.quota.memory_bytes
            && state.memory_bytes + memory > max
        {
            return Err(QuotaExceeded::Memory(max));
        }
        state.instances += 1;
        state.memory_bytes += memory;
        Ok(TenantSlot {
            gate: self.clone(),
            memory,
        })
    }
}

/// One request's share of its tenant's quota.
pub struct TenantSlot {
    gate: Arc<TenantGate>,
    memory: u64,
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        if let Ok(mut state) = self.gate.state.lock() {
            state.instances -= 1;
            state.memory_bytes -= self.memory;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_against_both_quotas_and_give_back() {
        let gate = Arc::new(TenantGate::new(TenantQuota {
            memory_bytes: Some(100),
            instances: Some(2),
        }));
        let a = gate.try_enter(60).unwrap();
        assert_eq!(gate.try_enter(60).err(), Some(QuotaExceeded::Memory(100)));
        let b = gate.try_enter(40).unwrap();
        assert_eq!(gate.try_enter(0).err(), Some(QuotaExceeded::Instances(2)));
        drop(a);
        assert_eq!(gate.usage().instances, 1);
        assert_eq!(gate.usage().memory_bytes, 40);
        drop(b);
        gate.set_quota(TenantQuota::default());
        let many: Vec<_> = (0..10).map(|_| gate.try_enter(1 << 30).unwrap()).collect();
        assert_eq!(gate.usage().instances, 10);
        drop(many);
        assert_eq!(gate.usage().memory_bytes, 0);
    }
}
