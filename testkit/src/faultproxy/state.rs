//! State shared between the proxy's connections and the test: the fault plan and counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::fault::{Fault, FaultPlan, RequestFacts, SplitMix64};

/// Control of a running [`super::FaultProxy`]: switch faults and read counters at run time.
///
/// Cheap to clone; every clone controls the same proxy.
#[derive(Debug, Clone, Default)]
pub struct FaultHandle {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    plan: Mutex<PlanState>,
    injected: Mutex<BTreeMap<String, u64>>,
    requests: AtomicU64,
    token_generation: AtomicU64,
}

#[derive(Debug)]
struct PlanState {
    plan: FaultPlan,
    /// Matching requests seen so far by each rule, for [`super::Rule::every`].
    rule_hits: Vec<u64>,
    rng: SplitMix64,
}

impl Default for PlanState {
    fn default() -> Self {
        PlanState {
            plan: FaultPlan::None,
            rule_hits: Vec::new(),
            rng: SplitMix64::new(0),
        }
    }
}

impl FaultHandle {
    /// Replaces the fault plan. Requests already in flight keep the fault they drew.
    pub fn set_faults(&self, plan: FaultPlan) {
        let rng = match &plan {
            FaultPlan::Random { seed, .. } => SplitMix64::new(*seed),
            _ => SplitMix64::new(0),
        };
        let rule_hits = match &plan {
            FaultPlan::Rules(rules) => vec![0; rules.len()],
            _ => Vec::new(),
        };
        *lock(&self.shared.plan) = PlanState {
            plan,
            rule_hits,
            rng,
        };
    }

    /// Stops injecting faults. Stalls already in progress with [`super::Stall::Forever`] go
    /// on until their client gives up.
    pub fn clear(&self) {
        self.set_faults(FaultPlan::None);
    }

    /// Returns how many times each fault was injected, by [`Fault::name`].
    pub fn injected(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.injected).clone()
    }

    /// Returns the total number of faults injected.
    pub fn injected_total(&self) -> u64 {
        lock(&self.shared.injected).values().sum()
    }

    /// Returns the number of HTTP requests the proxy received, with or without a fault.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn count_request(&self) {
        self.shared.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record(&self, fault: &Fault) {
        *lock(&self.shared.injected).entry(fault.name()).or_default() += 1;
    }

    pub(crate) fn token_generation(&self) -> u64 {
        self.shared.token_generation.load(Ordering::Relaxed)
    }

    pub(crate) fn expire_tokens(&self) {
        self.shared.token_generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Draws the fault for one request, if any.
    pub(crate) fn choose(&self, facts: &RequestFacts<'_>) -> Option<Fault> {
        let mut state = lock(&self.shared.plan);
        let PlanState {
            plan,
            rule_hits,
            rng,
        } = &mut *state;
        match plan {
            FaultPlan::None => None,
            FaultPlan::Rules(rules) => {
                for (rule, hits) in rules.iter().zip(rule_hits.iter_mut()) {
                    if !rule.matches(facts) {
                        continue;
                    }
                    *hits += 1;
                    if *hits % rule.every.max(1) == 0 {
                        return Some(rule.fault);
                    }
                }
                None
            }
            FaultPlan::Random {
                rate,
                faults,
                path_contains,
                ..
            } => {
                let candidate = path_contains
                    .as_deref()
                    .is_none_or(|text| facts.path.contains(text));
                if !candidate || faults.is_empty() || rng.next_unit() >= *rate {
                    return None;
                }
                let index = (rng.next_u64() % faults.len() as u64) as usize;
                Some(faults[index])
            }
        }
    }
}

/// Locks `mutex`, taking the data even when a panicking thread poisoned it: the state stays
/// consistent because every update is a single assignment or increment.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::super::fault::Rule;
    use super::*;

    const BLOB: RequestFacts<'static> = RequestFacts {
        path: "/v2/a/blobs/sha256:00",
        ranged: true,
    };

    #[test]
    fn every_nth_matching_request_gets_the_fault() {
        let handle = FaultHandle::default();
        handle.set_faults(FaultPlan::Rules(vec![Rule::blobs(Fault::Reset).every(3)]));
        let drawn: Vec<bool> = (0..6).map(|_| handle.choose(&BLOB).is_some()).collect();
        assert_eq!(drawn, [false, false, true, false, false, true]);
        handle.clear();
        assert_eq!(handle.choose(&BLOB), None);
    }

    #[test]
    fn random_plan_repeats_with_its_seed() {
        let plan = FaultPlan::Random {
            seed: 42,
            rate: 0.5,
            faults: vec![Fault::Reset, Fault::Truncate, Fault::Status(503)],
            path_contains: None,
        };
        let draw = |handle: &FaultHandle| -> Vec<Option<Fault>> {
            (0..200).map(|_| handle.choose(&BLOB)).collect()
        };
        let handle = FaultHandle::default();
        handle.set_faults(plan.clone());
        let first = draw(&handle);
        handle.set_faults(plan);
        assert_eq!(first, draw(&handle));
        let faults = first.iter().flatten().count();
        assert!((60..140).contains(&faults), "{faults} faults of 200");
    }
}
