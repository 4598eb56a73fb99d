// Package retention decides which backup snapshots a retention policy
// keeps, and why. It is pure: no I/O, no logging, no clock (the caller
// passes the current time when it wants restic's guard against snapshots
// from the future).
//
// The semantics are those of current restic's `forget`
// (internal/restic/snapshot_policy.go), the most widely used reference:
//
//   - Snapshots are ordered newest first and walked once.
//   - keep_last n keeps the n newest snapshots.
//   - keep_hourly/daily/weekly/monthly/yearly n keep the newest snapshot of
//     each period that has one, newest period first, until n periods are
//     used; -1 means every period. Periods are read in each snapshot's own
//     UTC offset; weeks are ISO weeks (Monday to Sunday, the ISO year).
//   - A counting rule that still has count left when the walk reaches the
//     oldest snapshot keeps that one too ("oldest daily snapshot"), so the
//     longest history the policy allows is kept while it is young.
//   - keep_within d keeps every snapshot strictly after the newest
//     snapshot's time minus d, where d is years, months, days and hours
//     subtracted with AddDate (restic's calendar arithmetic).
//   - keep_within_hourly … _yearly d keep the newest snapshot of every
//     period inside that same window, and the oldest snapshot when it is
//     inside the window.
//   - keep_tags [[a b] [c]] keeps every snapshot tagged with both a and b,
//     or with c; [""] matches snapshots without tags.
//   - Rules are OR-ed; a kept snapshot lists every rule that keeps it, in
//     a fixed order: tag sets, keep_within, last, hourly, daily, weekly,
//     monthly, yearly, then the within-period rules. The reason strings
//     are restic's: "last snapshot", "daily snapshot", "oldest daily
//     snapshot", "within 30d", "daily within 2m", "has tags [a, b]".
//
// Where Levqor differs from restic, on purpose:
//
//   - Ties: restic orders snapshots taken at the same instant by their
//     order in the repository listing. Here they are ordered by id, and
//     the smaller id (byte order) counts as the newer, so a plan does not
//     depend on input order.
//   - An empty policy: restic refuses to run one. Here it keeps every
//     snapshot, each with the reason "no policy": an empty policy deletes
//     nothing.
//   - Calendar arithmetic: restic subtracts keep_within durations in the
//     time zone of the machine running it (a snapshot's time is loaded in
//     the local zone when its offset matches), so "1d" across a DST change
//     can move an hour with the machine. Here it is done in the newest
//     snapshot's own UTC offset, the same on every machine.
//   - The future: restic always measures the windows from the newest
//     snapshot that is not in the future by the machine's clock. Here that
//     guard applies when Options.Now is set (the CLI sets it to the
//     current time); with a zero Now the newest snapshot is used.
//   - Validation is stricter: negative counts other than -1, negative or
//     malformed durations (restic accepts "-1d" and repeated units), empty
//     tag sets, an empty tag mixed with others, empty snapshot tags,
//     duplicate snapshot ids, and unknown JSON keys are errors naming the
//     field (a *FieldError).
//   - Counts are numbers (-1 for unlimited), not restic's "unlimited"
//     string.
//   - No grouping: restic first groups snapshots by host and paths; a plan
//     here covers the list it is given, and the caller groups (by backup
//     source).
package retention
