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

// consoleAccount is a customer account of the console's tests, with a
// directory source.
type consoleAccount struct{ id, cus, source, dir string }

// consoleFixture is a dev mode with two starter accounts (Ada's and
// Bob's), each with a directory source, and three people: Ada (owner),
// Max (member of Ada's account) and Olga (operator).
type consoleFixture struct {
	d        *devRun
	c        devClient
	st       *store.Store
	ppl      *people.People
	ada, bob *consoleAccount
}

func newConsoleFixture(t *testing.T, extra map[string]string) *consoleFixture {
	t.Helper()
	vars := devVars(t.TempDir())
	for k, v := range extra {
		vars[k] = v
	}
	d, err := runDev(t, vars)
	require.NoError(t, err)
	c := devClient{info: d.info}
	ctx := t.Context()
	accounts := map[string]*consoleAccount{}
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
		a := &consoleAccount{id: created.Result.ID, cus: created.Result.StripeCustomerID}
		accounts[strings.Fields(name)[0]] = a
		c.webhook(t, "customer.subscription.created", stripesim.EventOptions{Created: time.Now().Add(-time.Minute),
			Customer: a.cus, ObjectID: "sub_" + a.id, Price: "price_levqor_starter_monthly"})
		require.Eventually(t, func() bool {
			b := c.billing(t, a.id)
			return b.Tier != nil && *b.Tier == "starter"
		}, 20*time.Second, 50*time.Millisecond)
		a.dir = t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(a.dir, "img"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(a.dir, "index.html"), []byte("<p>"+name+"</p>"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(a.dir, "img", "logo.svg"), []byte("<svg/>"), 0o644))
		status, body = c.do(t, http.MethodPost, "/v1/sources?wait=15s", map[string]any{
			"account_id": a.id, "name": strings.Fields(strings.ToLower(name))[0] + "-site", "kind": "directory", "config": map[string]string{"path": a.dir},
		})
		require.Equal(t, http.StatusCreated, status, string(body))
		var src struct{ Result struct{ ID string } }
		require.NoError(t, json.Unmarshal(body, &src))
		a.source = src.Result.ID
	}
	st, err := store.Open(ctx, d.info.DatabaseURL, storetest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	ppl, err := people.New(people.Config{Store: st, Logger: storetest.Logger(t)})
	require.NoError(t, err)
	for _, nu := range []people.NewUser{
		{Email: "ada@ada.example", Name: "Ada", Role: store.RoleOwner, AccountID: accounts["Ada"].id, Password: "ada's long passphrase"},
		{Email: "max@ada.example", Name: "Max", Role: store.RoleMember, AccountID: accounts["Ada"].id, Password: "max's long passphrase"},
		{Email: "ops@levqor.example", Name: "Olga", Role: store.RoleOperator, Password: "olga's long passphrase"},
	} {
		_, err := ppl.CreateUser(ctx, nu)
		require.NoError(t, err)
	}
	return &consoleFixture{d: d, c: c, st: st, ppl: ppl, ada: accounts["Ada"], bob: accounts["Bob"]}
}

// newAccount creates an account with no subscription and returns its id.
func (f *consoleFixture) newAccount(t *testing.T, name string) string {
	t.Helper()
	status, body := f.c.do(t, http.MethodPost, "/v1/accounts?wait=15s", map[string]string{"name": name, "contact_email": "it@" + strings.Fields(strings.ToLower(name))[0] + ".example"})
	require.Equal(t, http.StatusCreated, status, string(body))
	var created struct{ Result struct{ ID string } }
	require.NoError(t, json.Unmarshal(body, &created))
	return created.Result.ID
}

