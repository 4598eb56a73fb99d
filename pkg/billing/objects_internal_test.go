package billing

import (
	stdjson "encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/stripesim"
)

// TestParseEventDecodesAsEncodingJSON checks the decoder billing uses for
// speed against the standard library's, on every event type billing
// handles, with expanded and plain references.
func TestParseEventDecodesAsEncodingJSON(t *testing.T) {
	t.Parallel()
	types := []string{"customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
		"customer.subscription.trial_will_end", "invoice.paid", "invoice.payment_failed", "checkout.session.completed",
		"charge.refunded", "charge.dispute.created", "customer.updated", "customer.deleted"}
	extra := []string{`{}`, `{"customer":{"id":"cus_expanded","object":"customer","metadata":{"k":"v"}}}`,
		`{"metadata":{"levqor_products":"dfy_onboarding:2","levqor_account":"acc_\u00e9"},"charge":{"id":"ch_x","customer":"cus_y"}}`}
	for i, typ := range types {
		for j, data := range extra {
			b, err := stripesim.NewEvent(typ, stripesim.EventOptions{ID: fmt.Sprintf("evt_%d_%d", i, j), Created: time.Unix(1700000000, 0),
				Customer: "cus_p", Subscription: "sub_p", AccountRef: "acc_p", Price: "price_levqor_growth_monthly", Data: []byte(data)})
			require.NoError(t, err)
			m := &bus.Message{Data: b, Header: nats.Header{bus.HeaderMsgID: {fmt.Sprintf("evt_%d_%d", i, j)}}}
			p, err := parseEvent(m)
			require.NoError(t, err, typ)

			var body struct {
				Data struct {
					Object stdjson.RawMessage `json:"object"`
				} `json:"data"`
			}
			require.NoError(t, stdjson.Unmarshal(b, &body))
			var got, want any
			switch {
			case p.sub != nil:
				got, want = p.sub, &subscriptionObject{}
			case p.inv != nil:
				got, want = p.inv, &invoiceObject{}
			case p.cs != nil:
				got, want = p.cs, &checkoutObject{}
			case p.ch != nil:
				got, want = p.ch, &chargeObject{}
			case p.dp != nil:
				got, want = p.dp, &disputeObject{}
			case p.cus != nil:
				got, want = p.cus, &customerObject{}
			default:
				t.Fatalf("%s decoded into nothing", typ)
			}
			require.NoError(t, stdjson.Unmarshal(body.Data.Object, want), typ)
			require.Equal(t, want, got, "%s with %s", typ, data)
		}
	}
}
