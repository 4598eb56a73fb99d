package billing

import (
	"bytes"

	"github.com/levqor/levqor/pkg/bus"
)

var customerField = []byte(`"customer"`)

// StripeEventKey is the batch key of a Stripe event (bus.BatchOptions.Key):
// the Stripe customer its object belongs to, read from the first
// "customer" field of the payload without decoding it. Events of one
// customer change the same rows (its subscriptions, invoices, dunning and
// account), so keeping them out of concurrent batches keeps those batches
// from waiting on each other's row locks. An event without a customer
// field (a customer or dispute event) is keyed by its own id. The key only
// steers work: a wrong one costs a lock wait, never correctness.
func StripeEventKey(m *bus.Message) string {
	if c := customerOf(m.Data); c != "" {
		return c
	}
	return m.ID()
}

// customerOf returns the value of the first "customer" field of a JSON
// document: a string, or the id of an expanded object; "" if there is none.
func customerOf(data []byte) string {
	i := bytes.Index(data, customerField)
	if i < 0 {
		return ""
	}
	rest := skipSpace(data[i+len(customerField):])
	if len(rest) == 0 || rest[0] != ':' {
		return ""
	}
	rest = skipSpace(rest[1:])
	if len(rest) > 0 && rest[0] == '{' {
		j := bytes.Index(rest, []byte(`"id"`))
		if j < 0 {
			return ""
		}
		rest = skipSpace(rest[j+4:])
		if len(rest) == 0 || rest[0] != ':' {
			return ""
		}
		rest = skipSpace(rest[1:])
	}
	if len(rest) == 0 || rest[0] != '"' {
		return ""
	}
	end := bytes.IndexByte(rest[1:], '"')
	if end < 0 {
		return ""
	}
	return string(rest[1 : 1+end])
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}
