//! Login throttling: failed sign-ins are counted over a sliding window per (account, address),
//! per account across all addresses (a looser limit), and per address; past a limit, attempts
//! are refused without checking the password, so a guesser learns nothing and costs us no
//! argon2 work. The per-pair limit is the tight one, so someone guessing from elsewhere cannot
//! lock the owner out from their own address with a handful of tries. IPv6 addresses count by
//! /64, the block one host usually has. State is in memory: a restart forgives.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use openframe_storage::model::{Clock, UnixMillis};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_account: usize,
    pub per_address: usize,
    pub window_ms: i64,
}

/// Refused: try again after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

#[derive(Debug)]
pub struct LoginThrottle {
    limits: Limits,
    clock: Arc<dyn Clock>,
    failures: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    pairs: HashMap<(String, IpAddr), VecDeque<UnixMillis>>,
    accounts: HashMap<String, VecDeque<UnixMillis>>,
    addresses: HashMap<IpAddr, VecDeque<UnixMillis>>,
}

/// How much looser the account-wide limit is than the per-address one.
const ACCOUNT_WIDE_FACTOR: usize = 10;

/// IPv4 as is; IPv6 by its /64.
fn network(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::from(segments)
        }
    }
}

/// The most keys remembered; beyond it the oldest-looking entries are dropped, so a flood of
/// distinct usernames cannot grow memory without bound.
const MAX_TRACKED: usize = 100_000;

fn prune(times: &mut VecDeque<UnixMillis>, since: UnixMillis) {
    while times.front().is_some_and(|&time| time <= since) {
        times.pop_front();
    }
}

fn retry_after(
    times: &VecDeque<UnixMillis>,
    limit: usize,
    now: UnixMillis,
    window_ms: i64,
) -> Option<u64> {
    if times.len() < limit {
        return None;
    }
    // The attempt that must age out before another is allowed.
    let blocking = times.get(times.len() - limit).copied().unwrap_or(now);
    let wait_ms = (blocking + window_ms - now).max(1000);
    Some(u64::try_from(wait_ms).map_or(1, |ms| ms.div_ceil(1000)))
}

impl LoginThrottle {
    pub fn new(limits: Limits, clock: Arc<dyn Clock>) -> LoginThrottle {
        LoginThrottle {
            limits,
            clock,
            failures: Mutex::new(Failures::default()),
        }
    }

    /// Whether an attempt for `account` from `address` may be checked now.
    pub fn check(&self, account: &str, address: IpAddr) -> Result<(), RetryAfter> {
        let address = network(address);
        let now = self.clock.now_ms();
        let since = now - self.limits.window_ms;
        let window = self.limits.window_ms;
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut wait = None;
        if let Some(times) = failures.pairs.get_mut(&(account.to_owned(), address)) {
            prune(times, since);
            wait = wait.max(retry_after(times, self.limits.per_account, now, window));
        }
        if let Some(times) = failures.accounts.get_mut(account) {
            prune(times, since);
            let limit = self.limits.per_account * ACCOUNT_WIDE_FACTOR;
            wait = wait.max(retry_after(times, limit, now, window));
        }
        if let Some(times) = failures.addresses.get_mut(&address) {
            prune(times, since);
            wait = wait.max(retry_after(times, self.limits.per_address, now, window));
        }
        wait.map_or(Ok(()), |seconds| Err(RetryAfter(seconds)))
    }

    pub fn record_failure(&self, account: &str, address: IpAddr) {
        let address = network(address);
        let now = self.clock.now_ms();
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if failures.pairs.len() >= MAX_TRACKED || failures.accounts.len() >= MAX_TRACKED {
            let since = now - self.limits.window_ms;
            failures
                .pairs
                .retain(|_, times| times.back().is_some_and(|&t| t > since));
            failures
                .accounts
                .retain(|_, times| times.back().is_some_and(|&t| t > since));
            failures
                .addresses
                .retain(|_, times| times.back().is_some_and(|&t| t > since));
        }
        failures
            .pairs
            .entry((account.to_owned(), address))
            .or_default()
            .push_back(now);
        failures
            .accounts
            .entry(account.to_owned())
            .or_default()
            .push_back(now);
        failures
            .addresses
            .entry(address)
            .or_default()
            .push_back(now);
    }

    /// A successful sign-in clears its (account, address) failures; the wider counts stay, so
    /// one right password does not reset a guesser working through many accounts.
    pub fn record_success(&self, account: &str, address: IpAddr) {
        let address = network(address);
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        failures.pairs.remove(&(account.to_owned(), address));
    }
}

#[cfg(test)]
mod tests {
    use openframe_storage::model::ManualClock;

    use super::*;

    fn throttle(clock: &ManualClock) -> LoginThrottle {
        let limits = Limits {
            per_account: 3,
            per_address: 5,
            window_ms: 60_000,
        };
        LoginThrottle::new(limits, Arc::new(clock.clone()))
    }

    #[test]
    fn an_account_is_refused_after_its_limit_until_the_window_passes() {
        let clock = ManualClock::starting_at(1_000_000);
        let throttle = throttle(&clock);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(throttle.check("t/a@example.com", ip), Ok(()));
            throttle.record_failure("t/a@example.com", ip);
        }
        assert_eq!(throttle.check("t/a@example.com", ip), Err(RetryAfter(60)));
        assert_eq!(throttle.check("t/b@example.com", ip), Ok(()));
        clock.advance_ms(30_000);
        assert_eq!(throttle.check("t/a@example.com", ip), Err(RetryAfter(30)));
        clock.advance_ms(30_001);
        assert_eq!(throttle.check("t/a@example.com", ip), Ok(()));
    }

    #[test]
    fn an_address_guessing_across_accounts_is_refused() {
        let clock = ManualClock::starting_at(0);
        let throttle = throttle(&clock);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        for n in 0..5 {
            throttle.record_failure(&format!("t/user{n}@example.com"), ip);
        }
        assert!(throttle.check("t/fresh@example.com", ip).is_err());
        let other: IpAddr = "192.0.2.10".parse().unwrap();
        assert_eq!(throttle.check("t/fresh@example.com", other), Ok(()));
    }

    #[test]
    fn success_clears_the_account_but_not_the_address() {
        let clock = ManualClock::starting_at(0);
        let throttle = throttle(&clock);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..2 {
            throttle.record_failure("t/a@example.com", ip);
        }
        throttle.record_success("t/a@example.com", ip);
        for _ in 0..2 {
            throttle.record_failure("t/a@example.com", ip);
        }
        assert_eq!(throttle.check("t/a@example.com", ip), Ok(()));
    }

    #[test]
    fn guessing_from_elsewhere_does_not_lock_the_owner_out() {
        let clock = ManualClock::starting_at(0);
        let throttle = throttle(&clock);
        let attacker: IpAddr = "198.51.100.7".parse().unwrap();
        let owner: IpAddr = "192.0.2.44".parse().unwrap();
        for _ in 0..3 {
            throttle.record_failure("t/owner@example.com", attacker);
        }
        assert!(throttle.check("t/owner@example.com", attacker).is_err());
        assert_eq!(throttle.check("t/owner@example.com", owner), Ok(()));
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let clock = ManualClock::starting_at(0);
        let throttle = throttle(&clock);
        for n in 0..5 {
            let address: IpAddr = format!("2001:db8:1:2::{n:x}").parse().unwrap();
            throttle.record_failure(&format!("t/user{n}@example.com"), address);
        }
        let same_block: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(throttle.check("t/fresh@example.com", same_block).is_err());
        let other_block: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(throttle.check("t/fresh@example.com", other_block), Ok(()));
    }
}
