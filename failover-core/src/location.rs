//! Which location record says where the CMS is: one rule, used by planned failover,
//! disaster recovery, restore and `status`.
//!
//! Records are ordered by epoch. Every commit takes an epoch above every epoch ever seen
//! (on any reachable instance and in the journal), and every run re-publishes the winning
//! record to every reachable instance, so two different stores never hold records at the
//! same epoch. If they do anyway (a record restored from an old backup, a hand edit), no
//! rule can tell which commit is newer: that tie is a [`Refusal::RecordTie`] naming what to
//! check, never a silent pick.

use crate::outcome::Refusal;
use crate::server::LocationRecord;

/// The winning record among `records` (`Ok(None)`: no record anywhere), or a tie between
/// different stores at the highest epoch.
pub fn winning_record<'a>(
    records: impl IntoIterator<Item = &'a LocationRecord>,
) -> Result<Option<&'a LocationRecord>, Box<Refusal>> {
    let mut best: Option<&LocationRecord> = None;
    let mut tied: Vec<&LocationRecord> = Vec::new();
    for r in records {
        match best {
            Some(b) if r.epoch < b.epoch => {}
            Some(b) if r.epoch == b.epoch => {
                if r.active != b.active && !tied.iter().any(|t| t.active == r.active) {
                    tied.push(r);
                }
            }
            _ => {
                best = Some(r);
                tied.clear();
            }
        }
    }
    match best {
        Some(b) if !tied.is_empty() => Err(Box::new(Refusal::RecordTie {
            epoch: b.epoch,
            stores: std::iter::once(b)
                .chain(tied)
                .map(|r| r.active.clone())
                .collect(),
        })),
        other => Ok(other),
    }
}

/// The highest epoch in `records`, 0 when there is none.
pub fn max_epoch<'a>(records: impl IntoIterator<Item = &'a LocationRecord>) -> u64 {
    records.into_iter().map(|r| r.epoch).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{InstanceAddr, Store};

    fn rec(epoch: u64, host: &str, run: &str) -> LocationRecord {
        LocationRecord {
            epoch,
            active: Store::new(InstanceAddr::parse(host).unwrap(), None).unwrap(),
            run_id: run.into(),
        }
    }

    #[test]
    fn the_highest_epoch_wins_whatever_the_order() {
        let recs = [
            rec(1, "a.test", "r1"),
            rec(3, "b.test", "r3"),
            rec(2, "a.test", "r2"),
        ];
        assert_eq!(winning_record(&recs).unwrap(), Some(&recs[1]));
        let rev: Vec<_> = recs.iter().rev().cloned().collect();
        assert_eq!(winning_record(&rev).unwrap().unwrap().epoch, 3);
        assert_eq!(winning_record(&[]).unwrap(), None);
    }

    #[test]
    fn equal_epochs_on_one_store_agree() {
        let recs = [rec(2, "b.test", "r2"), rec(2, "b.test", "r2")];
        assert_eq!(winning_record(&recs).unwrap(), Some(&recs[0]));
    }

    #[test]
    fn equal_epochs_on_different_stores_are_a_tie_in_any_order() {
        let recs = [
            rec(2, "a.test", "r-a"),
            rec(2, "b.test", "r-b"),
            rec(1, "a.test", "r1"),
        ];
        for order in [[0, 1, 2], [1, 0, 2], [2, 1, 0]] {
            let v: Vec<_> = order.iter().map(|i| recs[*i].clone()).collect();
            match *winning_record(&v).unwrap_err() {
                Refusal::RecordTie { epoch, ref stores } => {
                    assert_eq!(epoch, 2);
                    assert_eq!(stores.len(), 2);
                }
                ref r => panic!("{r}"),
            }
        }
    }
}
