package console

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/sirupsen/logrus"
	"golang.org/x/oauth2"

	"github.com/levqor/levqor/pkg/people"
)

// OIDCProvider is an OpenID Connect issuer people may sign in with
// (LEVQOR_OIDC_PROVIDERS): Google and Microsoft are two such issuers.
type OIDCProvider struct {
	// Name is the provider's short name, in its URLs (/app/oidc/<name>).
	Name string `json:"name"`
	// Label is what the sign-in button says ("Google"); Name when empty.
	Label        string `json:"label,omitempty"`
	Issuer       string `json:"issuer"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

var providerName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// ParseOIDCProviders reads LEVQOR_OIDC_PROVIDERS: a JSON array of
// providers. Each needs a name (lower-case letters, digits, dashes), an
// https issuer (http only on the loopback interface), a client id and a
// client secret.
func ParseOIDCProviders(s string) ([]OIDCProvider, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var ps []OIDCProvider
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ps); err != nil {
		return nil, fmt.Errorf("not a JSON array of providers ({\"name\", \"issuer\", \"client_id\", \"client_secret\"}): %w", err)
	}
	seen := map[string]bool{}
	for i, p := range ps {
		u, err := url.Parse(p.Issuer)
		loopback := err == nil && (u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost" || u.Hostname() == "::1")
		switch {
		case !providerName.MatchString(p.Name):
			return nil, fmt.Errorf("[%d].name %q: lower-case letters, digits and dashes, starting with a letter", i, p.Name)
		case seen[p.Name]:
			return nil, fmt.Errorf("[%d].name %q: given twice", i, p.Name)
		case err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && loopback)):
			return nil, fmt.Errorf("[%d].issuer %q: want an https URL", i, p.Issuer)
		case p.ClientID == "" || p.ClientSecret == "":
			return nil, fmt.Errorf("[%d] (%s): client_id and client_secret are required", i, p.Name)
		}
		seen[p.Name] = true
	}
	return ps, nil
}

// oidcCookie carries a sign-in in flight from the redirect to the
// provider to its callback: the state (checked against the callback's),
// the nonce (checked against the ID token's) and the PKCE verifier.
const oidcCookie = "levqor_oidc"

type oidcFlight struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"x"`
}

// oidcClient is a provider discovered and ready.
type oidcClient struct {
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
}

// oidcClients discovers each provider on first use and keeps it.
type oidcClients struct {
	mu      sync.Mutex
	clients map[string]*oidcClient
}

func (c *Console) oidcProvider(name string) (OIDCProvider, bool) {
	for _, p := range c.cfg.OIDC {
		if p.Name == name {
			return p, true
		}
	}
	return OIDCProvider{}, false
}

func (c *Console) oidcClient(ctx context.Context, p OIDCProvider) (*oidcClient, error) {
	c.oidc.mu.Lock()
	defer c.oidc.mu.Unlock()
	if cl := c.oidc.clients[p.Name]; cl != nil {
		return cl, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	prov, err := oidc.NewProvider(ctx, p.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discovering %s: %w", p.Issuer, err)
	}
	cl := &oidcClient{provider: prov, verifier: prov.Verifier(&oidc.Config{ClientID: p.ClientID})}
	if c.oidc.clients == nil {
		c.oidc.clients = map[string]*oidcClient{}
	}
	c.oidc.clients[p.Name] = cl
	return cl, nil
}

func (c *Console) oauthConfig(r *http.Request, p OIDCProvider, cl *oidcClient) *oauth2.Config {
	return &oauth2.Config{ClientID: p.ClientID, ClientSecret: p.ClientSecret, Endpoint: cl.provider.Endpoint(),
		RedirectURL: c.publicURL(r) + Path + "oidc/" + p.Name + "/callback", Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}
}

// oidcStart sends the browser to the provider.
func (c *Console) oidcStart(w http.ResponseWriter, r *http.Request) {
	p, ok := c.oidcProvider(r.PathValue("name"))
	if !ok {
		c.fail(w, r, nil, http.StatusNotFound, "There is nothing here.")
		return
	}
	cl, err := c.oidcClient(r.Context(), p)
	if err != nil {
		c.fail(w, r, err, http.StatusBadGateway, "Signing in with "+label(p)+" is unavailable now; try again shortly, or sign in with your password.")
		return
	}
	var f oidcFlight
	for _, v := range []*string{&f.State, &f.Nonce} {
		if *v, err = randomToken(); err != nil {
			c.fail(w, r, err, http.StatusInternalServerError, "The console could not start a sign-in.")
			return
		}
	}
	f.Verifier, f.Next = oauth2.GenerateVerifier(), localNext(r.URL.Query().Get("next"))
	raw, _ := json.Marshal(f)
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: base64.RawURLEncoding.EncodeToString(raw), Path: Path + "oidc/",
		HttpOnly: true, Secure: !c.cfg.Insecure, SameSite: http.SameSiteLaxMode, MaxAge: 600})
	http.Redirect(w, r, c.oauthConfig(r, p, cl).AuthCodeURL(f.State, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)), http.StatusFound)
}

