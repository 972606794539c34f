//! Deterministic fault injection.
//!
//! Whether the n-th call of an operation on an instance fails, and how, depends only on the
//! seed, the instance, the operation and n, not on what happens on other instances or
//! operations, so concurrent callers still see the same faults for the same seed.

use crate::error::SqlError;
use failover_core::{InstanceAddr, Operation};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::time::Duration;

/// A fault to manifest instead of (or around) an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with this server error and changes nothing.
    Error(SqlError),
    /// The operation runs after this delay.
    Delay(Duration),
    /// The operation never answers and changes nothing (the caller's timeout ends it).
    Hang,
    /// The connection drops before the operation runs: nothing changes, the session dies and
    /// releases its application locks; the caller sees an unreachable error.
    Disconnect,
    /// The client process dies: the operation is applied (`applied`) or not, and the call
    /// never returns (the harness drops the future).
    Crash {
        /// Whether the operation reached the server and took effect before the crash.
        applied: bool,
    },
}

/// How an injected timeout manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutFault {
    /// [`Fault::Hang`].
    Hang,
    /// [`Fault::Delay`] of the given length (longer than the caller's timeout to be one).
    Delay(Duration),
}

/// Probability (0.0..=1.0) of each fault kind per call. The kinds are tried in the order of
/// the fields; their sum should be at most 1.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultRates {
    /// Transient server error: 5061 or 1205.
    pub transient: f64,
    /// Timeout: [`FaultConfig::timeout_as`].
    pub timeout: f64,
    /// Connection loss: [`Fault::Disconnect`].
    pub unreachable: f64,
    /// Permission error: 18456 or 229.
    pub permission: f64,
    /// Invalid-state error: 5069.
    pub invalid_state: f64,
    /// Fatal error: 3624.
    pub fatal: f64,
    /// A delay of [`FaultConfig::delay`], after which the operation runs normally.
    pub delay: f64,
    /// A crash point: [`Fault::Crash`].
    pub crash: f64,
}

impl FaultRates {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }
    /// Sets the transient rate.
    pub fn transient(mut self, p: f64) -> Self {
        self.transient = p;
        self
    }
    /// Sets the timeout rate.
    pub fn timeout(mut self, p: f64) -> Self {
        self.timeout = p;
        self
    }
    /// Sets the connection-loss rate.
    pub fn unreachable(mut self, p: f64) -> Self {
        self.unreachable = p;
        self
    }
    /// Sets the permission-error rate.
    pub fn permission(mut self, p: f64) -> Self {
        self.permission = p;
        self
    }
    /// Sets the invalid-state-error rate.
    pub fn invalid_state(mut self, p: f64) -> Self {
        self.invalid_state = p;
        self
    }
    /// Sets the fatal-error rate.
    pub fn fatal(mut self, p: f64) -> Self {
        self.fatal = p;
        self
    }
    /// Sets the delay rate.
    pub fn delay(mut self, p: f64) -> Self {
        self.delay = p;
        self
    }
    /// Sets the crash rate.
    pub fn crash(mut self, p: f64) -> Self {
        self.crash = p;
        self
    }
    /// The sum of all rates.
    pub fn total(&self) -> f64 {
        self.transient
            + self.timeout
            + self.unreachable
            + self.permission
            + self.invalid_state
            + self.fatal
            + self.delay
            + self.crash
    }
}

/// "The `nth` call of `operation` on `instance` gets `fault`."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedFault {
    /// The instance, or `None` for the n-th call on any instance.
    pub instance: Option<InstanceAddr>,
    /// The operation.
    pub operation: Operation,
    /// 1-based call number, counted per (instance, operation), or per operation when
    /// `instance` is `None`.
    pub nth: u64,
    /// What happens.
    pub fault: Fault,
}

impl ScriptedFault {
    /// The `nth` call of `operation` on `instance` gets `fault`.
    pub fn on(instance: &InstanceAddr, operation: Operation, nth: u64, fault: Fault) -> Self {
        Self {
            instance: Some(instance.clone()),
            operation,
            nth,
            fault,
        }
    }
    /// The `nth` call of `operation` on any instance gets `fault`.
    pub fn any(operation: Operation, nth: u64, fault: Fault) -> Self {
        Self {
            instance: None,
            operation,
            nth,
            fault,
        }
    }
}

/// Fault configuration: a seed, rates per operation (with a default), the delay and timeout
/// manifestations, and scripted faults (which take precedence over random ones).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// The seed of every random decision.
    pub seed: u64,
    /// Rates for operations without their own entry in `rates`.
    pub default_rates: FaultRates,
    /// Rates per operation.
    pub rates: Vec<(Operation, FaultRates)>,
    /// Length of a [`FaultRates::delay`] fault.
    pub delay: Duration,
    /// How a [`FaultRates::timeout`] fault manifests.
    pub timeout_as: TimeoutFault,
    /// Faults at fixed call numbers.
    pub scripted: Vec<ScriptedFault>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self::seeded(0)
    }
}