// deadLetter puts into the DLQ, as the router does after a handler's last
// failure, a Stripe event ingest accepted and proved that moves Bob's
// account to growth: replayed, billing applies it.
func (f *consoleFixture) deadLetter(t *testing.T) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(f.d.info.DataDir, service.DevSecretsFile))
	require.NoError(t, err)
	var secrets struct {
		BusKey string `json:"bus_key"`
	}
	require.NoError(t, json.Unmarshal(raw, &secrets))
	bk, err := keys.ParseBusKey(secrets.BusKey)
	require.NoError(t, err)
	ev, err := stripesim.NewEvent("customer.subscription.updated", stripesim.EventOptions{Created: time.Now(),
		Customer: f.bob.cus, ObjectID: "sub_" + f.bob.id, Price: "price_levqor_growth_monthly"})
	require.NoError(t, err)
	var evID struct{ ID string }
	require.NoError(t, json.Unmarshal(ev, &evID))
	nc, err := nats.Connect(f.d.info.NATSURL, nats.UserInfo(service.DevNATSUser, f.d.info.NATSPassword))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.PublishMsg(t.Context(), &nats.Msg{Subject: "levqor.dlq.billing-stripe", Data: ev, Header: nats.Header{
		bus.HeaderMsgID: {"dlq-" + evID.ID}, bus.HeaderOriginalMsgID: {evID.ID}, keys.HeaderBusProof: {bk.ProveMessage(ev)},
		bus.HeaderDlqSubject: {"levqor.stripe.customer.subscription.updated"}, bus.HeaderDlqConsumer: {"billing-stripe"},
		bus.HeaderDlqStream: {"STRIPE"}, bus.HeaderDlqSeq: {"1"}, bus.HeaderDlqDeliveries: {"5"},
		bus.HeaderDlqReason: {"billing: database is locked"}, bus.HeaderDlqAt: {time.Now().UTC().Format(time.RFC3339Nano)},
	}})
	require.NoError(t, err)
}

// bobOnGrowth reports whether the dead letter's event was applied.
func (f *consoleFixture) bobOnGrowth(t *testing.T) bool {
	b := f.c.billing(t, f.bob.id)
	return b.Tier != nil && *b.Tier == "growth"
}