// oidcCallback finishes a sign-in: the state must be the browser's own,
// the ID token the provider's, for this client, with this nonce, and its
// email verified; that email names the user (or a pending invitation).
func (c *Console) oidcCallback(w http.ResponseWriter, r *http.Request) {
	p, ok := c.oidcProvider(r.PathValue("name"))
	if !ok {
		c.fail(w, r, nil, http.StatusNotFound, "There is nothing here.")
		return
	}
	refuse := func(status int, err error, message string) {
		http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: Path + "oidc/", MaxAge: -1})
		if err != nil {
			c.log.WithFields(logrus.Fields{"provider": p.Name, "error": err.Error()}).Warn("sign-in through an identity provider refused")
		}
		c.renderSignin(w, r, status, "", "", message)
	}
	var f oidcFlight
	ck, err := r.Cookie(oidcCookie)
	if err == nil {
		var raw []byte
		if raw, err = base64.RawURLEncoding.DecodeString(ck.Value); err == nil {
			err = json.Unmarshal(raw, &f)
		}
	}
	q := r.URL.Query()
	switch {
	case err != nil || f.State == "" || q.Get("state") != f.State:
		refuse(http.StatusBadRequest, err, "This sign-in did not start here, or took too long. Try again.")
		return
	case q.Get("error") != "":
		refuse(http.StatusUnauthorized, errors.New(q.Get("error")+": "+q.Get("error_description")), label(p)+" did not sign you in. Try again.")
		return
	}
	cl, err := c.oidcClient(r.Context(), p)
	if err != nil {
		refuse(http.StatusBadGateway, err, "Signing in with "+label(p)+" is unavailable now; try again shortly.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	tok, err := c.oauthConfig(r, p, cl).Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.Verifier))
	if err != nil {
		refuse(http.StatusUnauthorized, err, label(p)+" did not confirm the sign-in. Try again.")
		return
	}
	rawID, _ := tok.Extra("id_token").(string)
	id, err := cl.verifier.Verify(ctx, rawID)
	if err != nil || id.Nonce != f.Nonce {
		if err == nil {
			err = errors.New("the ID token's nonce is not this sign-in's")
		}
		refuse(http.StatusUnauthorized, err, label(p)+" did not confirm the sign-in. Try again.")
		return
	}
	var claims struct {
		Email    string `json:"email"`
		Verified *bool  `json:"email_verified"`
		Name     string `json:"name"`
	}
	if err := id.Claims(&claims); err != nil || claims.Email == "" {
		refuse(http.StatusUnauthorized, err, label(p)+" did not give an email address.")
		return
	}
	// Only an email the provider says it verified: an unverified one
	// (which some issuers let any tenant set) would let anyone claim it.
	if claims.Verified == nil || !*claims.Verified {
		refuse(http.StatusUnauthorized, nil, label(p)+" has not verified the email "+claims.Email+": verify it there, or sign in with your password.")
		return
	}
	secret, u, err := c.people.SignInVerified(r.Context(), people.Identity{Issuer: id.Issuer, Subject: id.Subject, Email: claims.Email, Name: claims.Name},
		c.clientAddr(r), r.UserAgent())
	switch {
	case errors.Is(err, people.ErrNoUser), errors.Is(err, people.ErrOtherIdentity), errors.Is(err, people.ErrSeveralInvitations):
		refuse(http.StatusForbidden, nil, claims.Email+": "+err.Error()+".")
		return
	case err != nil:
		c.fail(w, r, err, http.StatusServiceUnavailable, "Sign-in is unavailable; try again shortly.")
		return
	}
	c.log.WithFields(logrus.Fields{"user_id": u.ID, "role": u.Role, "provider": p.Name}).Info("signed in")
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: Path + "oidc/", MaxAge: -1})
	c.setSession(w, secret)
	http.Redirect(w, r, localNext(f.Next), http.StatusSeeOther)
}

func label(p OIDCProvider) string {
	if p.Label != "" {
		return p.Label
	}
	return p.Name
}
