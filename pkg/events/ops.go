package events

import "time"

// The housekeeping watch's events: operator alerts about the pipeline.
const (
	// NameDLQGrowing: a consumer's dead letters grew, or one account's
	// piled up.
	NameDLQGrowing Name = "ops.dlq_growing"
	// NameConsumerStuck: a consumer has unacknowledged messages and at
	// least the threshold of them redelivered.
	NameConsumerStuck Name = "ops.consumer_stuck"
)

// DLQGrowing is the payload of ops.dlq_growing. The watch raises it per
// consumer whose DLQ grew (no AccountID) and per (account, consumer) whose
// dead letters of the account reached the threshold since the previous
// watch (AccountID and DeadLettered set, and the Levqor-Account header).
type DLQGrowing struct {
	Consumer string `json:"consumer"`
	Stream   string `json:"stream,omitempty"`
	// DLQMessages is the count now, Previous the count at PreviousSlot (0
	// and nil when the consumer was not seen before).
	DLQMessages  uint64     `json:"dlq_messages"`
	Previous     uint64     `json:"previous_dlq_messages"`
	PreviousSlot *time.Time `json:"previous_slot,omitempty"`
	// Slot is the watch's slot.
	Slot time.Time `json:"slot"`
	// AccountID is the account whose messages were dead-lettered; empty
	// on the per-consumer event.
	AccountID string `json:"account_id,omitempty"`
	// DeadLettered is how many of the account's messages the consumer
	// dead-lettered after PreviousSlot (or in the hour before Slot when
	// the watch has no previous slot), up to Slot.
	DeadLettered int `json:"dead_lettered,omitempty"`
}

// EventName is NameDLQGrowing.
func (DLQGrowing) EventName() Name { return NameDLQGrowing }

// EventAccount is the account whose messages piled up; "" on the
// per-consumer event.
func (e DLQGrowing) EventAccount() string { return e.AccountID }

// ConsumerStuck is the payload of ops.consumer_stuck.
type ConsumerStuck struct {
	Consumer      string     `json:"consumer"`
	Stream        string     `json:"stream"`
	Pending       uint64     `json:"pending_messages"`
	AckPending    int        `json:"ack_pending_messages"`
	Redelivered   int        `json:"redelivered_messages"`
	OldestUnacked *time.Time `json:"oldest_unacked_stored_at,omitempty"`
	DLQMessages   uint64     `json:"dlq_messages"`
	// Threshold is the redelivered count at which a consumer is stuck.
	Threshold int `json:"threshold"`
	// Slot is the watch's slot.
	Slot time.Time `json:"slot"`
}

// EventName is NameConsumerStuck.
func (ConsumerStuck) EventName() Name { return NameConsumerStuck }

// EventAccount is "": a stuck consumer is the platform's problem.
func (ConsumerStuck) EventAccount() string { return "" }
