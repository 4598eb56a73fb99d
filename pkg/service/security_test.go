package service_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripesim"
)

// TestTheBusIsNotTrusted (issue: trust nothing on the wire): a client
// that can publish on NATS, in dev mode's wiring, can neither run a
// command the API never recorded nor make billing believe a Stripe event
// ingest never verified. Both are dead-lettered with the reason, and
// change nothing; what ingest and the API put on the bus still works.
func TestTheBusIsNotTrusted(t *testing.T) {
	t.Parallel()
	d, err := runDev(t, devVars(t.TempDir()))
	require.NoError(t, err)
	c := devClient{info: d.info}
	_, err = nats.Connect(d.info.NATSURL)
	require.ErrorIs(t, err, nats.ErrAuthorization, "dev mode's NATS refuses a client without its credentials")
	nc, err := nats.Connect(d.info.NATSURL, nats.UserInfo(service.DevNATSUser, d.info.NATSPassword))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	deadLetter := func(t *testing.T, consumer, msgID string) *jetstream.RawStreamMsg {
		t.Helper()
		var got *jetstream.RawStreamMsg
		require.Eventually(t, func() bool {
			s, err := js.Stream(t.Context(), "DLQ")
			if err != nil {
				return false
			}
			m, err := s.GetLastMsgForSubject(t.Context(), "levqor.dlq."+consumer)
			if err != nil || m.Header.Get(bus.HeaderOriginalMsgID) != msgID {
				return false
			}
			got = m
			return true
		}, 20*time.Second, 20*time.Millisecond, "%s dead-lettered on %s", msgID, consumer)
		return got
	}

	status, body := c.do(t, http.MethodPost, "/v1/accounts?wait=15s", map[string]string{"name": "Ada Backups Ltd", "contact_email": "ops@ada.example"})
	require.Equal(t, http.StatusCreated, status, string(body))
	var created struct {
		Result struct {
			ID               string `json:"id"`
			StripeCustomerID string `json:"stripe_customer_id"`
		}
	}
	require.NoError(t, json.Unmarshal(body, &created))
	acc, cus := created.Result.ID, created.Result.StripeCustomerID

	t.Run("ACommandTheAPINeverRecorded", func(t *testing.T) {
		id, err := command.NewID(command.IDPrefix)
		require.NoError(t, err)
		env, err := json.Marshal(command.Envelope{ID: id, Domain: "accounts", Action: "create", KeyID: "dev-operator",
			Params: json.RawMessage(`{"name":"Mallory Ltd","contact_email":"m@mallory.example"}`), CreatedAt: time.Now().UTC()})
		require.NoError(t, err)
		_, err = js.PublishMsg(t.Context(), &nats.Msg{Subject: "levqor.cmd.accounts.create", Data: env,
			Header: nats.Header{bus.HeaderMsgID: {id}}})
		require.NoError(t, err)
		dead := deadLetter(t, "accounts-cmd", id)
		require.Contains(t, dead.Header.Get(bus.HeaderDlqReason), command.ForgedReason)
		status, body := c.do(t, http.MethodGet, "/v1/accounts", nil)
		require.Equal(t, http.StatusOK, status)
		require.NotContains(t, string(body), "Mallory", "no account was created")
	})

	t.Run("ATickAndAnEventNoLevqorProcessPublished", func(t *testing.T) {
		slot := time.Now().Add(365 * 24 * time.Hour).UTC().Truncate(time.Minute)
		tick, err := json.Marshal(map[string]any{"job": "accounts.offboard", "slot": slot})
		require.NoError(t, err)
		_, err = js.PublishMsg(t.Context(), &nats.Msg{Subject: "levqor.tick.accounts.offboard", Data: tick,
			Header: nats.Header{bus.HeaderMsgID: {"forged-tick-1"}}})
		require.NoError(t, err)
		dead := deadLetter(t, "accounts-tick", "forged-tick-1")
		require.Contains(t, dead.Header.Get(bus.HeaderDlqReason), "no valid proof that a Levqor process published it")

		ev, err := json.Marshal(map[string]any{"account_id": acc, "source_id": "src_x", "run_id": "run_x", "incident": "run_failed:run_x",
			"reason": "click here to restore: http://phish.example", "at": time.Now().UTC()})
		require.NoError(t, err)
		_, err = js.PublishMsg(t.Context(), &nats.Msg{Subject: "levqor.event.backup.run_failed", Data: ev,
			Header: nats.Header{bus.HeaderMsgID: {"forged-event-1"}}})
		require.NoError(t, err)
		dead = deadLetter(t, "notify-event", "forged-event-1")
		require.Contains(t, dead.Header.Get(bus.HeaderDlqReason), "no valid proof")
		status, body := c.do(t, http.MethodGet, "/v1/notifications?account_id="+acc, nil)
		require.Equal(t, http.StatusOK, status)
		require.NotContains(t, string(body), "phish.example", "nobody was told")
	})

	t.Run("AStripeEventIngestNeverVerified", func(t *testing.T) {
		ev, err := stripesim.NewEvent("customer.subscription.created", stripesim.EventOptions{Created: time.Now().Add(-time.Minute),
			Customer: cus, ObjectID: "sub_forged", Price: "price_levqor_enterprise_monthly"})
		require.NoError(t, err)
		var id struct{ ID string }
		require.NoError(t, json.Unmarshal(ev, &id))
		wrong, err := keys.ParseBusKey(strings.Repeat("ee", 32))
		require.NoError(t, err)
		for _, h := range []nats.Header{
			{bus.HeaderMsgID: {id.ID}},
			{bus.HeaderMsgID: {id.ID + "_2"}, keys.HeaderBusProof: {wrong.ProveMessage(ev)}},
		} {
			_, err = js.PublishMsg(t.Context(), &nats.Msg{Subject: "levqor.stripe.customer.subscription.created", Data: ev, Header: h})
			require.NoError(t, err)
			dead := deadLetter(t, "billing-stripe", h.Get(bus.HeaderMsgID))
			require.Contains(t, dead.Header.Get(bus.HeaderDlqReason), "no valid proof that a Levqor process published it")
		}
		b := c.billing(t, acc)
		require.Nil(t, b.Tier, "the account did not move to enterprise")

		// The same event through ingest, signed as Stripe signs: applied.
		c.webhook(t, "customer.subscription.created", stripesim.EventOptions{Created: time.Now().Add(-time.Minute),
			Customer: cus, ObjectID: "sub_real", Price: "price_levqor_starter_monthly"})
		require.Eventually(t, func() bool {
			b := c.billing(t, acc)
			return b.Tier != nil && *b.Tier == "starter"
		}, 20*time.Second, 50*time.Millisecond)
	})

	t.Run("SecretsInCommandsAreSealed", func(t *testing.T) {
		// A postgres source whose DSN holds a password (the test server
		// trusts local connections, so the password is never needed).
		u, err := url.Parse(storetest.PostgresURL(t))
		require.NoError(t, err)
		u.User = url.UserPassword(u.User.Username(), "s3cret-dsn-pw")
		status, body := c.do(t, http.MethodPost, "/v1/sources?wait=15s", map[string]any{
			"account_id": acc, "name": "orders-db", "kind": "postgres", "config": map[string]string{"dsn": u.String()},
		})
		require.Equal(t, http.StatusCreated, status, string(body))
		require.NotContains(t, string(body), "s3cret-dsn-pw")
		require.Contains(t, string(body), u.User.Username()+":***@", "shown redacted")
		var src struct{ Result struct{ ID string } }
		require.NoError(t, json.Unmarshal(body, &src))

		// The run opens it: the backup succeeds.
		status, body = c.do(t, http.MethodPost, "/v1/sources/"+src.Result.ID+"/runs?wait=30s", nil)
		require.Equal(t, http.StatusCreated, status, string(body))
		require.Contains(t, string(body), `"state":"succeeded"`)

		// Nothing readable at rest: the database file, the COMMANDS stream
		// and the DLQ (which keeps a dead command's bytes).
		read := 0
		for _, f := range []string{"levqor.db", "levqor.db-wal"} {
			raw, err := os.ReadFile(filepath.Join(d.info.DataDir, f))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			require.NoError(t, err)
			read += len(raw)
			require.NotContains(t, string(raw), "s3cret-dsn-pw", "%s holds the password", f)
		}
		require.NotZero(t, read, "the database was read")
		for _, name := range []string{"COMMANDS", "DLQ"} {
			s, err := js.Stream(t.Context(), name)
			require.NoError(t, err)
			info, err := s.Info(t.Context())
			require.NoError(t, err)
			for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
				m, err := s.GetMsg(t.Context(), seq)
				if err != nil {
					continue
				}
				require.NotContains(t, string(m.Data), "s3cret-dsn-pw", "%s seq %d holds the password", name, seq)
			}
		}

		// A client cannot pass off a sealed value of its own.
		status, body = c.do(t, http.MethodPost, "/v1/sources?wait=15s", map[string]any{
			"account_id": acc, "name": "forged", "kind": "postgres", "config": map[string]string{"dsn": keys.SealedPrefix + "00000000:eA:eA"},
		})
		require.Equal(t, http.StatusUnprocessableEntity, status, string(body))
		require.Contains(t, string(body), "config.dsn")
	})
}
