package events_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/retention"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// shape is an event's JSON contract: the keys every payload has, and the
// keys only some payloads have (left out when empty).
type shape struct {
	ev       events.Event
	always   []string
	optional []string
}

// billingKeys are on every billing event; stripe_event_id only when a
// Stripe event caused the change (not on dunning or reconciliation).
var billingKeys = []string{"account_id", "at"}

// shapes pins the payload of every event to the keys its producers wrote
// when they built the payloads by hand; consumers in and outside this
// repository read these keys. Changing one is changing the wire format.
var shapes = map[events.Name]shape{
	"billing.entitlements_changed": {events.EntitlementsChanged{},
		append([]string{"tier", "entitlements", "previous_tier", "previous_entitlements"}, billingKeys...),
		[]string{"stripe_event_id", "reconciled"}},
	"billing.account_status_changed": {events.AccountStatusChanged{},
		append([]string{"status", "previous_status", "tier"}, billingKeys...),
		[]string{"stripe_event_id", "reason", "reconciled"}},
	"billing.payment_failed": {events.PaymentFailed{},
		append([]string{"invoice_id", "amount_due", "currency", "attempt_count", "tier"}, billingKeys...),
		[]string{"stripe_event_id", "grace_until"}},
	"billing.payment_action_required": {events.PaymentActionRequired{},
		append([]string{"invoice_id", "amount_due", "currency", "attempt_count", "tier"}, billingKeys...),
		[]string{"stripe_event_id"}},
	"billing.payment_recovered": {events.PaymentRecovered{},
		append([]string{"invoice_id", "amount_due", "currency", "attempt_count", "tier", "previous_state"}, billingKeys...),
		[]string{"stripe_event_id"}},
	"billing.account_suspended": {events.AccountSuspended{},
		append([]string{"invoice_id", "past_due_since", "grace_until", "tier"}, billingKeys...),
		[]string{"stripe_event_id"}},
	"billing.trial_will_end": {events.TrialWillEnd{},
		append([]string{"subscription_id", "trial_end"}, billingKeys...),
		[]string{"stripe_event_id"}},
	"billing.trial_reminder": {events.TrialReminder{},
		append([]string{"subscription_id", "trial_end", "days_left", "incident"}, billingKeys...),
		[]string{"stripe_event_id", "tier"}},
	"billing.dfy_purchased": {events.DFYPurchased{},
		append([]string{"package", "quantity", "checkout_session_id"}, billingKeys...),
		[]string{"stripe_event_id"}},
	"billing.charge_refunded": {events.ChargeRefunded{},
		append([]string{"charge_id", "amount", "amount_refunded", "currency"}, billingKeys...),
		[]string{"stripe_event_id"}},
	"billing.dispute_opened": {events.DisputeOpened{},
		append([]string{"dispute_id", "charge_id", "amount", "reason"}, billingKeys...),
		[]string{"stripe_event_id"}},
	"billing.unknown_price": {events.UnknownPrice{},
		append([]string{"subscription_id", "prices"}, billingKeys...),
		[]string{"stripe_event_id"}},
	"billing.customer_mismatch": {events.CustomerMismatch{},
		append([]string{"checkout_session_id", "account_customer_id", "session_customer_id", "incident", "reason"}, billingKeys...),
		[]string{"stripe_event_id"}},

	"backup.quota_warn": {events.BackupQuotaWarn{},
		[]string{"account_id", "source_id", "run_id", "level", "incident", "quota_bytes", "used_bytes", "tier", "reason", "at"}, nil},
	"backup.quota_exceeded": {events.BackupQuotaExceeded{},
		[]string{"account_id", "source_id", "run_id", "incident", "reason", "quota_bytes", "used_bytes", "tier", "at"}, nil},
	"backup.corrupt": {events.BackupCorrupt{},
		[]string{"account_id", "source_id", "snapshot_id", "incident", "reason", "taken_at", "blob_key", "sha256", "size_bytes", "at"}, nil},
	"backup.overdue": {events.BackupOverdue{},
		[]string{"account_id", "source_id", "source_name", "incident", "last_good_at", "last_good_snapshot_id", "schedule",
			"time_zone", "expected_every_seconds", "grace_seconds", "reason", "at"}, nil},
	"backup.run_failed": {events.BackupRunFailed{},
		[]string{"account_id", "source_id", "run_id", "command_id", "trigger", "attempts", "incident", "reason", "at"}, nil},
	"backup.drill_failed": {events.DrillFailed{},
		[]string{"account_id", "source_id", "snapshot_id", "drill_id", "incident", "reason", "at"}, nil},
	"backup.sweep_blocked": {events.SweepBlocked{},
		[]string{"account_id", "source_id", "source_name", "would_trash", "active", "max_share", "policy", "policy_origin",
			"tier", "message", "at", "actor"}, nil},

	"support.ticket_opened": {events.TicketOpened{},
		append([]string{"first_response_due", "resolution_due", "fired_rules"}, ticketKeys...),
		[]string{"incident_key"}},
	"support.ticket_updated": {events.TicketUpdated{},
		append([]string{"previous_status", "first_response_due", "resolution_due"}, ticketKeys...), nil},
	"support.ticket_reopened": {events.TicketReopened{},
		append([]string{"previous_status", "first_response_due", "resolution_due"}, ticketKeys...),
		[]string{"incident_key"}},
	"support.ticket_autoclosed": {events.TicketAutoClosed{},
		append([]string{"resolved_at", "incident", "reason"}, ticketKeys...), nil},
	"support.message_added": {events.MessageAdded{},
		append([]string{"message_id", "author", "first_response"}, ticketKeys...), nil},
	"support.sla_at_risk": {events.SLAAtRisk{},
		append([]string{"escalation_key", "clock", "due", "severity_before", "queue_before"}, ticketKeys...), nil},
	"support.sla_breached": {events.SLABreached{},
		append([]string{"escalation_key", "clock", "due", "severity_before", "queue_before"}, ticketKeys...), nil},
	"support.dfy_stalled": {events.DFYStalled{},
		append([]string{"package", "stalled_since", "incident", "reason"}, ticketKeys...), nil},

	"ops.dlq_growing": {events.DLQGrowing{},
		[]string{"consumer", "dlq_messages", "previous_dlq_messages", "slot"},
		[]string{"stream", "previous_slot", "account_id", "dead_lettered"}},
	"ops.consumer_stuck": {events.ConsumerStuck{},
		[]string{"consumer", "stream", "pending_messages", "ack_pending_messages", "redelivered_messages", "dlq_messages",
			"threshold", "slot"},
		[]string{"oldest_unacked_stored_at"}},

	"accounts.erasure_due": {events.ErasureDue{},
		[]string{"account_id", "erasure_id", "scheduled_for", "incident", "at"}, nil},
	"webhook.endpoint_disabled": {events.WebhookEndpointDisabled{},
		[]string{"account_id", "endpoint_id", "url", "failing_since", "last_error", "incident", "reason", "at"}, nil},
}

