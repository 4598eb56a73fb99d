package service_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/oauth2-proxy/mockoidc"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/people"
	"github.com/levqor/levqor/pkg/store"
)

// chromium finds Debian's Chromium (LEVQOR_CHROMIUM overrides); without
// it the browser tests fail under scripts/test (which installs it) and
// are skipped elsewhere, saying why.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LEVQOR_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "chromium not found: apt-get install chromium (scripts/test does), or set LEVQOR_CHROMIUM"
	if os.Getenv("LEVQOR_TEST_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// person is one person's browser: its own profile, so its own cookies.
type person struct {
	t    *testing.T
	ctx  context.Context
	base string
}

func newPerson(t *testing.T, chrome, base string) *person {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		// The machine has no network beyond localhost: no background
		// connections to fail.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser, which lives as long as ctx: no
	// timeout on it.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank")))
	return &person{t: t, ctx: ctx, base: base}
}

// step bounds one step, so that a broken page fails the test rather than
// hanging it.
func (p *person) step() (context.Context, context.CancelFunc) {
	return context.WithTimeout(p.ctx, 30*time.Second)
}

// run runs steps in order.
func (p *person) run(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := p.step()
	defer cancel()
	require.NoError(p.t, chromedp.Do(ctx, steps...))
}

// eval evaluates a JavaScript expression (awaiting a promise) on the page.
func eval[T any](p *person, expr string) T {
	p.t.Helper()
	ctx, cancel := p.step()
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	require.NoError(p.t, err)
	return v
}

func (p *person) location() string {
	p.t.Helper()
	ctx, cancel := p.step()
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(p.t, err)
	return strings.TrimPrefix(loc, p.base)
}

func (p *person) text(sel string) string {
	p.t.Helper()
	ctx, cancel := p.step()
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	require.NoError(p.t, err)
	return s
}

// signIn signs in through the form, from a page that needs it.
func (p *person) signIn(email, password, page string) {
	p.t.Helper()
	p.run(
		chromedp.Navigate(p.base+page),
		chromedp.WaitVisible(chromedp.CSS(`#signin-submit`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), email),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
		chromedp.Click(chromedp.CSS(`#signin-submit`)),
	)
	ctx, cancel := p.step()
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.WaitVisible(chromedp.CSS(`header nav`))); err != nil {
		p.t.Fatalf("signing in as %s: %v; the browser is at %s:\n%s", email, err, p.location(), p.text(`main`))
	}
	require.Equal(p.t, page, p.location(), "sign-in leads back to the page asked for")
}

