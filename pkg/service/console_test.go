package service_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/people"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripesim"
)

// browser is a person's HTTP client of the console: its own cookies, and
// redirects seen rather than followed.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newBrowser(t *testing.T, base string) *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// page is an answer of the console.
type page struct {
	status   int
	location string
	body     string
	header   http.Header
}

func (b *browser) get(path string) page {
	b.t.Helper()
	return b.do(http.MethodGet, path, nil)
}

func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	return b.do(http.MethodPost, path, form)
}

func (b *browser) do(method, path string, form url.Values) page {
	b.t.Helper()
	var rd io.Reader
	if form != nil {
		rd = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, rd)
	require.NoError(b.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	return page{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(body), header: resp.Header}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the anti-forgery token of a page's forms.
func (p page) csrf(t *testing.T) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(p.body)
	require.NotNil(t, m, "no csrf field in:\n%s", p.body)
	return m[1]
}

// signIn signs in through the form and returns the page signed in to.
func (b *browser) signIn(email, password string) page {
	b.t.Helper()
	form := b.get("/app/signin")
	require.Equal(b.t, http.StatusOK, form.status)
	return b.post("/app/signin", url.Values{"csrf": {form.csrf(b.t)}, "email": {email}, "password": {password}, "next": {"/app/"}})
}

func TestConsole(t *testing.T) {
	t.Parallel()
	d, err := runDev(t, devVars(t.TempDir()))
	require.NoError(t, err)
	c := devClient{info: d.info}
	ctx := t.Context()

	// Two customer accounts on the starter tier, each with a source.
	type account struct{ id, cus, source string }
	accounts := map[string]*account{}
	for _, name := range []string{"Ada Backups Ltd", "Bob Archive Co"} {
		status, body := c.do(t, http.MethodPost, "/v1/accounts?wait=15s", map[string]string{"name": name, "contact_email": "ops@" + strings.Fields(strings.ToLower(name))[0] + ".example"})
		require.Equal(t, http.StatusCreated, status, string(body))
		var created struct {
			Result struct {
				ID               string `json:"id"`
				StripeCustomerID string `json:"stripe_customer_id"`
			}
		}
		require.NoError(t, json.Unmarshal(body, &created))
		a := &account{id: created.Result.ID, cus: created.Result.StripeCustomerID}
		accounts[strings.Fields(name)[0]] = a
		c.webhook(t, "customer.subscription.created", stripesim.EventOptions{Created: time.Now().Add(-time.Minute),
			Customer: a.cus, ObjectID: "sub_" + a.id, Price: "price_levqor_starter_monthly"})
		require.Eventually(t, func() bool {
			b := c.billing(t, a.id)
			return b.Tier != nil && *b.Tier == "starter"
		}, 20*time.Second, 50*time.Millisecond)
		status, body = c.do(t, http.MethodPost, "/v1/sources?wait=15s", map[string]any{
			"account_id": a.id, "name": strings.Fields(strings.ToLower(name))[0] + "-site", "kind": "directory", "config": map[string]string{"path": t.TempDir()},
		})
		require.Equal(t, http.StatusCreated, status, string(body))
		var src struct{ Result struct{ ID string } }
		require.NoError(t, json.Unmarshal(body, &src))
		a.source = src.Result.ID
	}
	ada, bob := accounts["Ada"], accounts["Bob"]

	st, err := store.Open(ctx, d.info.DatabaseURL, storetest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	ppl, err := people.New(people.Config{Store: st, Logger: storetest.Logger(t)})
	require.NoError(t, err)
	for _, nu := range []people.NewUser{
		{Email: "ada@ada.example", Name: "Ada", Role: store.RoleOwner, AccountID: ada.id, Password: "ada's long passphrase"},
		{Email: "max@ada.example", Name: "Max", Role: store.RoleMember, AccountID: ada.id, Password: "max's long passphrase"},
		{Email: "ops@levqor.example", Name: "Olga", Role: store.RoleOperator, Password: "olga's long passphrase"},
	} {
		_, err := ppl.CreateUser(ctx, nu)
		require.NoError(t, err)
	}

	t.Run("SignedOutGoesToSignIn", func(t *testing.T) {
		b := newBrowser(t, d.info.IngestURL)
		p := b.get("/app/overview")
		require.Equal(t, http.StatusSeeOther, p.status)
		require.Equal(t, "/app/signin?next=%2Fapp%2Foverview", p.location)
		p = b.get("/app/signin")
		require.Contains(t, p.body, `<meta name="robots" content="noindex, nofollow">`)
		require.Equal(t, "noindex, nofollow", p.header.Get("X-Robots-Tag"))
		require.Contains(t, p.header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
	})

	t.Run("SignInErrorsRevealNoEmail", func(t *testing.T) {
		b := newBrowser(t, d.info.IngestURL)
		wrong := b.signIn("ada@ada.example", "not the passphrase")
		unknown := b.signIn("nobody@ada.example", "not the passphrase")
		require.Equal(t, http.StatusUnauthorized, wrong.status)
		require.Equal(t, http.StatusUnauthorized, unknown.status)
		msg := regexp.MustCompile(`id="signin-error">([^<]*)<`)
		require.Equal(t, msg.FindStringSubmatch(wrong.body)[1], msg.FindStringSubmatch(unknown.body)[1])
		empty := b.post("/app/signin", url.Values{"csrf": {b.get("/app/signin").csrf(t)}, "email": {"ada@ada.example"}})
		require.Equal(t, http.StatusUnprocessableEntity, empty.status)
		require.Contains(t, empty.body, "Password: enter your password.")
		forged := b.post("/app/signin", url.Values{"csrf": {"made-up"}, "email": {"ada@ada.example"}, "password": {"ada's long passphrase"}})
		require.Equal(t, http.StatusForbidden, forged.status, "a sign-in form from elsewhere is refused")
	})

	t.Run("OwnerSeesTheirAccountOnly", func(t *testing.T) {
		b := newBrowser(t, d.info.IngestURL)
		p := b.signIn("ADA@ada.example", "ada's long passphrase")
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		require.Equal(t, "/app/", p.location)
		cookie := p.header.Get("Set-Cookie")
		for _, attr := range []string{"levqor_session=", "Path=/app/", "HttpOnly", "SameSite=Lax"} {
			require.Contains(t, cookie, attr)
		}
		require.NotContains(t, cookie, "Secure", "dev mode serves http: a Secure cookie would never come back")
		require.Equal(t, "/app/overview", b.get("/app/").location)
		p = b.get("/app/overview")
		require.Equal(t, http.StatusOK, p.status)
		require.Contains(t, p.body, "Ada Backups Ltd")
		require.Contains(t, p.body, `id="plan">starter<`)
		require.Contains(t, p.body, "ada-site")
		require.NotContains(t, p.body, "bob-site")
		p = b.get("/app/sources/" + ada.source)
		require.Equal(t, http.StatusOK, p.status)
		require.Contains(t, p.body, "No snapshots yet.")
		theirs, none := b.get("/app/sources/"+bob.source), b.get("/app/sources/src_"+strings.Repeat("a", 26))
		require.Equal(t, http.StatusNotFound, theirs.status, "another account's source")
		require.Equal(t, http.StatusNotFound, none.status)
		require.Equal(t, none.body, theirs.body, "another tenant's source reads as one that does not exist")
		require.Equal(t, http.StatusForbidden, b.get("/app/ops/dlq").status, "an owner is no operator")
	})

	t.Run("StateChangesNeedTheCSRFToken", func(t *testing.T) {
		b := newBrowser(t, d.info.IngestURL)
		home := b.get(b.signIn("max@ada.example", "max's long passphrase").location)
		require.Equal(t, http.StatusSeeOther, home.status)
		p := b.post("/app/signout", url.Values{})
		require.Equal(t, http.StatusForbidden, p.status)
		p = b.post("/app/signout", url.Values{"csrf": {"x" + b.get("/app/overview").csrf(t)}})
		require.Equal(t, http.StatusForbidden, p.status)
		require.Equal(t, http.StatusOK, b.get("/app/overview").status, "still signed in")
		p = b.post("/app/signout", url.Values{"csrf": {b.get("/app/overview").csrf(t)}})
		require.Equal(t, http.StatusSeeOther, p.status)
		require.Equal(t, http.StatusSeeOther, b.get("/app/overview").status, "signed out")
		require.Equal(t, http.StatusUnauthorized, b.post("/app/signout", url.Values{}).status)
	})

	t.Run("SignOutEverywhereEndsEverySession", func(t *testing.T) {
		phone, laptop := newBrowser(t, d.info.IngestURL), newBrowser(t, d.info.IngestURL)
		require.Equal(t, http.StatusSeeOther, phone.signIn("max@ada.example", "max's long passphrase").status)
		require.Equal(t, http.StatusSeeOther, laptop.signIn("max@ada.example", "max's long passphrase").status)
		p := laptop.post("/app/signout-everywhere", url.Values{"csrf": {laptop.get("/app/overview").csrf(t)}})
		require.Equal(t, http.StatusSeeOther, p.status)
		require.Equal(t, http.StatusSeeOther, phone.get("/app/overview").status)
		require.Equal(t, http.StatusSeeOther, laptop.get("/app/overview").status)
	})

	t.Run("OperatorReplaysADeadLetter", func(t *testing.T) {
		// A Stripe event ingest accepted and proved, which billing gave up
		// on (as the router dead-letters it after its last delivery).
		raw, err := os.ReadFile(filepath.Join(d.info.DataDir, service.DevSecretsFile))
		require.NoError(t, err)
		var secrets struct {
			BusKey string `json:"bus_key"`
		}
		require.NoError(t, json.Unmarshal(raw, &secrets))
		bk, err := keys.ParseBusKey(secrets.BusKey)
		require.NoError(t, err)
		ev, err := stripesim.NewEvent("customer.subscription.updated", stripesim.EventOptions{Created: time.Now(),
			Customer: bob.cus, ObjectID: "sub_" + bob.id, Price: "price_levqor_growth_monthly"})
		require.NoError(t, err)
		var evID struct{ ID string }
		require.NoError(t, json.Unmarshal(ev, &evID))
		nc, err := nats.Connect(d.info.NATSURL, nats.UserInfo(service.DevNATSUser, d.info.NATSPassword))
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		_, err = js.PublishMsg(ctx, &nats.Msg{Subject: "levqor.dlq.billing-stripe", Data: ev, Header: nats.Header{
			bus.HeaderMsgID: {"dlq-" + evID.ID}, bus.HeaderOriginalMsgID: {evID.ID}, keys.HeaderBusProof: {bk.ProveMessage(ev)},
			bus.HeaderDlqSubject: {"levqor.stripe.customer.subscription.updated"}, bus.HeaderDlqConsumer: {"billing-stripe"},
			bus.HeaderDlqStream: {"STRIPE"}, bus.HeaderDlqSeq: {"1"}, bus.HeaderDlqDeliveries: {"5"},
			bus.HeaderDlqReason: {"billing: database is locked"}, bus.HeaderDlqAt: {time.Now().UTC().Format(time.RFC3339Nano)},
		}})
		require.NoError(t, err)

		b := newBrowser(t, d.info.IngestURL)
		require.Equal(t, "/app/", b.signIn("ops@levqor.example", "olga's long passphrase").location)
		require.Equal(t, "/app/ops/dlq", b.get("/app/").location)
		list := b.get("/app/ops/dlq")
		require.Equal(t, http.StatusOK, list.status)
		require.Contains(t, list.body, "billing: database is locked")
		seq := regexp.MustCompile(`href="/app/ops/dlq/(\d+)"`).FindStringSubmatch(list.body)
		require.NotNil(t, seq, list.body)
		show := b.get("/app/ops/dlq/" + seq[1])
		require.Equal(t, http.StatusOK, show.status)
		require.Contains(t, show.body, "levqor.stripe.customer.subscription.updated")
		require.Contains(t, show.body, "Levqor-Dlq-Reason")

		// Without a reason or confirmation nothing happens; the field is named.
		p := b.post("/app/ops/dlq/"+seq[1]+"/replay", url.Values{"csrf": {show.csrf(t)}, "confirm": {"yes"}})
		require.Equal(t, http.StatusUnprocessableEntity, p.status)
		require.Contains(t, p.body, "Reason: say why, for the audit trail.")
		p = b.post("/app/ops/dlq/"+seq[1]+"/replay", url.Values{"csrf": {show.csrf(t)}, "note": {"database back"}})
		require.Equal(t, http.StatusUnprocessableEntity, p.status)
		require.Contains(t, p.body, "Confirm: tick the box")

		p = b.post("/app/ops/dlq/"+seq[1]+"/replay", url.Values{"csrf": {show.csrf(t)}, "note": {"database back"}, "confirm": {"yes"}})
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		require.Contains(t, b.get(p.location).body, "Replayed dead letter "+seq[1])
		require.Eventually(t, func() bool {
			bl := c.billing(t, bob.id)
			return bl.Tier != nil && *bl.Tier == "growth"
		}, 20*time.Second, 50*time.Millisecond, "the replayed event was processed")

		audit, err := st.ListAudit(ctx, store.ListAuditParams{Action: "dlq.replay"})
		require.NoError(t, err)
		require.NotEmpty(t, audit)
		u, err := st.UserByEmail(ctx, "ops@levqor.example")
		require.NoError(t, err)
		require.Equal(t, "user:"+u.ID, audit[0].Actor)
		require.Contains(t, string(audit[0].Params), "database back")
	})

	t.Run("ADisabledUsersSessionEnds", func(t *testing.T) {
		b := newBrowser(t, d.info.IngestURL)
		require.Equal(t, http.StatusSeeOther, b.signIn("max@ada.example", "max's long passphrase").status)
		require.Equal(t, http.StatusOK, b.get("/app/overview").status)
		u, err := st.UserByEmail(ctx, "max@ada.example")
		require.NoError(t, err)
		_, err = st.DisableUser(ctx, u.ID, time.Time{})
		require.NoError(t, err)
		p := b.get("/app/overview")
		require.Equal(t, http.StatusSeeOther, p.status)
		require.True(t, strings.HasPrefix(p.location, "/app/signin"))
	})
}