func TestConsole(t *testing.T) {
	t.Parallel()
	f := newConsoleFixture(t, nil)
	d, st, ada, bob := f.d, f.st, f.ada, f.bob
	ctx := t.Context()

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
		require.Contains(t, p.body, `data-refresh="/app/sources/`+ada.source+`/runs"`, "the runs update live")
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
		f.deadLetter(t)

		b := newBrowser(t, d.info.IngestURL)
		require.Equal(t, "/app/", b.signIn("ops@levqor.example", "olga's long passphrase").location)
		require.Equal(t, "/app/ops/status", b.get("/app/").location)
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
		require.Eventually(t, func() bool { return f.bobOnGrowth(t) }, 20*time.Second, 50*time.Millisecond, "the replayed event was processed")

		audit, err := st.ListAudit(ctx, store.ListAuditParams{Action: "dlq.replay"})
		require.NoError(t, err)
		require.NotEmpty(t, audit)
		u, err := st.UserByEmail(ctx, "ops@levqor.example")
		require.NoError(t, err)
		require.Equal(t, "user:"+u.ID, audit[0].Actor)
		require.Contains(t, string(audit[0].Params), "database back")
	})

	t.Run("OwnerBacksUpBrowsesAndDownloads", func(t *testing.T) {
		b := newBrowser(t, d.info.IngestURL)
		require.Equal(t, http.StatusSeeOther, b.signIn("ada@ada.example", "ada's long passphrase").status)
		src := b.get("/app/sources/" + ada.source)
		p := b.post("/app/sources/"+ada.source+"/run", url.Values{"csrf": {src.csrf(t)}})
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		require.Contains(t, b.get(p.location).body, "Backup started")
		var snap string
		require.Eventually(t, func() bool {
			part := b.get("/app/sources/" + ada.source + "/runs")
			if !strings.Contains(part.body, `id="runs"`) || !strings.Contains(part.body, ">succeeded<") {
				return false
			}
			m := regexp.MustCompile(`href="/app/snapshots/(snap_[a-z0-9]+)"`).FindStringSubmatch(b.get("/app/sources/" + ada.source).body)
			if m == nil {
				return false
			}
			snap = m[1]
			return true
		}, 30*time.Second, 200*time.Millisecond, "the run's progress shows without reloading the page")
		ov := b.get("/app/overview").body
		require.Contains(t, ov, `health">ok<`, "a source backed up on time is healthy")
		require.NotContains(t, ov, `id="storage">0 B`, "the storage used counts the backup")
		require.Regexp(t, `id="storage">[0-9.]+ [kM]?B of 1[0-9.]* GB`, ov)
		root := b.get("/app/snapshots/" + snap)
		require.Equal(t, http.StatusOK, root.status)
		require.Contains(t, root.body, "index.html")
		require.Contains(t, root.body, `href="/app/snapshots/`+snap+`?path=img"`)
		img := b.get("/app/snapshots/" + snap + "?path=img")
		require.Contains(t, img.body, "logo.svg")
		file := b.get("/app/snapshots/" + snap + "/download?path=img/logo.svg")
		require.Equal(t, http.StatusOK, file.status)
		require.Equal(t, "<svg/>", file.body)
		require.Equal(t, http.StatusNotFound, newBrowserSignedIn(t, d.info.IngestURL, "ops@levqor.example", "olga's long passphrase").
			get("/app/snapshots/snap_"+strings.Repeat("z", 26)).status)
	})

	t.Run("TicketsValidateAndConverse", func(t *testing.T) {
		b := newBrowserSignedIn(t, d.info.IngestURL, "max@ada.example", "max's long passphrase")
		list := b.get("/app/tickets")
		require.Equal(t, http.StatusOK, list.status)
		p := b.post("/app/tickets", url.Values{"csrf": {list.csrf(t)}, "subject": {""}, "body": {"the nightly backup failed"}})
		require.GreaterOrEqual(t, p.status, 400)
		require.Contains(t, p.body, `id="ticket-error">Subject:`)
		p = b.post("/app/tickets", url.Values{"csrf": {list.csrf(t)}, "subject": {"Backups failing since Monday"}, "body": {"the nightly backup failed"}})
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		require.True(t, strings.HasPrefix(p.location, "/app/tickets/tkt_"), p.location)
		tk := b.get(p.location)
		require.Contains(t, tk.body, "Backups failing since Monday")
		require.Contains(t, tk.body, "Resolution due")
		p = b.post(p.location+"/reply", url.Values{"csrf": {tk.csrf(t)}, "body": {"it failed again tonight"}})
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		require.Contains(t, b.get(p.location).body, "it failed again tonight")
		require.Contains(t, b.get("/app/overview").body, `id="open-tickets">1<`)
	})

	t.Run("AMemberCannotOpenOwnerPages", func(t *testing.T) {
		b := newBrowserSignedIn(t, d.info.IngestURL, "max@ada.example", "max's long passphrase")
		for _, path := range []string{"/app/billing", "/app/people", "/app/keys", "/app/ops/status", "/app/ops/accounts"} {
			require.Equal(t, http.StatusForbidden, b.get(path).status, path)
		}
		require.Equal(t, http.StatusForbidden, b.post("/app/keys", url.Values{"csrf": {b.get("/app/overview").csrf(t)}, "name": {"x"}}).status)
	})

	t.Run("OwnersInvitePeopleAndManageKeys", func(t *testing.T) {
		b := newBrowserSignedIn(t, d.info.IngestURL, "ada@ada.example", "ada's long passphrase")
		pp := b.get("/app/people")
		require.Equal(t, http.StatusOK, pp.status)
		require.Contains(t, pp.body, "max@ada.example")
		p := b.post("/app/people/invite", url.Values{"csrf": {pp.csrf(t)}, "email": {"not an email"}, "role": {"member"}})
		require.Equal(t, http.StatusUnprocessableEntity, p.status)
		require.Contains(t, p.body, `id="people-error">Email: not an email address.`)
		p = b.post("/app/people/invite", url.Values{"csrf": {pp.csrf(t)}, "email": {"new@ada.example"}, "role": {"member"}})
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		link := mailedLink(t, d.info.DataDir, "new@ada.example", "/app/invite/")
		newcomer := newBrowser(t, d.info.IngestURL)
		require.Equal(t, http.StatusOK, newcomer.get(link).status)
		p = newcomer.post(link, url.Values{"name": {"Nia"}, "password": {"nia's long passphrase"}, "confirm": {"nia's long passphrase"}})
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		require.Contains(t, newcomer.get("/app/overview").body, "Ada Backups Ltd", "the invitation signs the newcomer in")
		require.Equal(t, http.StatusGone, newBrowser(t, d.info.IngestURL).post(link, url.Values{"name": {"x"}, "password": {"another passphrase"}, "confirm": {"another passphrase"}}).status, "an invitation works once")

		// A pending invitation is revoked: its link stops working. Another
		// account's invitation is not the owner's to revoke.
		pp = b.get("/app/people")
		p = b.post("/app/people/invite", url.Values{"csrf": {pp.csrf(t)}, "email": {"changed-mind@ada.example"}, "role": {"member"}})
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		revoked := mailedLink(t, d.info.DataDir, "changed-mind@ada.example", "/app/invite/")
		pp = b.get("/app/people")
		form := regexp.MustCompile(`action="(/app/invitations/[0-9a-f]{64}/revoke)"`).FindStringSubmatch(pp.body)
		require.NotNil(t, form, pp.body)
		theirs, _, err := f.ppl.Invite(ctx, "someone@bob.example", store.RoleMember, bob.id, "user:test")
		require.NoError(t, err)
		require.Equal(t, http.StatusNotFound, b.post("/app/invitations/"+people.HashSecret(theirs)+"/revoke", url.Values{"csrf": {pp.csrf(t)}}).status)
		p = b.post(form[1], url.Values{"csrf": {pp.csrf(t)}})
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		require.NotContains(t, b.get("/app/people").body, "changed-mind@ada.example")
		require.Equal(t, http.StatusGone, newBrowser(t, d.info.IngestURL).post(revoked, url.Values{"name": {"x"}, "password": {"a long passphrase"}, "confirm": {"a long passphrase"}}).status)
		_, err = st.PeekUserLink(ctx, people.HashSecret(theirs), store.LinkInvite, time.Now())
		require.NoError(t, err, "Bob's invitation still works")

		keys := b.get("/app/keys")
		p = b.post("/app/keys", url.Values{"csrf": {keys.csrf(t)}, "name": {"nightly agent"}})
		require.Equal(t, http.StatusCreated, p.status, p.body)
		secret := regexp.MustCompile(`(lvq_[a-z2-7]{52})`).FindString(p.body)
		require.NotEmpty(t, secret, p.body)
		call := func() int {
			req, err := http.NewRequest(http.MethodGet, d.info.IngestURL+"/v1/sources", nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+secret)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			return resp.StatusCode
		}
		require.Equal(t, http.StatusOK, call(), "the new key works for the owner's account")
		require.NotContains(t, b.get("/app/keys").body, secret, "shown only once")
		id := regexp.MustCompile(`action="/app/keys/(key_[a-z0-9]+)/revoke"`).FindStringSubmatch(b.get("/app/keys").body)
		require.NotNil(t, id)
		p = b.post("/app/keys/"+id[1]+"/revoke", url.Values{"csrf": {keys.csrf(t)}})
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		require.Equal(t, http.StatusUnauthorized, call(), "a revoked key stops working")
	})

	t.Run("APasswordIsResetByEmail", func(t *testing.T) {
		old := newBrowserSignedIn(t, d.info.IngestURL, "ada@ada.example", "ada's long passphrase")
		b := newBrowser(t, d.info.IngestURL)
		for _, email := range []string{"ada@ada.example", "nobody@ada.example"} {
			p := b.post("/app/reset", url.Values{"email": {email}})
			require.Equal(t, http.StatusOK, p.status)
			require.Contains(t, p.body, `id="reset-sent"`, "the same answer whether or not the email has a user")
		}
		link := mailedLink(t, d.info.DataDir, "ada@ada.example", "/app/reset/")
		p := b.post(link, url.Values{"password": {"short"}, "confirm": {"short"}})
		require.Equal(t, http.StatusUnprocessableEntity, p.status)
		require.Contains(t, p.body, "Password: at least 12 characters.")
		p = b.post(link, url.Values{"password": {"ada's new passphrase"}, "confirm": {"ada's new passphrase"}})
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		require.Equal(t, http.StatusSeeOther, old.get("/app/overview").status, "a reset ends every session")
		require.Equal(t, http.StatusUnauthorized, b.signIn("ada@ada.example", "ada's long passphrase").status)
		require.Equal(t, http.StatusSeeOther, b.signIn("ada@ada.example", "ada's new passphrase").status)
		require.Equal(t, http.StatusGone, b.post(link, url.Values{"password": {"ada's third passphrase"}, "confirm": {"ada's third passphrase"}}).status)
	})

	t.Run("OperatorPages", func(t *testing.T) {
		b := newBrowserSignedIn(t, d.info.IngestURL, "ops@levqor.example", "olga's long passphrase")
		st := b.get("/app/ops/status")
		require.Equal(t, http.StatusOK, st.status)
		require.Contains(t, st.body, "billing-stripe")
		acc := b.get("/app/ops/accounts?q=bob")
		require.Contains(t, acc.body, "Bob Archive Co")
		require.NotContains(t, acc.body, "Ada Backups Ltd", "the search narrows the list")
		one := b.get("/app/ops/accounts/" + ada.id)
		require.Equal(t, http.StatusOK, one.status)
		require.Contains(t, one.body, "ada-site")
		require.Contains(t, one.body, "max@ada.example")
		p := b.post("/app/ops/replay", url.Values{"csrf": {st.csrf(t)}, "consumer": {"billing-stripe"}, "since": {"1h"}, "note": {"checking a customer's events"}})
		require.Equal(t, http.StatusOK, p.status, p.body)
		require.Contains(t, p.body, "Dry run: nothing published")
		p = b.post("/app/ops/replay", url.Values{"csrf": {st.csrf(t)}, "consumer": {"billing-stripe"}, "since": {"yesterday-ish"}, "note": {"x"}})
		require.Equal(t, http.StatusBadRequest, p.status)
		require.Contains(t, p.body, `id="replay-error">Since:`)
		audit := b.get("/app/ops/audit?action=dlq.replay")
		require.Contains(t, audit.body, "database back")
	})

	t.Run("CustomersAddSourcesAndOwnersOpenBilling", func(t *testing.T) {
		b := newBrowserSignedIn(t, d.info.IngestURL, "max@ada.example", "max's long passphrase")
		ov := b.get("/app/overview")
		p := b.post("/app/sources", url.Values{"csrf": {ov.csrf(t)}, "name": {"laptops"}, "kind": {"Not A Kind"}})
		require.Equal(t, http.StatusUnprocessableEntity, p.status, p.body)
		require.Contains(t, p.body, `id="source-error">Kind:`)
		p = b.post("/app/sources", url.Values{"csrf": {ov.csrf(t)}, "name": {"laptops"}, "kind": {"directory"}, "schedule": {"0 3 * * *"}})
		require.Equal(t, http.StatusForbidden, p.status, "a source Levqor runs is set up by its staff")
		require.Contains(t, p.body, "only operators create directory sources")
		p = b.post("/app/sources", url.Values{"csrf": {ov.csrf(t)}, "name": {"laptops"}, "kind": {"files"}, "schedule": {"0 3 * * *"}})
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		require.True(t, strings.HasPrefix(p.location, "/app/sources/src_"), p.location)
		require.Contains(t, b.get(p.location).body, "laptops")

		owner := newBrowserSignedIn(t, d.info.IngestURL, "ada@ada.example", "ada's new passphrase") // set by the reset above
		bill := owner.get("/app/billing")
		require.Equal(t, http.StatusOK, bill.status)
		require.Contains(t, bill.body, `id="billing-plan">starter<`)
		p = owner.post("/app/billing/portal", url.Values{"csrf": {bill.csrf(t)}})
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		require.True(t, strings.HasPrefix(p.location, "http"), "to Stripe's portal: %s", p.location)
		require.Contains(t, bill.body, "changed in the billing portal", "a subscribed account changes plan in the portal")
		p = owner.post("/app/billing/checkout", url.Values{"csrf": {bill.csrf(t)}, "plan": {"growth_monthly"}})
		require.Equal(t, http.StatusConflict, p.status, p.body)
		require.Contains(t, p.body, "change its plan in a billing portal session")
		p = owner.post("/app/billing/checkout", url.Values{"csrf": {bill.csrf(t)}, "plan": {"platinum_forever"}})
		require.GreaterOrEqual(t, p.status, 400)
		require.Contains(t, p.body, "platinum_forever", "the refusal names what was wrong")

		// The owner of an account without a subscription starts one in
		// Checkout.
		acc := f.newAccount(t, "Cleo Storage Ltd")
		_, err := f.ppl.CreateUser(ctx, people.NewUser{Email: "cleo@cleo.example", Role: store.RoleOwner, AccountID: acc, Password: "cleo's long passphrase"})
		require.NoError(t, err)
		cleo := newBrowserSignedIn(t, d.info.IngestURL, "cleo@cleo.example", "cleo's long passphrase")
		cb := cleo.get("/app/billing")
		require.Contains(t, cb.body, "Continue to checkout")
		p = cleo.post("/app/billing/checkout", url.Values{"csrf": {cb.csrf(t)}, "plan": {"growth_monthly"}})
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		require.True(t, strings.HasPrefix(p.location, "http"), "to Stripe Checkout: %s", p.location)
	})

	t.Run("AnOperatorSuspendsAndReinstatesAnAccount", func(t *testing.T) {
		acc := f.newAccount(t, "Dora Data Ltd")
		_, err := f.ppl.CreateUser(ctx, people.NewUser{Email: "dora@dora.example", Role: store.RoleOwner, AccountID: acc, Password: "dora's long passphrase"})
		require.NoError(t, err)
		const why = "payment disputed by the card holder; call us"
		op := newBrowserSignedIn(t, d.info.IngestURL, "ops@levqor.example", "olga's long passphrase")
		page := op.get("/app/ops/accounts/" + acc)
		require.Contains(t, page.body, "Suspend the account")
		p := op.post("/app/ops/accounts/"+acc+"/suspend", url.Values{"csrf": {page.csrf(t)}, "confirm": {"yes"}})
		require.Equal(t, http.StatusUnprocessableEntity, p.status)
		require.Contains(t, p.body, `id="account-error">Reason:`)
		p = op.post("/app/ops/accounts/"+acc+"/suspend", url.Values{"csrf": {page.csrf(t)}, "reason": {why}})
		require.Equal(t, http.StatusUnprocessableEntity, p.status)
		require.Contains(t, p.body, `id="account-error">Confirm:`)
		require.Contains(t, p.body, `value="`+why+`"`, "the reason is kept for the next try")
		p = op.post("/app/ops/accounts/"+acc+"/suspend", url.Values{"csrf": {page.csrf(t)}, "reason": {why}, "confirm": {"yes"}})
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		page = op.get(p.location)
		require.Contains(t, page.body, `id="account-done">Suspended<`)
		require.Contains(t, page.body, "Suspended by Levqor")
		require.Contains(t, page.body, why)
		require.Contains(t, page.body, `status-suspended">suspended<`)

		dora := newBrowserSignedIn(t, d.info.IngestURL, "dora@dora.example", "dora's long passphrase")
		ov := dora.get("/app/overview")
		require.Contains(t, ov.body, `id="suspended">Levqor has suspended this account: `+why)
		p = dora.post("/app/sources", url.Values{"csrf": {ov.csrf(t)}, "name": {"laptops"}, "kind": {"files"}, "schedule": {"0 3 * * *"}})
		require.Equal(t, http.StatusForbidden, p.status, p.body)
		require.Contains(t, p.body, `id="source-error">`)
		require.Contains(t, p.body, "only billing, support and notification requests are accepted")
		keys := dora.get("/app/keys")
		p = dora.post("/app/keys", url.Values{"csrf": {keys.csrf(t)}, "name": {"backup agent"}})
		require.Equal(t, http.StatusForbidden, p.status, "no new keys either: %s", p.body)
		require.Contains(t, p.body, "no new API keys or people until it is reinstated")
		tickets := dora.get("/app/tickets")
		p = dora.post("/app/tickets", url.Values{"csrf": {tickets.csrf(t)}, "subject": {"Why are we suspended?"}, "body": {"We paid."}})
		require.Equal(t, http.StatusSeeOther, p.status, "support stays open: %s", p.body)
		require.Equal(t, http.StatusForbidden, dora.post("/app/ops/accounts/"+acc+"/reinstate",
			url.Values{"csrf": {ov.csrf(t)}, "reason": {"we paid"}, "confirm": {"yes"}}).status, "only operators lift it")

		p = op.post("/app/ops/accounts/"+acc+"/reinstate", url.Values{"csrf": {page.csrf(t)}, "reason": {"the dispute was withdrawn"}, "confirm": {"yes"}})
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		page = op.get(p.location)
		require.Contains(t, page.body, `id="account-done">Suspension lifted<`)
		require.Contains(t, page.body, "Suspend the account")
		require.NotContains(t, dora.get("/app/overview").body, `id="suspended"`)
		audit := op.get("/app/ops/audit?action=command.billing.reinstate").body
		require.Contains(t, audit, "the dispute was withdrawn", "the reason is in the audit trail")
	})

	t.Run("OperatorPurgesADeadLetter", func(t *testing.T) {
		f.deadLetter(t)
		b := newBrowserSignedIn(t, d.info.IngestURL, "ops@levqor.example", "olga's long passphrase")
		var seq string
		require.Eventually(t, func() bool {
			m := regexp.MustCompile(`href="/app/ops/dlq/(\d+)"`).FindStringSubmatch(b.get("/app/ops/dlq").body)
			if m != nil {
				seq = m[1]
			}
			return m != nil
		}, 10*time.Second, 50*time.Millisecond)
		show := b.get("/app/ops/dlq/" + seq)
		p := b.post("/app/ops/dlq/"+seq+"/purge", url.Values{"csrf": {show.csrf(t)}, "note": {"a duplicate of an applied event"}, "confirm": {"yes"}})
		require.Equal(t, http.StatusSeeOther, p.status, p.body)
		require.Contains(t, b.get(p.location).body, "Purged dead letter "+seq)
		require.Equal(t, http.StatusNotFound, b.get("/app/ops/dlq/"+seq).status, "gone for good")
		audit, err := st.ListAudit(ctx, store.ListAuditParams{Action: "dlq.purge"})
		require.NoError(t, err)
		require.NotEmpty(t, audit)
		require.Contains(t, string(audit[0].Params), "a duplicate of an applied event")
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

// newBrowserSignedIn is a browser signed in as email.
func newBrowserSignedIn(t *testing.T, base, email, password string) *browser {
	t.Helper()
	b := newBrowser(t, base)
	require.Equal(t, http.StatusSeeOther, b.signIn(email, password).status, "signing in as %s", email)
	return b
}

// mailedLink is the newest console link under path mailed to to, read
// from dev mode's mail directory.
func mailedLink(t *testing.T, dataDir, to, path string) string {
	t.Helper()
	re := regexp.MustCompile(`https?://[^/\s]+(` + regexp.QuoteMeta(path) + `[A-Za-z0-9_-]+)`)
	var link string
	require.Eventually(t, func() bool {
		files, _ := filepath.Glob(filepath.Join(dataDir, "mail", "*.eml"))
		var newest time.Time
		for _, f := range files {
			raw, err := os.ReadFile(f)
			fi, serr := os.Stat(f)
			if err != nil || serr != nil || !strings.Contains(string(raw), "To: <"+to+">") {
				continue
			}
			body := strings.ReplaceAll(string(raw), "=\r\n", "")
			if m := re.FindStringSubmatch(body); m != nil && !fi.ModTime().Before(newest) {
				link, newest = m[1], fi.ModTime()
			}
		}
		return link != ""
	}, 10*time.Second, 50*time.Millisecond, "a mail to %s with a link under %s", to, path)
	return link
}
