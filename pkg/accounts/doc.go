// Package accounts is the accounts worker: it carries out the account
// commands of the product API (levqor.cmd.accounts.>), creating each
// account together with its Stripe customer, and keeping the two in step
// when a customer changes its name or contact email.
//
// Every Stripe call carries an idempotency key derived from the command id,
// and the account id is derived from it too, so a command delivered twice,
// or retried after a crash between Stripe's answer and the commit, makes
// one customer and one account.
package accounts
