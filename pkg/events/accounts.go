package events

import "time"

// The accounts worker's events.
const (
	// NameErasureDue: an account's requested erasure is carried out
	// within a day; its owner may still cancel it.
	NameErasureDue Name = "accounts.erasure_due"
)

// ErasureDue is the payload of accounts.erasure_due.
type ErasureDue struct {
	AccountID    string    `json:"account_id"`
	ErasureID    string    `json:"erasure_id"`
	ScheduledFor time.Time `json:"scheduled_for"`
	Incident     string    `json:"incident"`
	At           time.Time `json:"at"`
}

// EventName is NameErasureDue.
func (ErasureDue) EventName() Name { return NameErasureDue }

// EventAccount is the account to be erased.
func (e ErasureDue) EventAccount() string { return e.AccountID }
