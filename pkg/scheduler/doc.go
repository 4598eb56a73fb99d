// Package scheduler publishes ticks for Levqor's periodic jobs. Workers do
// the work; the scheduler only says "slot S of job J has come".
//
// The jobs are one table in code (Catalog), each a cron spec read in a named
// time zone, overridable per deployment (Override, from LEVQOR_SCHEDULE).
//
// Every tick's Nats-Msg-Id is "<job>@<slot time in UTC>", so any number of
// scheduler replicas can run at once: JetStream stores each slot once and
// drops the rest as duplicates. New refuses a job whose slots lie further
// apart than the TICKS stream's dedupe window, which would break that
// promise.
//
// After downtime (of the scheduler or of NATS) the slots missed within the
// catch-up window are published oldest first, each with its own slot time;
// older ones are counted and skipped rather than flooding the workers.
// Handlers act on the slot in the payload (Tick.Slot), never on the time
// they happen to run.
//
// Slots follow cron's conventions across daylight-saving changes: a job at
// a fixed wall-clock time runs once on the day the clocks go back and, when
// its time falls in the hour the clocks skip, at the moment they jump; jobs
// with a wildcard second, minute or hour field follow real time.
package scheduler
