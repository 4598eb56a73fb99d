// Package billing is the billing worker: it turns Stripe's events into the
// truth about what each account has paid for, and tells the other domains
// when that changes.
//
// Its first duty is the event ledger: every Stripe event Levqor receives is
// recorded exactly once, as Stripe sent it (billing-stripe). From the
// events it keeps subscriptions, invoices, charges, Done-For-You purchases
// and dunning, each object remembering the event it was last taken from so
// that older events change nothing; it derives each account's tier, status
// and entitlements with the catalog (package catalog) and announces changes
// through the outbox as levqor.event.billing.*.
//
// Stripe events arrive in batches (StripeHandler), applied in one
// transaction with set-based statements: the batch's inbox claims, ledger
// rows and changed rows are written one statement a table, and each event
// runs, in stream order, against the rows the batch loaded up front
// (batchState). A lone message (a window replay) is applied a statement
// at a time (HandleStripe); both paths share the handler code and write
// the same rows, which TestSetBasedBatchesWriteWhatOneAtATimeWrites holds
// them to.
//
// Ticks (billing-tick) suspend accounts whose payment grace period ended
// (billing.dunning) and repair drift against the Stripe API
// (billing.reconcile). Commands of the product API (billing-cmd) create
// Stripe Checkout and billing portal sessions, each with an idempotency key
// derived from the command id, so that a retried command never creates two
// sessions; billing-dlq marks dead-lettered commands failed.
package billing
