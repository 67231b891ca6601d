//! At-least-once with records processed in parallel: which offset may be stored for each
//! partition. An offset is stored only once every record below it is done, so a consumer that
//! crashes mid-batch is restarted from its oldest unfinished record — records after it may be
//! processed twice (the handlers are idempotent), none is ever skipped.

use std::collections::{BTreeSet, HashMap};

/// Per partition: the offsets in flight and the highest one started.
#[derive(Debug, Default)]
pub(crate) struct Offsets {
    partitions: HashMap<i32, Partition>,
}

#[derive(Debug, Default)]
struct Partition {
    in_flight: BTreeSet<i64>,
    highest: Option<i64>,
    /// The last offset handed out to store (the next record to read after a restart).
    stored: Option<i64>,
}

impl Offsets {
    /// A record of `partition` at `offset` starts processing. A record redelivered while its
    /// first delivery is still in flight shares the entry: the offset moves on once either is
    /// done, and the other is processed regardless (the handlers are idempotent).
    pub(crate) fn start(&mut self, partition: i32, offset: i64) {
        let p = self.partitions.entry(partition).or_default();
        // Reading starts here: storing this offset would change nothing.
        p.stored.get_or_insert(offset);
        p.in_flight.insert(offset);
        p.highest = Some(p.highest.map_or(offset, |h| h.max(offset)));
    }

    /// The record of `partition` at `offset` is done. Returns the offset to store now (the
    /// next one to read: one past every finished record with no unfinished one below it), or
    /// `None` when nothing new may be stored.
    pub(crate) fn done(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let p = self.partitions.get_mut(&partition)?;
        p.in_flight.remove(&offset);
        let next = match p.in_flight.first() {
            Some(oldest) => *oldest,
            None => p.highest? + 1,
        };
        if p.stored.is_some_and(|s| s >= next) {
            return None;
        }
        p.stored = Some(next);
        Some(next)
    }

    /// Records still being processed.
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.in_flight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_is_stored_only_once_every_record_below_it_is_done() {
        let mut o = Offsets::default();
        for offset in 10..14 {
            o.start(0, offset);
        }
        // 11 and 13 finish first: 10 is still in flight, nothing may be stored.
        assert_eq!(o.done(0, 11), None);
        assert_eq!(o.done(0, 13), None);
        // 10 finishes: everything below 12 is done, so reading resumes at 12.
        assert_eq!(o.done(0, 10), Some(12));
        assert_eq!(o.done(0, 12), Some(14));
        assert_eq!(o.in_flight(), 0);
    }

    #[test]
    fn partitions_are_tracked_apart() {
        let mut o = Offsets::default();
        o.start(0, 5);
        o.start(1, 7);
        assert_eq!(o.done(1, 7), Some(8));
        assert_eq!(o.in_flight(), 1);
        assert_eq!(o.done(0, 5), Some(6));
    }

    #[test]
    fn a_finished_record_never_moves_the_stored_offset_back() {
        let mut o = Offsets::default();
        o.start(0, 1);
        assert_eq!(o.done(0, 1), Some(2));
        // A redelivered older record (after a rebalance) finishing late stores nothing.
        o.start(0, 0);
        assert_eq!(o.done(0, 0), None);
    }
}
