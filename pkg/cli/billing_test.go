package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/cli"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripeapi"
	"github.com/levqor/levqor/pkg/stripemock"
)

// TestBillingReconcile runs `levqor billing reconcile` against stripe-mock
// on a database that drifted from it: Levqor thinks the subscription
// stripe-mock lists is canceled, and holds one stripe-mock does not have.
func TestBillingReconcile(t *testing.T) {
	t.Parallel()
	base := stripemock.Start(t)
	log := logrus.New()
	log.Out = io.Discard
	it := stripeapi.New(stripeapi.Config{Key: stripemock.TestKey, BaseURL: base, Log: log}).Subscriptions.List(&stripe.SubscriptionListParams{Status: stripe.String("all")})
	require.True(t, it.Next(), "stripe-mock lists a subscription")
	fixture := it.Subscription()

	for _, db := range []string{"SQLite", "Postgres"} {
		t.Run(db, func(t *testing.T) {
			dbURL := "sqlite:" + filepath.Join(t.TempDir(), "levqor.db")
			if db == "Postgres" {
				dbURL = storetest.PostgresURL(t)
			}
			ctx := context.Background()
			st, err := store.Open(ctx, dbURL, log)
			require.NoError(t, err)
			t.Cleanup(func() { st.Close() })
			require.NoError(t, st.Migrate(ctx))
			require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
				if _, err := tx.InsertAccount(ctx, store.Account{ID: "acc_rec", Name: "Rec", ContactEmail: "rec@example.com", StripeCustomerID: fixture.Customer.ID}); err != nil {
					return err
				}
				then := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
				if err := tx.PutSubscription(ctx, store.Subscription{ID: fixture.ID, AccountID: "acc_rec", CustomerID: fixture.Customer.ID, Status: "canceled", Source: store.SourceEvent{ID: "evt_old", Created: then}}); err != nil {
					return err
				}
				return tx.PutSubscription(ctx, store.Subscription{ID: "sub_ghost", AccountID: "acc_rec", CustomerID: fixture.Customer.ID, Status: "active", Source: store.SourceEvent{ID: "evt_old2", Created: then}})
			}))
			vars := map[string]string{"LEVQOR_DATABASE_URL": dbURL, "STRIPE_API_BASE": base, "USER": "ana"}

			var out, errOut bytes.Buffer
			require.NoError(t, cli.RunWith(ctx, []string{"billing", "reconcile", "--dry-run"}, &out, &errOut, cli.Options{Getenv: getenv(vars)}), errOut.String())
			dry := strings.Split(strings.TrimSpace(out.String()), "\n")
			require.Regexp(t, `^dry run: listed \d+ subscription\(s\) from Stripe; 2 repair\(s\) would be made, none was$`, dry[0])
			require.Regexp(t, `^changed\s+`+fixture.ID, dry[2], "the dry run prints the repairs")
			held, err := st.AccountSubscriptions(ctx, "acc_rec")
			require.NoError(t, err)
			for _, s := range held {
				if s.ID == fixture.ID {
					require.Equal(t, "canceled", s.Status, "the dry run changed nothing")
				}
			}

			out.Reset()
			require.NoError(t, cli.RunWith(ctx, []string{"billing", "reconcile"}, &out, &errOut, cli.Options{Getenv: getenv(vars)}), errOut.String())
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			require.Regexp(t, `^listed \d+ subscription\(s\) from Stripe; 2 repair\(s\)$`, lines[0])
			require.Len(t, lines, 4, out.String())
			require.Regexp(t, `^changed\s+`+fixture.ID+`\s+acc_rec\s+\{"Status":"canceled"`, lines[2])
			require.Regexp(t, `^vanished\s+sub_ghost\s+acc_rec\s+`, lines[3])

			sub, err := st.AccountSubscriptions(ctx, "acc_rec")
			require.NoError(t, err)
			status := map[string]string{}
			for _, s := range sub {
				status[s.ID] = s.Status
			}
			require.Equal(t, string(fixture.Status), status[fixture.ID], "Stripe's state wins")
			require.Equal(t, "canceled", status["sub_ghost"])

			out.Reset()
			require.NoError(t, cli.RunWith(ctx, []string{"billing", "reconcile", "--json"}, &out, &errOut, cli.Options{Getenv: getenv(vars)}))
			var rep billing.ReconcileReport
			require.NoError(t, json.Unmarshal(out.Bytes(), &rep), out.String())
			require.GreaterOrEqual(t, rep.Listed, 1)
			require.NotNil(t, rep.Repairs)
			require.Empty(t, rep.Repairs, "nothing left to repair")

			trail, err := st.ListAudit(ctx, store.ListAuditParams{Action: ops.ActionBillingReconcile, Limit: 10})
			require.NoError(t, err)
			require.Len(t, trail, 3, "every run, the dry one too, is in the audit trail")
			require.Equal(t, store.AuditOutcomeDryRun, trail[2].Outcome)
			require.Equal(t, store.AuditOutcomeOK, trail[1].Outcome)
			require.Equal(t, "ana", trail[1].Actor)
			require.JSONEq(t, `{"listed":`+strconv.Itoa(rep.Listed)+`,"repairs":2}`, string(trail[1].Counts))
		})
	}
}

func TestBillingReconcileNeedsStripeAndADatabase(t *testing.T) {
	t.Parallel()
	run := func(vars map[string]string, args ...string) error {
		return cli.RunWith(context.Background(), append([]string{"billing"}, args...), &bytes.Buffer{}, &bytes.Buffer{}, cli.Options{Getenv: getenv(vars)})
	}
	err := run(map[string]string{"LEVQOR_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "x.db")}, "reconcile")
	require.ErrorContains(t, err, "STRIPE_API_KEY")
	err = run(map[string]string{"LEVQOR_DATA_DIR": t.TempDir(), "STRIPE_API_BASE": "http://127.0.0.1:12111"}, "reconcile")
	require.ErrorContains(t, err, "no database")
	require.ErrorIs(t, run(nil, "refund"), cli.ErrUsage)
	require.ErrorIs(t, run(nil), cli.ErrUsage)
	require.ErrorIs(t, run(nil, "reconcile", "extra"), cli.ErrUsage)
}