impl FaultConfig {
    /// No faults, with `seed` for later random ones.
    pub fn seeded(seed: u64) -> Self {
        Self {
            seed,
            default_rates: FaultRates::none(),
            rates: Vec::new(),
            delay: Duration::from_millis(5),
            timeout_as: TimeoutFault::Hang,
            scripted: Vec::new(),
        }
    }
    /// Sets the rates of every operation without its own.
    pub fn with_default_rates(mut self, rates: FaultRates) -> Self {
        self.default_rates = rates;
        self
    }
    /// Sets the rates of one operation.
    pub fn with_rates(mut self, operation: Operation, rates: FaultRates) -> Self {
        self.rates.retain(|(o, _)| *o != operation);
        self.rates.push((operation, rates));
        self
    }
    /// Sets the delay length.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
    /// Sets how timeouts manifest.
    pub fn with_timeout_as(mut self, t: TimeoutFault) -> Self {
        self.timeout_as = t;
        self
    }
    /// Adds a scripted fault.
    pub fn script(mut self, fault: ScriptedFault) -> Self {
        self.scripted.push(fault);
        self
    }
    /// The rates that apply to `operation`.
    pub fn rates_for(&self, operation: Operation) -> FaultRates {
        self.rates
            .iter()
            .find(|(o, _)| *o == operation)
            .map_or(self.default_rates, |(_, r)| *r)
    }
}

/// The fault engine: the configuration plus call counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultState {
    pub(crate) config: FaultConfig,
    pub(crate) enabled: bool,
    per_instance: HashMap<(InstanceAddr, Operation), u64>,
    per_operation: HashMap<Operation, u64>,
}

impl FaultState {
    pub(crate) fn new(config: FaultConfig) -> Self {
        Self {
            config,
            enabled: true,
            per_instance: HashMap::new(),
            per_operation: HashMap::new(),
        }
    }

    /// Counts the call and decides its fault.
    pub(crate) fn next(&mut self, addr: &InstanceAddr, operation: Operation) -> Option<Fault> {
        if !self.enabled {
            return None;
        }
        let n_inst = {
            let c = self
                .per_instance
                .entry((addr.clone(), operation))
                .or_insert(0);
            *c += 1;
            *c
        };
        let n_op = {
            let c = self.per_operation.entry(operation).or_insert(0);
            *c += 1;
            *c
        };
        for s in &self.config.scripted {
            if s.operation != operation {
                continue;
            }
            let hit = match &s.instance {
                Some(i) => i == addr && s.nth == n_inst,
                None => s.nth == n_op,
            };
            if hit {
                return Some(s.fault.clone());
            }
        }
        let rates = self.config.rates_for(operation);
        if rates.total() <= 0.0 {
            return None;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(mix(&[
            self.config.seed,
            fnv(addr.to_string().to_ascii_lowercase().as_bytes()),
            fnv(operation.to_string().as_bytes()),
            n_inst,
        ]));
        let u: f64 = rng.random();
        let pick: bool = rng.random();
        let mut acc = 0.0;
        let mut hit = |p: f64| {
            acc += p;
            u < acc
        };
        if hit(rates.transient) {
            return Some(Fault::Error(if pick {
                SqlError::could_not_lock("database")
            } else {
                SqlError::deadlock()
            }));
        }
        if hit(rates.timeout) {
            return Some(match self.config.timeout_as {
                TimeoutFault::Hang => Fault::Hang,
                TimeoutFault::Delay(d) => Fault::Delay(d),
            });
        }
        if hit(rates.unreachable) {
            return Some(Fault::Disconnect);
        }
        if hit(rates.permission) {
            return Some(Fault::Error(if pick {
                SqlError::login_failed("fake")
            } else {
                SqlError::permission_denied("ALTER")
            }));
        }
        if hit(rates.invalid_state) {
            return Some(Fault::Error(SqlError::alter_failed(
                "Injected invalid-state fault.",
            )));
        }
        if hit(rates.fatal) {
            return Some(Fault::Error(SqlError::internal()));
        }
        if hit(rates.delay) {
            return Some(Fault::Delay(self.config.delay));
        }
        if hit(rates.crash) {
            return Some(Fault::Crash { applied: pick });
        }
        None
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn mix(parts: &[u64]) -> u64 {
    // splitmix64 over the parts.
    let mut z: u64 = 0x9e37_79b9_7f4a_7c15;
    for p in parts {
        z = z.wrapping_add(*p).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
    }
    z
}
