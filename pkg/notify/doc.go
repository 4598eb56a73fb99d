// Package notify tells people what happened: the notify worker reads every
// event on EVENTS (levqor.event.>), finds who should hear about it in the
// rules (Rules, LEVQOR_NOTIFY_RULES, shipped defaults in
// rules.default.yaml), renders one email per recipient from the event's
// template (text and HTML, with the account's name and a link to the
// console at LEVQOR_PUBLIC_URL), and records it in the notifications table
// in the event's own inbox transaction: one notification per (incident,
// channel, recipient), however often the incident is reported.
//
// Sending is a job like any other. Each new notification puts a delivery
// message on levqor.cmd.notify.deliver through the outbox (a webhook's on
// levqor.cmd.notify.webhook, consumer notify-webhook, so that slow
// receivers hold none of email's slots); the notify-deliver consumer hands
// it to the mailer (SMTP, or a directory of .eml files in dev mode) and
// marks it sent. A burst of one event to one recipient is told once, then
// in one digest (see burst). A failed attempt is retried on
// a growing schedule (RetrySchedule), then dead-lettered, and an operator
// replays it with `levqor dlq replay` once the mail server is back. A
// delivery that finds its notification already sent only acknowledges, so
// a message redelivered after a crash between the send and the mark is
// the one case a recipient can get an email twice.
package notify