// ticketKeys are on every support event.
var ticketKeys = []string{"account_id", "ticket_id", "subject", "status", "category", "severity", "queue", "origin", "at"}

// TestJSONShapes: an empty payload has exactly the keys every payload of
// its event has, a full one adds exactly the optional keys, and every
// event decodes back to itself.
func TestJSONShapes(t *testing.T) {
	t.Parallel()
	for name, s := range shapes {
		t.Run(strings.ReplaceAll(string(name), ".", "_"), func(t *testing.T) {
			t.Parallel()
			require.Equal(t, name, s.ev.EventName())
			require.Equal(t, name, events.Name(strings.SplitN(name.Subject(bus.Topology{Prefix: "levqor"}), ".", 3)[2]))

			require.ElementsMatch(t, s.always, keys(t, s.ev), "the keys of an empty payload")

			full := fill(t, s.ev)
			require.ElementsMatch(t, append(slices.Clone(s.always), s.optional...), keys(t, full), "the keys of a full payload")

			b, err := json.Marshal(full)
			require.NoError(t, err)
			back := reflect.New(reflect.TypeOf(full))
			require.NoError(t, json.Unmarshal(b, back.Interface()))
			require.Equal(t, full, back.Elem().Interface(), "decodes to what was encoded")
		})
	}
}

// TestEveryEventHasAShape: the names in shapes are the events the package
// declares (its Name constants), so a new event cannot skip the contract.
func TestEveryEventHasAShape(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	declared := map[events.Name]bool{}
	for _, f := range goFiles(t) {
		file, err := parser.ParseFile(fset, f, nil, 0)
		require.NoError(t, err)
		for _, d := range file.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if !strings.HasPrefix(id.Name, "Name") {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					require.True(t, ok, "%s is a string literal", id.Name)
					v, err := strconv.Unquote(lit.Value)
					require.NoError(t, err)
					declared[events.Name(v)] = true
				}
			}
		}
	}
	var want []events.Name
	for name := range shapes {
		want = append(want, name)
	}
	var got []events.Name
	for name := range declared {
		got = append(got, name)
	}
	require.ElementsMatch(t, want, got)
}

// TestImportsNoDomain: the package sits below the domains that share it.
func TestImportsNoDomain(t *testing.T) {
	t.Parallel()
	allowed := []string{"pkg/bus", "pkg/store", "pkg/catalog", "pkg/retention"}
	fset := token.NewFileSet()
	for _, f := range goFiles(t) {
		file, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		require.NoError(t, err)
		for _, imp := range file.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			rest, ok := strings.CutPrefix(path, "github.com/levqor/levqor/")
			if ok {
				require.Contains(t, allowed, rest, "%s imports %s", filepath.Base(f), path)
			}
		}
	}
}