// screenshot saves the viewport as name.png into dir.
func (p *person) screenshot(dir, name string) {
	p.t.Helper()
	p.run(chromedp.Sleep(150 * time.Millisecond))
	ctx, cancel := p.step()
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(p.t, err)
	require.Greater(p.t, len(png), 10_000, "a rendered page")
	require.NoError(p.t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

// TestConsoleInABrowser drives the console in headless Chromium: signing
// in, a backup's progress appearing without a reload, a ticket opened, a
// member refused an owner's page, a POST without the CSRF token refused,
// an expired session sent back to sign-in, and an operator replaying a
// dead letter that is then processed. It saves screenshots of the main
// pages into LEVQOR_CONSOLE_SCREENSHOTS (docs/console in the repository:
// `LEVQOR_CONSOLE_SCREENSHOTS=$PWD/docs/console go test -run
// TestConsoleInABrowser ./pkg/service/`), else into a temporary directory.
func TestConsoleInABrowser(t *testing.T) {
	chrome := chromium(t)
	t.Parallel()
	// An OpenID Connect provider, running in the test: it signs in
	// whoever the test queues.
	idp, err := mockoidc.Run()
	require.NoError(t, err)
	t.Cleanup(func() { _ = idp.Shutdown() })
	providers, err := json.Marshal([]map[string]string{{"name": "testidp", "label": "Test IdP", "issuer": idp.Issuer(),
		"client_id": idp.ClientID, "client_secret": idp.ClientSecret}})
	require.NoError(t, err)
	f := newConsoleFixture(t, map[string]string{"LEVQOR_OIDC_PROVIDERS": string(providers)})
	base := f.d.info.IngestURL
	shots := os.Getenv("LEVQOR_CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(shots, 0o755))

	ada := newPerson(t, chrome, base)
	ada.run(chromedp.Navigate(base + "/app/"))
	require.True(t, strings.HasPrefix(ada.location(), "/app/signin"), "signed out, the console asks to sign in")
	ada.screenshot(shots, "signin")
	ada.signIn("ada@ada.example", "ada's long passphrase", "/app/overview")
	require.Equal(t, "starter", ada.text(`#plan`))

	t.Run("ABackupsProgressShowsWithoutAReload", func(t *testing.T) {
		ada.run(chromedp.Navigate(base+"/app/sources/"+f.ada.source), chromedp.WaitVisible(chromedp.CSS(`#runs`)))
		require.Contains(t, ada.text(`#runs`), "No runs yet.")
		eval[int](ada, `window.levqorTestMarker = 42`)
		// The run is started elsewhere (an API key, the schedule): the page
		// learns of it by itself.
		status, body := f.c.do(t, "POST", "/v1/sources/"+f.ada.source+"/runs", nil)
		require.Equal(t, 202, status, string(body))
		ctx, cancel := ada.step()
		defer cancel()
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('#runs').innerText.includes('succeeded')`,
			chromedp.WithPollingTimeout(20*time.Second)))
		require.NoError(t, err, "the run's success shows on the page")
		require.Equal(t, 42, eval[int](ada, `window.levqorTestMarker || 0`), "the page was not reloaded")
		ada.screenshot(shots, "source")
	})

	t.Run("OpenATicket", func(t *testing.T) {
		ada.run(
			chromedp.Navigate(base+"/app/tickets"),
			chromedp.SendKeys(chromedp.CSS(`input[name=subject]`), "Restore the staging database"),
			chromedp.SendKeys(chromedp.CSS(`textarea[name=body]`), "We need last night's snapshot restored to staging."),
			chromedp.Click(chromedp.CSS(`#open-ticket`)),
			chromedp.WaitVisible(chromedp.CSS(`#ticket-status`)),
		)
		require.True(t, strings.HasPrefix(ada.location(), "/app/tickets/tkt_"), ada.location())
		require.Contains(t, ada.text(`h1`), "Restore the staging database")
		ada.screenshot(shots, "ticket")
		ada.run(chromedp.Navigate(base + "/app/overview"))
		require.Equal(t, "1", ada.text(`#open-tickets`))
		ada.screenshot(shots, "overview")
	})

	t.Run("APostWithoutTheCSRFTokenIsRefused", func(t *testing.T) {
		status := eval[int](ada, `fetch('/app/signout-everywhere', {method: 'POST', body: new URLSearchParams({})}).then(r => r.status)`)
		require.Equal(t, 403, status)
		ada.run(chromedp.Navigate(base + "/app/overview"))
		require.Equal(t, "/app/overview", ada.location(), "still signed in")
	})

	t.Run("AMemberIsRefusedOwnerPages", func(t *testing.T) {
		max := newPerson(t, chrome, base)
		max.signIn("max@ada.example", "max's long passphrase", "/app/overview")
		max.run(chromedp.Navigate(base + "/app/people"))
		require.Contains(t, max.text(`main`), "Your role does not open this page.")
		require.NotContains(t, max.text(`header nav`), "People", "the menu offers members no owner page")

		t.Run("AnExpiredSessionGoesBackToSignIn", func(t *testing.T) {
			u, err := f.st.UserByEmail(t.Context(), "max@ada.example")
			require.NoError(t, err)
			_, err = f.st.DB().ExecContext(t.Context(), `UPDATE user_sessions SET expires_at = ? WHERE user_id = ?`, time.Now().Add(-time.Minute).UTC(), u.ID)
			require.NoError(t, err)
			max.run(chromedp.Navigate(base + "/app/tickets"))
			require.Equal(t, "/app/signin?next=%2Fapp%2Ftickets", max.location())
		})
	})

	t.Run("AnOperatorReplaysADeadLetter", func(t *testing.T) {
		f.deadLetter(t)
		olga := newPerson(t, chrome, base)
		olga.signIn("ops@levqor.example", "olga's long passphrase", "/app/ops/status")
		olga.screenshot(shots, "status")
		olga.run(chromedp.Navigate(base+"/app/ops/dlq"), chromedp.WaitVisible(chromedp.CSS(`#dlq`)))
		require.Contains(t, olga.text(`#dlq`), "billing: database is locked")
		olga.screenshot(shots, "dead-letters")
		olga.run(
			chromedp.Click(chromedp.CSS(`#dlq tbody a`)),
			chromedp.WaitVisible(chromedp.CSS(`#replay`)),
			chromedp.SendKeys(chromedp.CSS(`form[action$="/replay"] input[name=note]`), "the database is back"),
			chromedp.Click(chromedp.CSS(`form[action$="/replay"] input[name=confirm]`)),
			chromedp.Click(chromedp.CSS(`#replay`)),
			chromedp.WaitVisible(chromedp.CSS(`#dlq-done`)),
		)
		require.Contains(t, olga.text(`#dlq-done`), "Replayed dead letter")
		require.Eventually(t, func() bool { return f.bobOnGrowth(t) }, 20*time.Second, 50*time.Millisecond, "the replayed event was processed")
		audit, err := f.st.ListAudit(t.Context(), store.ListAuditParams{Action: "dlq.replay"})
		require.NoError(t, err)
		require.Contains(t, string(audit[0].Params), "the database is back")
	})

	t.Run("SignInWithOpenIDConnect", func(t *testing.T) {
		viaIdP := func(user *mockoidc.MockUser) *person {
			idp.QueueUser(user)
			p := newPerson(t, chrome, base)
			p.run(
				chromedp.Navigate(base+"/app/tickets"),
				chromedp.WaitVisible(chromedp.CSS(`#oidc-testidp`)),
				chromedp.Click(chromedp.CSS(`#oidc-testidp`)),
				chromedp.WaitVisible(chromedp.CSS(`main h1`)),
			)
			return p
		}
		// Ada's email, verified by the provider: her user, no password asked.
		p := viaIdP(&mockoidc.MockUser{Subject: "ada-at-idp", Email: "ada@ada.example", EmailVerified: true})
		require.Equal(t, "/app/tickets", p.location(), "back to the page asked for")
		require.Contains(t, p.text(`header .who`), "Ada · owner")

		// An invited person joins through the provider: the invitation
		// makes their user, without a password.
		_, _, err := f.ppl.Invite(t.Context(), "nia@ada.example", store.RoleMember, f.ada.id, "user:test")
		require.NoError(t, err)
		p = viaIdP(&mockoidc.MockUser{Subject: "nia-at-idp", Email: "nia@ada.example", EmailVerified: true})
		require.Equal(t, "/app/tickets", p.location())
		nia, err := f.st.UserByEmail(t.Context(), "nia@ada.example")
		require.NoError(t, err)
		require.Equal(t, store.RoleMember, nia.Role)
		require.Empty(t, nia.PasswordHash)

		// Nobody else, and no unverified email.
		p = viaIdP(&mockoidc.MockUser{Subject: "eve", Email: "eve@elsewhere.example", EmailVerified: true})
		require.Contains(t, p.text(`#signin-error`), "no Levqor user has this email")
		p = viaIdP(&mockoidc.MockUser{Subject: "not-ada", Email: "ada@ada.example", EmailVerified: false})
		require.Contains(t, p.text(`#signin-error`), "has not verified the email")
		require.True(t, strings.HasPrefix(p.location(), "/app/oidc/testidp/callback"), "no session: the sign-in page, at the callback")
		p.run(chromedp.Navigate(base + "/app/overview"))
		require.True(t, strings.HasPrefix(p.location(), "/app/signin"), "not signed in")

		// A callback this browser did not start (a login CSRF: someone
		// else's code and state) signs nobody in.
		p.run(chromedp.Navigate(base + "/app/oidc/testidp/callback?code=someone-elses&state=theirs"))
		require.Contains(t, p.text(`#signin-error`), "did not start here")
	})

	t.Run("AnOperatorSuspendsAnAccount", func(t *testing.T) {
		acc := f.newAccount(t, "Dora Data Ltd")
		_, err := f.ppl.CreateUser(t.Context(), people.NewUser{Email: "dora@dora.example", Role: store.RoleOwner, AccountID: acc, Password: "dora's long passphrase"})
		require.NoError(t, err)
		olga := newPerson(t, chrome, base)
		olga.signIn("ops@levqor.example", "olga's long passphrase", "/app/ops/accounts/"+acc)
		olga.run(
			chromedp.SendKeys(chromedp.CSS(`form[action$="/suspend"] input[name=reason]`), "card payments disputed; please call us"),
			chromedp.Click(chromedp.CSS(`form[action$="/suspend"] input[name=confirm]`)),
			chromedp.Click(chromedp.CSS(`#suspend`)),
			chromedp.WaitVisible(chromedp.CSS(`#account-done`)),
		)
		require.Equal(t, "Suspended", olga.text(`#account-done`))
		require.Contains(t, olga.text(`#suspension`), "card payments disputed; please call us")
		olga.screenshot(shots, "account-suspended")

		dora := newPerson(t, chrome, base)
		dora.signIn("dora@dora.example", "dora's long passphrase", "/app/overview")
		require.Contains(t, dora.text(`#suspended`), "Levqor has suspended this account: card payments disputed; please call us")

		olga.run(
			chromedp.SendKeys(chromedp.CSS(`form[action$="/reinstate"] input[name=reason]`), "disputes withdrawn"),
			chromedp.Click(chromedp.CSS(`form[action$="/reinstate"] input[name=confirm]`)),
			chromedp.Click(chromedp.CSS(`#reinstate`)),
			chromedp.WaitVisible(chromedp.CSS(`#account-done`)),
		)
		require.Equal(t, "Suspension lifted", olga.text(`#account-done`))
		dora.run(chromedp.Navigate(base+"/app/overview"), chromedp.WaitVisible(chromedp.CSS(`#plan`)))
		require.False(t, eval[bool](dora, `document.getElementById("suspended") !== null`), "the banner is gone")
	})

	t.Run("OnAPhone", func(t *testing.T) {
		ada.run(
			chromedp.EmulateViewport(390, 844),
			chromedp.Navigate(base+"/app/overview"),
			chromedp.WaitVisible(chromedp.CSS(`#plan`)),
		)
		require.False(t, eval[bool](ada, `document.documentElement.scrollWidth > window.innerWidth + 1`), "nothing is wider than a phone's screen")
		ada.screenshot(shots, "overview-phone")
	})
}
