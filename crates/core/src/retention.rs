//! Retention planning (PROTOCOL.md §5 `RETENTION_DAYS`): which messages a run of
//! the daily job deletes, apart from the SQL that finds and deletes them. A run has
//! a budget of rows; each address with due messages gives its due prefix (every seq
//! up to the last message received before the cutoff), cut short where the budget
//! ends (the next run goes on from there). An address emptied entirely keeps its
//! last seq elsewhere first, so a seq never goes back.

/// The plan of one run over a walk of addresses, built address by address.
#[derive(Debug)]
pub struct Plan {
    budget: u64,
    planned: u64,
    per_statement: u64,
    /// True once an address's due messages did not all fit the budget.
    pub cut_short: bool,
}

/// One address's deletes.
#[derive(Debug, PartialEq, Eq)]
pub struct Due {
    /// Delete every seq up to this one.
    pub upto: u64,
    /// Every message of the address goes: keep its last seq before deleting.
    pub empties: bool,
}

impl Plan {
    /// A plan with `budget` rows left in this run (`deleted` already spent), at
    /// most `per_statement` rows per address and statement.
    pub fn new(budget: u64, deleted: u64, per_statement: u64) -> Plan {
        Plan { budget, planned: deleted, per_statement, cut_short: false }
    }

    /// Whether the budget can take any more; if not, the run is cut short here.
    pub fn has_room(&mut self) -> bool {
        let room = self.budget.saturating_sub(self.planned) > 0;
        self.cut_short |= !room;
        room
    }

    /// The deletes of an address whose messages run from `first_seq` to
    /// `last_seq` and whose due ones end at `cut` (the last seq received before the
    /// cutoff; `cut < first_seq`: none is due).
    pub fn take(&mut self, first_seq: u64, cut: u64, last_seq: u64) -> Option<Due> {
        if cut < first_seq {
            return None;
        }
        let room = self.budget.saturating_sub(self.planned).min(self.per_statement);
        if room == 0 {
            self.cut_short = true;
            return None;
        }
        let upto = cut.min(first_seq + room - 1);
        self.planned += upto + 1 - first_seq;
        self.cut_short |= upto < cut;
        Some(Due { upto, empties: upto >= last_seq })
    }

    /// Rows planned in this run so far (with those deleted before the plan).
    pub fn planned(&self) -> u64 {
        self.planned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gives_its_due_prefix_and_an_emptied_one_says_so() {
        let mut plan = Plan::new(1_000, 0, 10_000);
        assert_eq!(plan.take(1, 40, 100), Some(Due { upto: 40, empties: false }));
        assert_eq!(plan.take(5, 9, 9), Some(Due { upto: 9, empties: true }), "every message is due");
        assert_eq!(plan.take(50, 49, 60), None, "nothing due");
        assert_eq!(plan.planned(), 45);
        assert!(!plan.cut_short);
    }

    #[test]
    fn the_budget_cuts_a_run_short_and_the_next_run_goes_on() {
        let mut plan = Plan::new(100, 70, 10_000);
        assert_eq!(plan.take(1, 500, 600), Some(Due { upto: 30, empties: false }), "30 rows left");
        assert!(plan.cut_short);
        assert!(!plan.has_room());
        assert_eq!(plan.take(1, 5, 5), None);
        // The next run starts where the last stopped.
        let mut next = Plan::new(100, 0, 10_000);
        assert_eq!(next.take(31, 500, 600), Some(Due { upto: 130, empties: false }));
    }

    #[test]
    fn one_statement_deletes_at_most_its_share() {
        let mut plan = Plan::new(1_000_000, 0, 10_000);
        assert_eq!(plan.take(1, 50_000, 50_000), Some(Due { upto: 10_000, empties: false }));
        assert!(plan.cut_short, "the rest waits for the next run");
    }
}
