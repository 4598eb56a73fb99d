package billing_test

import (
	"testing"

	"github.com/levqor/levqor/pkg/billing"
)

// BenchmarkParseEvent is the decoding of one realistic Stripe event, as
// the load generator sends them, into what billing reads of it: the
// envelope scan and its ledger row, then the object.
func BenchmarkParseEvent(b *testing.B) {
	msgs := loadEvents(b, 900, 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := billing.ParseEvent(msgs[i%len(msgs)]); err != nil {
			b.Fatal(err)
		}
	}
}
