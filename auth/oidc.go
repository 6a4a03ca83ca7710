package auth

import (
	"context"
	"crypto/subtle"
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
	"golang.org/x/oauth2"

	"github.com/streamd/streamd/store"
)

// OIDC login: any OpenID Connect provider configured by issuer, client id
// and secret (Google, Microsoft, Keycloak, Auth0, Facebook's OIDC, …).
//
// The flow is the authorization code flow with PKCE (S256), a state and a
// nonce. The state, the nonce and the PKCE verifier are kept in the
// sessions store under the state's hash, for StateTTL, and are single-use
// (an atomic INCR marks them used, as for refresh tokens): the verifier and
// nonce never leave the server, a replayed callback is refused even across
// processes sharing Redis, and no new key has to be configured and shared,
// as a signed cookie would need. The API also sets the state in a cookie
// for the browser that started the login and requires it back at the
// callback, so that a callback URL obtained by someone else (login CSRF:
// logging a victim into the attacker's account) is refused.

// OIDCProvider is one configured provider.
type OIDCProvider struct {
	// Name is the {name} of /api/auth/oidc/{name}/…: 1–32 of a-z, 0-9,
	// '-', '_'.
	Name         string
	Issuer       string // as in its ID tokens; discovery at Issuer/.well-known/openid-configuration
	ClientID     string
	ClientSecret string
	// RedirectURL is this server's callback as registered at the provider:
	// https://HOST/api/auth/oidc/{name}/callback.
	RedirectURL string
	// Scopes asked for; "openid" is always added (default openid, email,
	// profile).
	Scopes []string
}

// OIDCConfig configures OIDC login.
type OIDCConfig struct {
	Providers []OIDCProvider
	// StateTTL is how long a started login may take (default 10 min).
	StateTTL time.Duration
	// HTTPClient talks to the providers (default: a 10 s timeout).
	HTTPClient *http.Client
}

// OIDC is OpenID Connect login on top of a Service.
type OIDC struct {
	svc       *Service
	ttl       time.Duration
	client    *http.Client
	names     []string
	providers map[string]*oidcProvider
}

type oidcProvider struct {
	cfg OIDCProvider

	mu       sync.Mutex // guards the fields below, set by the first discovery
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier
}