func TestEmit(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	grace := at.Add(7 * 24 * time.Hour)
	tier := "business"
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		var failedID, stuckID int64
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			var err error
			failedID, err = events.Emit(ctx, tx, bus.Topology{Prefix: "levqor"}, events.PaymentFailed{
				Invoice: events.Invoice{
					Billing:   events.Billing{AccountID: "acc_1", StripeEventID: "evt_1", At: at},
					InvoiceID: "in_1", AmountDue: 129900, Currency: "gbp", AttemptCount: 1, Tier: &tier,
				},
				GraceUntil: &grace,
			}, "corr-1")
			if err != nil {
				return err
			}
			stuckID, err = events.Emit(ctx, tx, bus.Topology{Prefix: "staging"}, events.ConsumerStuck{
				Consumer: "billing-cmd", Stream: "LEVQOR_COMMANDS", AckPending: 4, Redelivered: 3, Threshold: 3, Slot: at,
			}, "")
			return err
		}))
		rows, err := st.UnpublishedOutbox(ctx, 10)
		require.NoError(t, err)
		require.Len(t, rows, 2)

		failed := rows[0]
		require.Equal(t, failedID, failed.ID)
		require.Equal(t, "levqor.event.billing.payment_failed", failed.Subject)
		require.Equal(t, map[string]string{"Levqor-Account": "acc_1", "Levqor-Correlation-Id": "corr-1"}, failed.Headers)
		require.JSONEq(t, `{"account_id":"acc_1","stripe_event_id":"evt_1","at":"2026-03-02T10:00:00Z","invoice_id":"in_1",
			"amount_due":129900,"currency":"gbp","attempt_count":1,"tier":"business","grace_until":"2026-03-09T10:00:00Z"}`,
			string(failed.Payload))

		stuck := rows[1]
		require.Equal(t, stuckID, stuck.ID)
		require.Equal(t, "staging.event.ops.consumer_stuck", stuck.Subject, "the topology's prefix")
		require.Empty(t, stuck.Headers, "no account and no correlation id: no headers")
		require.JSONEq(t, `{"consumer":"billing-cmd","stream":"LEVQOR_COMMANDS","pending_messages":0,"ack_pending_messages":4,
			"redelivered_messages":3,"dlq_messages":0,"threshold":3,"slot":"2026-03-02T10:00:00Z"}`, string(stuck.Payload))
	})
}

func TestDecode(t *testing.T) {
	t.Parallel()
	m := &bus.Message{Data: []byte(`{"account_id":"acc_1","status":"suspended","previous_status":"past_due","tier":null,"at":"2026-03-02T10:00:00Z"}`)}
	ev, err := events.Decode[events.AccountStatusChanged](m)
	require.NoError(t, err)
	require.Equal(t, events.AccountStatusChanged{
		Billing: events.Billing{AccountID: "acc_1", At: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)},
		Status:  store.AccountStatusSuspended, PreviousStatus: store.AccountStatusPastDue,
	}, ev)

	for name, data := range map[string]string{"NotJSON": `{`, "NotAnObject": `[1]`, "WrongType": `{"status":5}`} {
		_, err := events.Decode[events.AccountStatusChanged](&bus.Message{Data: []byte(data)})
		require.Error(t, err, name)
		require.True(t, bus.IsPermanent(err), "%s: a payload no retry can fix is permanent: %v", name, err)
		require.Contains(t, err.Error(), "decoding billing.account_status_changed", name)
	}
}

// keys returns the top-level keys of v's JSON.
func keys(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &m))
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// fill returns a copy of ev with every field set to a value that is not
// empty, so that no omitempty key is left out.
func fill(t *testing.T, ev events.Event) any {
	t.Helper()
	v := reflect.New(reflect.TypeOf(ev)).Elem()
	fillValue(t, v)
	return v.Interface()
}

var (
	timeType     = reflect.TypeFor[time.Time]()
	rawType      = reflect.TypeFor[json.RawMessage]()
	policyType   = reflect.TypeFor[retention.Policy]()
	filledAt     = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	filledPolicy = retention.Policy{KeepLast: 3, KeepDaily: 7}
)

func fillValue(t *testing.T, v reflect.Value) {
	switch v.Type() {
	case timeType:
		v.Set(reflect.ValueOf(filledAt))
		return
	case rawType:
		v.Set(reflect.ValueOf(json.RawMessage(`{"storage_gb":100}`)))
		return
	case policyType:
		v.Set(reflect.ValueOf(filledPolicy))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fillValue(t, v.Field(i))
		}
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fillValue(t, p.Elem())
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fillValue(t, s.Index(0))
		v.Set(s)
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(2)
	case reflect.Uint64:
		v.SetUint(2)
	case reflect.Float64:
		v.SetFloat(0.5)
	default:
		t.Fatalf("fill: no value for %s", v.Type())
	}
}

// goFiles lists the package's non-test Go files.
func goFiles(t *testing.T) []string {
	t.Helper()
	all, err := filepath.Glob("*.go")
	require.NoError(t, err)
	var out []string
	for _, f := range all {
		if !strings.HasSuffix(f, "_test.go") {
			out = append(out, f)
		}
	}
	require.NotEmpty(t, out)
	return out
}
