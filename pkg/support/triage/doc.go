// Package triage decides what a new support ticket is (its category and
// severity) and where it goes (its queue), with rules an operator can
// read and change, and it owns the support rules file those rules live in
// together with the SLA targets (package sla).
//
// It is pure: no I/O except Load reading the file, no logging, no clock.
//
// The default Classifier is rule-based and transparent on purpose: every
// Decision lists the ids of the rules that fired and of the routing rule
// that chose the queue, so an agent or an auditor can see why a ticket was
// triaged the way it was, and an operator can change the outcome by
// editing a rule rather than retraining anything. A smarter classifier can
// replace it behind the Classifier interface; it should explain itself the
// same way.
//
// Matching: a phrase matches whole words, case-insensitively, with
// punctuation read as a space (so "can't" matches "can’t" and "CAN'T"); a
// word ending in * matches every word it begins. A rule fires when the
// subject or the body contains one phrase of any and every phrase of all,
// not counting occurrences that overlap one of its unless phrases ("not
// urgent" cancels "urgent" but not a second, plain "urgent"). A phrase
// never spans the subject and the body.
//
// Deciding:
//
//   - Category: each fired rule adds its weight to its category; the
//     highest score wins, ties going to the category listed first; no
//     votes means the default category.
//   - Severity: the highest severity any fired rule proposes; none means
//     the default severity. A "no rush" never lowers data loss.
//   - The customer's own choice of category and severity stands. Only
//     rules marked override_customer (the shipped ones: data loss,
//     ransomware, retention deleting data) may change the category or
//     raise the severity; nothing lowers a severity the customer chose.
//   - Queue: the first routing rule whose conditions (tier, SLA class,
//     severity, category, DFY) all hold; none means the default queue, so
//     a ticket from an unknown tier is never dropped.
//
// docs/support.md describes the file format and the shipped defaults.
package triage