var providerName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// NewOIDC checks the providers' settings. It does not contact them: each
// is discovered on its first login, so a provider that is down at start
// costs only its own logins.
func (s *Service) NewOIDC(cfg OIDCConfig) (*OIDC, error) {
	if cfg.StateTTL <= 0 {
		cfg.StateTTL = 10 * time.Minute
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	o := &OIDC{svc: s, ttl: cfg.StateTTL, client: cfg.HTTPClient, providers: map[string]*oidcProvider{}}
	for _, p := range cfg.Providers {
		switch {
		case !providerName.MatchString(p.Name):
			return nil, fmt.Errorf("oidc provider %q: name must be 1-32 of a-z, 0-9, - and _", p.Name)
		case o.providers[p.Name] != nil:
			return nil, fmt.Errorf("oidc provider %q: configured twice", p.Name)
		case p.Issuer == "" || p.ClientID == "" || p.RedirectURL == "":
			return nil, fmt.Errorf("oidc provider %q: issuer, client_id and redirect_url are required", p.Name)
		}
		if len(p.Scopes) == 0 {
			p.Scopes = []string{"email", "profile"}
		}
		if !containsStr(p.Scopes, oidc.ScopeOpenID) {
			p.Scopes = append([]string{oidc.ScopeOpenID}, p.Scopes...)
		}
		o.providers[p.Name] = &oidcProvider{cfg: p}
		o.names = append(o.names, p.Name)
	}
	return o, nil
}

func containsStr(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Providers returns the configured provider names, in config order.
func (o *OIDC) Providers() []string { return append([]string(nil), o.names...) }

func (o *OIDC) provider(name string) (*oidcProvider, error) {
	p := o.providers[name]
	if p == nil {
		return nil, errorf(CodeNotFound, "no such login provider")
	}
	return p, nil
}

// discover returns the provider's OAuth2 config and ID token verifier,
// fetching its discovery document the first time.
func (o *OIDC) discover(ctx context.Context, p *oidcProvider) (*oauth2.Config, *oidc.IDTokenVerifier, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.oauth != nil {
		return p.oauth, p.verifier, nil
	}
	prov, err := oidc.NewProvider(oidc.ClientContext(ctx, o.client), p.cfg.Issuer)
	if err != nil {
		return nil, nil, &Error{Code: CodeUnavailable, Message: "the login provider cannot be reached; try again later",
			Err: fmt.Errorf("oidc provider %s: discovery: %w", p.cfg.Name, err)}
	}
	p.oauth = &oauth2.Config{ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret, RedirectURL: p.cfg.RedirectURL,
		Endpoint: prov.Endpoint(), Scopes: p.cfg.Scopes}
	// The verifier checks the signature (keys from the provider's JWKS,
	// algorithms it announces), issuer, audience (our client id) and
	// expiry; the nonce is checked by Callback.
	p.verifier = prov.Verifier(&oidc.Config{ClientID: p.cfg.ClientID, Now: o.svc.now})
	return p.oauth, p.verifier, nil
}

// OIDCStart is a started login: send the browser to URL, with State in a
// cookie (Secure when the callback is https) that lives TTL.
type OIDCStart struct {
	URL    string
	State  string
	TTL    time.Duration
	Secure bool
}

// oidcState is the value of auth:oidc_state:{hash of the state}.
type oidcState struct {
	Provider string `json:"p"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
}

func oidcStateKey(state string) string { return "auth:oidc_state:" + tokenKey(state) }

// Start begins a login with provider name.
func (o *OIDC) Start(ctx context.Context, name string) (OIDCStart, error) {
	p, err := o.provider(name)
	if err != nil {
		return OIDCStart{}, err
	}
	oc, _, err := o.discover(ctx, p)
	if err != nil {
		return OIDCStart{}, err
	}
	state, nonce, verifier := randomToken(), randomToken(), oauth2.GenerateVerifier()
	b, _ := json.Marshal(oidcState{Provider: name, Nonce: nonce, Verifier: verifier})
	if err := o.svc.sessions.Set(ctx, oidcStateKey(state), b, o.ttl); err != nil {
		return OIDCStart{}, o.svc.storeErr(err)
	}
	u := oc.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
	return OIDCStart{URL: u, State: state, TTL: o.ttl, Secure: strings.HasPrefix(p.cfg.RedirectURL, "https://")}, nil
}

func errBadState() *Error {
	return errorf(CodeInvalidArgument, "unknown, expired or already used login state; start the login again")
}

func errOIDC(msg string, cause error) *Error {
	return &Error{Code: CodeUnauthenticated, Message: msg, Err: cause}
}

// idClaims are the ID token claims a login uses.
type idClaims struct {
	Email             string          `json:"email"`
	EmailVerified     json.RawMessage `json:"email_verified"` // true, or "true" from some providers
	PreferredUsername string          `json:"preferred_username"`
	Nickname          string          `json:"nickname"`
}

func (c idClaims) verified() bool {
	v := strings.Trim(string(c.EmailVerified), `"`)
	return v == "true"
}

// Callback finishes a login: it consumes the state (once), exchanges the
// code (with the PKCE verifier), verifies the ID token and its nonce, and
// logs in the user linked to the provider's (issuer, subject) — linking, on
// the first login, the user whose email the provider says is verified, or
// creating a viewer. providerError is the callback's error parameter (the
// user refused, …). Nothing is created unless everything checks out.
func (o *OIDC) Callback(ctx context.Context, name, state, code, providerError string) (LoginResult, error) {
	p, err := o.provider(name)
	if err != nil {
		return LoginResult{}, err
	}
	if state == "" || len(state) > 256 {
		return LoginResult{}, errBadState()
	}
	sessions := o.svc.sessions
	b, err := sessions.Get(ctx, oidcStateKey(state))
	if isNotFound(err) {
		return LoginResult{}, errBadState()
	}
	if err != nil {
		return LoginResult{}, o.svc.storeErr(err)
	}
	var st oidcState
	if json.Unmarshal(b, &st) != nil || st.Provider != name {
		return LoginResult{}, errBadState()
	}
	n, err := sessions.Incr(ctx, "auth:oidc_state_used:"+tokenKey(state), o.ttl)
	if err != nil {
		return LoginResult{}, o.svc.storeErr(err)
	}
	if n > 1 {
		o.svc.log.Warn("OIDC login state used again: refused", "provider", name)
		return LoginResult{}, errBadState()
	}
	if err := sessions.Delete(ctx, oidcStateKey(state)); err != nil {
		return LoginResult{}, o.svc.storeErr(err)
	}
	if providerError != "" {
		o.svc.log.Info("OIDC login refused by the provider", "provider", name, "error", clip(providerError, 64))
		return LoginResult{}, errOIDC("the login provider did not log you in", nil)
	}
	if code == "" || len(code) > 4096 {
		return LoginResult{}, errorf(CodeInvalidArgument, "the callback has no authorization code")
	}
	oc, verifier, err := o.discover(ctx, p)
	if err != nil {
		return LoginResult{}, err
	}
	tok, err := oc.Exchange(oidc.ClientContext(ctx, o.client), code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			// Not re's text: it quotes the provider's answer.
			err = fmt.Errorf("token endpoint answered %d %s", re.Response.StatusCode, clip(re.ErrorCode, 64))
		}
		o.svc.log.Info("OIDC code exchange failed", "provider", name, "err", err)
		return LoginResult{}, errOIDC("the login provider did not accept the login", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return LoginResult{}, errOIDC("the login provider sent no ID token", nil)
	}
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		o.svc.log.Warn("OIDC ID token refused", "provider", name, "err", err)
		return LoginResult{}, errOIDC("the login provider's ID token is not valid", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		o.svc.log.Warn("OIDC ID token with a wrong nonce refused", "provider", name)
		return LoginResult{}, errOIDC("the login provider's ID token is not valid", errors.New("nonce mismatch"))
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil || idt.Subject == "" {
		return LoginResult{}, errOIDC("the login provider's ID token is not valid", err)
	}
	u, err := o.svc.userForIdentity(ctx, p.cfg.Name, idt.Issuer, idt.Subject, c)
	if err != nil {
		return LoginResult{}, err
	}
	return o.svc.finishLogin(ctx, u)
}

func clip(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "?")
}

// userForIdentity finds the user linked to (issuer, subject), or links the
// user with the provider's verified email, or creates a viewer. An email
// the provider does not say is verified is never used: not to link (that
// would hand an account to whoever typed its address at some provider),
// and not to create (that would squat the address).
func (s *Service) userForIdentity(ctx context.Context, provider, issuer, subject string, c idClaims) (store.User, error) {
	for attempt := 0; ; attempt++ {
		u, err := s.users.UserByIdentity(ctx, issuer, subject)
		if err == nil {
			return u, nil
		}
		if !isNotFound(err) {
			return store.User{}, s.storeErr(err)
		}
		if c.Email == "" || !c.verified() || CheckEmail(c.Email) != nil {
			return store.User{}, errorf(CodePermissionDenied, "the login provider did not give a verified email address; "+
				"verify it there, or register with a password")
		}
		u, err = s.users.UserByLogin(ctx, c.Email)
		switch {
		case err == nil && strings.EqualFold(u.Email, c.Email):
			// An existing account: link it.
		case err == nil || isNotFound(err):
			u, err = s.users.CreateUser(ctx, store.User{Email: c.Email, Username: usernameFor(c, attempt),
				Role: store.RoleViewer})
			if errors.Is(err, store.ErrConflict) && attempt < 4 {
				continue // a concurrent login took the email, or the name is taken
			}
			if err != nil {
				return store.User{}, s.storeErr(err)
			}
			s.log.Info("user created by OIDC login", "user", u.ID, "provider", provider)
		default:
			return store.User{}, s.storeErr(err)
		}
		_, err = s.users.LinkIdentity(ctx, store.Identity{Issuer: issuer, Subject: subject, UserID: u.ID})
		if errors.Is(err, store.ErrConflict) && attempt < 4 {
			continue // a concurrent login linked it: use that
		}
		if err != nil {
			return store.User{}, s.storeErr(err)
		}
		s.log.Info("OIDC identity linked", "user", u.ID, "provider", provider)
		return u, nil
	}
}

// usernameFor derives a username (CheckUsername's rules) from the
// provider's preferred username or the email's local part; after a
// conflict, a random suffix is added.
func usernameFor(c idClaims, attempt int) string {
	base := c.PreferredUsername
	if base == "" {
		base = c.Nickname
	}
	if base == "" || strings.Contains(base, "@") {
		base, _, _ = strings.Cut(c.Email, "@")
	}
	var b strings.Builder
	for _, r := range base {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case (r == '.' || r == '_' || r == '-') && b.Len() > 0:
			b.WriteRune(r)
		}
		if b.Len() >= 24 {
			break
		}
	}
	name := b.String()
	if len(name) < 3 {
		name = "user" + name
	}
	if attempt > 0 {
		name += "-" + randomToken()[:6]
		name = strings.Map(func(r rune) rune {
			if r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
				return r
			}
			return 'x'
		}, name)
	}
	return name
}

// ValidRedirect reports whether s is an absolute http(s) URL (for config
// checks of redirect and post-login URLs).
func ValidRedirect(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.Fragment == ""
}
