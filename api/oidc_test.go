package api_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	neturl "net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pquerna/otp/totp"

	"github.com/streamd/streamd/api"
	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/store"
)

// idp is a small OpenID Connect provider: discovery, JWKS with an RSA
// key, /authorize that redirects straight back with a code (the user
// "logs in" as idp.user), and /token that checks the client, the redirect
// URI and PKCE, and returns an ID token signed by its key.
type idp struct {
	t            *testing.T
	srv          *httptest.Server
	key          *rsa.PrivateKey
	clientID     string
	clientSecret string

	mu    sync.Mutex
	codes map[string]idpCode
	// The next logins: who, and what to do to the ID token.
	sub, email  string
	verified    any // email_verified claim; nil leaves it out
	refuse      bool
	mutate      func(jwt.MapClaims)
	signWith    *rsa.PrivateKey // nil: key
	tokenCalls  int
	pkceFailure bool
}

type idpCode struct {
	nonce, challenge, redirect string
}

var rsaKeys = sync.OnceValues(func() (*rsa.PrivateKey, *rsa.PrivateKey) {
	a, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	b, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return a, b
})

func newIDP(t *testing.T) *idp {
	key, _ := rsaKeys()
	p := &idp{t: t, key: key, clientID: "streamd-test-client", clientSecret: "idp-client-secret-" + store.NewID(),
		codes: map[string]idpCode{}, sub: "sub-1", email: "oidc-user@example.com", verified: true}
	mux := http.NewServeMux()
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": p.srv.URL, "authorization_endpoint": p.srv.URL + "/authorize", "token_endpoint": p.srv.URL + "/token",
			"jwks_uri": p.srv.URL + "/jwks", "response_types_supported": []string{"code"},
			"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"RS256"},
			"code_challenge_methods_supported": []string{"S256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]any{
			"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
			"n": b64(p.key.N.Bytes()), "e": b64(big.NewInt(int64(p.key.E)).Bytes()),
		}}})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("client_id") != p.clientID || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" ||
			q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" || !strings.Contains(q.Get("scope"), "openid") {
			t.Errorf("authorize request lacks something: %s", r.URL.RawQuery)
			http.Error(w, "bad request", 400)
			return
		}
		back, _ := neturl.Parse(q.Get("redirect_uri"))
		v := back.Query()
		v.Set("state", q.Get("state"))
		p.mu.Lock()
		if p.refuse {
			v.Set("error", "access_denied")
		} else {
			code := store.NewID()
			p.codes[code] = idpCode{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
			v.Set("code", code)
		}
		p.mu.Unlock()
		back.RawQuery = v.Encode()
		http.Redirect(w, r, back.String(), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		fail := func(code string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
		}
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
		} else {
			id, _ = neturl.QueryUnescape(id)
			secret, _ = neturl.QueryUnescape(secret)
		}
		if id != p.clientID || secret != p.clientSecret {
			fail("invalid_client")
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		p.tokenCalls++
		c, ok := p.codes[r.PostFormValue("code")]
		delete(p.codes, r.PostFormValue("code"))
		if !ok || r.PostFormValue("grant_type") != "authorization_code" || r.PostFormValue("redirect_uri") != c.redirect {
			fail("invalid_grant")
			return
		}
		sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
		if base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
			p.pkceFailure = true
			fail("invalid_grant")
			return
		}
		now := time.Now()
		claims := jwt.MapClaims{"iss": p.srv.URL, "sub": p.sub, "aud": p.clientID, "iat": now.Unix(),
			"exp": now.Add(5 * time.Minute).Unix(), "nonce": c.nonce, "email": p.email, "preferred_username": "Oidc.User"}
		if p.verified != nil {
			claims["email_verified"] = p.verified
		}
		if p.mutate != nil {
			p.mutate(claims)
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
		tok.Header["kid"] = "k1"
		signer := p.key
		if p.signWith != nil {
			signer = p.signWith
		}
		idt, err := tok.SignedString(signer)
		if err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "idp-access-" + store.NewID(), "token_type": "Bearer",
			"expires_in": 3600, "id_token": idt})
	})
	return p
}

func (p *idp) set(f func(p *idp)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

// oidcEnv is an API with the provider "test" configured against idp.
func oidcEnv(t *testing.T, open backend, postLogin string) (*env, *idp) {
	p := newIDP(t)
	e := newEnvWith(t, open, api.Limits{}, auth.Config{}, func(e *env, d *api.Deps) {
		o, err := e.svc.NewOIDC(auth.OIDCConfig{Providers: []auth.OIDCProvider{{
			Name: "test", Issuer: p.srv.URL, ClientID: p.clientID, ClientSecret: p.clientSecret,
			RedirectURL: e.url + "/api/auth/oidc/test/callback",
		}}})
		if err != nil {
			t.Fatal(err)
		}
		d.OIDC, d.OIDCPostLoginURL = o, postLogin
	})
	e.secrets = append(e.secrets, p.clientSecret)
	return e, p
}

// browser is a client with cookies that does not follow redirects.
func browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (e *env) get(c *http.Client, u string) resp {
	e.t.Helper()
	res, err := c.Get(u)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 500 && res.StatusCode != 503 {
		e.t.Errorf("GET %s: %d %s", u, res.StatusCode, b)
	}
	return resp{res.StatusCode, res.Header, b}
}

// oidcRedirects runs the browser through start and the provider, and
// returns the callback URL the provider sent it to (not yet visited).
func (e *env) oidcRedirects(c *http.Client) string {
	e.t.Helper()
	r := e.get(c, e.url+"/api/auth/oidc/test/start")
	if r.status != http.StatusFound {
		e.t.Fatalf("start: %d %s", r.status, r.body)
	}
	r = e.get(c, r.header.Get("Location"))
	if r.status != http.StatusFound {
		e.t.Fatalf("authorize: %d %s", r.status, r.body)
	}
	cb := r.header.Get("Location")
	if u, err := neturl.Parse(cb); err == nil {
		e.secrets = append(e.secrets, u.Query().Get("code"), u.Query().Get("state"))
	}
	return cb
}

// oidcLogin is a whole login; it returns the callback's answer.
func (e *env) oidcLogin(c *http.Client) resp {
	e.t.Helper()
	r := e.get(c, e.oidcRedirects(c))
	if r.status == 200 {
		m := r.json(e.t)
		if at, ok := m["access_token"].(string); ok {
			e.secrets = append(e.secrets, at, m["refresh_token"].(string))
		}
	}
	return r
}

func (e *env) userCount() int {
	e.t.Helper()
	us, err := e.meta.ListUsers(context.Background(), "", 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	return len(us)
}

func TestOIDC(t *testing.T) {
	for name, open := range backends {
		t.Run(name, func(t *testing.T) { testOIDC(t, open) })
	}
}

func testOIDC(t *testing.T, open backend) {
	ctx := context.Background()
	t.Run("Login", func(t *testing.T) {
		e, p := oidcEnv(t, open, "")
		list := e.want(e.do("GET", "/api/auth/oidc", "", nil), 200, "providers").json(t)
		if ps := list["providers"].([]any); len(ps) != 1 || ps[0].(map[string]any)["start_url"] != "/api/auth/oidc/test/start" {
			t.Fatalf("providers: %v", list)
		}
		// start: a redirect with state, nonce and PKCE, and the state cookie.
		c := browser(t)
		r := e.get(c, e.url+"/api/auth/oidc/test/start")
		loc, _ := neturl.Parse(r.header.Get("Location"))
		q := loc.Query()
		if r.status != 302 || !strings.HasPrefix(loc.String(), p.srv.URL+"/authorize?") || q.Get("code_challenge_method") != "S256" ||
			q.Get("nonce") == "" || len(q.Get("state")) < 32 || q.Get("redirect_uri") != e.url+"/api/auth/oidc/test/callback" {
			t.Fatalf("start: %d %s", r.status, loc)
		}
		ck := r.header.Get("Set-Cookie")
		if !strings.Contains(ck, "streamd_oidc_state="+q.Get("state")) || !strings.Contains(ck, "HttpOnly") ||
			!strings.Contains(ck, "SameSite=Lax") || !strings.Contains(ck, "Path=/api/auth/oidc/test/") {
			t.Fatalf("state cookie: %s", ck)
		}
		e.secrets = append(e.secrets, q.Get("state"))

		// First login creates a viewer with the provider's verified email.
		before := e.userCount()
		m := e.want(e.oidcLogin(browser(t)), 200, "first login").json(t)
		if m["token_type"] != "Bearer" || m["expires_in"] != float64(900) || m["refresh_token"] == "" {
			t.Fatalf("login answer: %v", m)
		}
		me := e.want(e.do("GET", "/api/users/me", m["access_token"].(string), nil), 200, "me").json(t)
		if me["email"] != p.email || me["role"] != "viewer" || me["tier"] != "free" || e.userCount() != before+1 {
			t.Fatalf("created user: %v", me)
		}
		if u, err := e.meta.UserByIdentity(ctx, p.srv.URL, "sub-1"); err != nil || u.ID != me["id"] {
			t.Fatalf("identity not linked: %v", err)
		}
		// Second login: the same user.
		m2 := e.want(e.oidcLogin(browser(t)), 200, "second login").json(t)
		me2 := e.want(e.do("GET", "/api/users/me", m2["access_token"].(string), nil), 200, "me").json(t)
		if me2["id"] != me["id"] || e.userCount() != before+1 {
			t.Fatalf("second login: %v", me2)
		}
		// The refresh token works like a password login's.
		e.want(e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": m2["refresh_token"].(string)}), 200, "refresh")
		// The account has no password: nothing logs in with one.
		e.want(e.do("POST", "/api/auth/login", "", map[string]string{"email": p.email, "password": ""}), 401, "empty password")
		e.want(e.do("POST", "/api/auth/login", "", map[string]string{"email": p.email, "password": "any long password"}), 401, "a password")

		// An existing account with the same (verified) email is linked.
		a := e.register(store.RoleViewer)
		p.set(func(p *idp) { p.sub, p.email = "sub-2", strings.ToUpper(a.email) })
		m3 := e.want(e.oidcLogin(browser(t)), 200, "login linking by email").json(t)
		me3 := e.want(e.do("GET", "/api/users/me", m3["access_token"].(string), nil), 200, "me").json(t)
		if me3["id"] != a.id {
			t.Fatalf("not linked to the existing account: %v", me3)
		}
		e.login(a) // the password still works

		// A new user whose preferred username is taken gets another one.
		p.set(func(p *idp) { p.sub, p.email = "sub-3", "other@example.com" })
		m4 := e.want(e.oidcLogin(browser(t)), 200, "name taken").json(t)
		me4 := e.want(e.do("GET", "/api/users/me", m4["access_token"].(string), nil), 200, "me").json(t)
		if me4["username"] == me["username"] || me4["email"] != "other@example.com" {
			t.Fatalf("second new user: %v / %v", me4, me)
		}
		e.want(e.do("GET", "/api/auth/oidc/nope/start", "", nil), 404, "unknown provider")
	})

	t.Run("Refused", func(t *testing.T) {
		e, p := oidcEnv(t, open, "")
		victim := e.register(store.RoleViewer)
		before := e.userCount()
		nothing := func(what string) {
			t.Helper()
			if n := e.userCount(); n != before {
				t.Errorf("%s: %d users, want %d", what, n, before)
			}
			if _, err := e.meta.UserByIdentity(ctx, p.srv.URL, "sub-1"); err == nil {
				t.Errorf("%s: identity linked", what)
			}
		}
		// Wrong state: another value than the browser's cookie…
		c := browser(t)
		cb, _ := neturl.Parse(e.oidcRedirects(c))
		q := cb.Query()
		q.Set("state", "forged-"+q.Get("state"))
		wrong := *cb
		wrong.RawQuery = q.Encode()
		e.want(e.get(c, wrong.String()), 400, "wrong state")
		nothing("wrong state")
		// … or one the server never issued (with a matching cookie).
		c = browser(t)
		cb, _ = neturl.Parse(e.oidcRedirects(c))
		q = cb.Query()
		q.Set("state", "never-issued-state")
		forged := *cb
		forged.RawQuery = q.Encode()
		base, _ := neturl.Parse(e.url + "/api/auth/oidc/test/")
		c.Jar.SetCookies(base, []*http.Cookie{{Name: "streamd_oidc_state", Value: "never-issued-state", Path: "/api/auth/oidc/test/"}})
		e.want(e.get(c, forged.String()), 400, "unknown state")
		nothing("unknown state")
		// A callback without the cookie (another browser: login CSRF).
		cbURL := e.oidcRedirects(browser(t))
		e.want(e.get(browser(t), cbURL), 400, "callback in another browser")
		nothing("no cookie")

		// Replayed state: a completed callback presented again.
		p.set(func(p *idp) { p.sub = "sub-replay"; p.email = "replay@example.com" })
		c = browser(t)
		cbURL = e.oidcRedirects(c)
		e.want(e.get(c, cbURL), 200, "login")
		u, _ := neturl.Parse(cbURL)
		c.Jar.SetCookies(base, []*http.Cookie{{Name: "streamd_oidc_state", Value: u.Query().Get("state"), Path: "/api/auth/oidc/test/"}})
		e.want(e.get(c, cbURL), 400, "replayed state")
		before = e.userCount()
		p.set(func(p *idp) { p.sub = "sub-1"; p.email = "oidc-user@example.com" })

		for _, tc := range []struct {
			name   string
			f      func(p *idp)
			status int
			reason string // in the log (or the answer): refused for this reason
		}{
			{"wrong nonce", func(p *idp) { p.mutate = func(c jwt.MapClaims) { c["nonce"] = "another-nonce" } }, 401, "wrong nonce"},
			{"no nonce", func(p *idp) { p.mutate = func(c jwt.MapClaims) { delete(c, "nonce") } }, 401, "wrong nonce"},
			{"wrong audience", func(p *idp) { p.mutate = func(c jwt.MapClaims) { c["aud"] = "another-client" } }, 401, "expected audience"},
			{"expired", func(p *idp) {
				p.mutate = func(c jwt.MapClaims) {
					c["exp"] = time.Now().Add(-time.Minute).Unix()
					c["iat"] = time.Now().Add(-time.Hour).Unix()
				}
			}, 401, "token is expired"},
			{"wrong issuer", func(p *idp) { p.mutate = func(c jwt.MapClaims) { c["iss"] = "https://evil.example" } }, 401, "different provider"},
			{"other key", func(p *idp) { _, other := rsaKeys(); p.signWith = other }, 401, "failed to verify id token signature"},
			{"provider refused", func(p *idp) { p.refuse = true }, 401, "refused by the provider"},
			{"unverified email", func(p *idp) { p.verified = false }, 403, "verified email"},
			{"no email_verified", func(p *idp) { p.verified = nil }, 403, "verified email"},
			{"unverified email of an existing user", func(p *idp) { p.verified = "false"; p.email = victim.email }, 403, "verified email"},
		} {
			p.set(func(p *idp) {
				p.mutate, p.signWith, p.refuse, p.verified, p.email = nil, nil, false, true, "oidc-user@example.com"
				tc.f(p)
			})
			logged := len(e.logs.String())
			r := e.oidcLogin(browser(t))
			if r.status != tc.status || r.json(t)["access_token"] != nil {
				t.Errorf("%s: %d %s", tc.name, r.status, r.body)
			}
			if !strings.Contains(e.logs.String()[logged:]+string(r.body), tc.reason) {
				t.Errorf("%s: refused, but not for %q: %s %s", tc.name, tc.reason, r.body, e.logs.String()[logged:])
			}
			nothing(tc.name)
		}
		p.set(func(p *idp) { p.mutate, p.signWith, p.refuse, p.verified = nil, nil, false, true })
		// A forged code never reaches a user either.
		c = browser(t)
		cb, _ = neturl.Parse(e.oidcRedirects(c))
		q = cb.Query()
		q.Set("code", "not-a-code")
		cb.RawQuery = q.Encode()
		e.want(e.get(c, cb.String()), 401, "forged code")
		nothing("forged code")
		if p.pkceFailure {
			t.Error("a PKCE check failed at the provider")
		}
		// Metacharacters and 1 MB values in the callback's parameters.
		for _, v := range []string{sqlMeta, bigString()[:200000]} {
			r := e.get(browser(t), e.url+"/api/auth/oidc/test/callback?state="+qesc(v)+"&code="+qesc(v)+"&error="+qesc(v))
			if r.status != 400 && r.status != 431 && r.status != 414 {
				t.Errorf("callback with %.10q: %d", v, r.status)
			}
		}
		nothing("metacharacters")
	})

	t.Run("PostLoginRedirect", func(t *testing.T) {
		e, _ := oidcEnv(t, open, "https://app.example/after-login")
		c := browser(t)
		r := e.get(c, e.oidcRedirects(c))
		loc, err := neturl.Parse(r.header.Get("Location"))
		if r.status != 302 || err != nil || loc.Host != "app.example" || loc.RawQuery != "" {
			t.Fatalf("callback: %d %s", r.status, r.header.Get("Location"))
		}
		f, _ := neturl.ParseQuery(loc.Fragment)
		e.secrets = append(e.secrets, f.Get("access_token"), f.Get("refresh_token"))
		if f.Get("token_type") != "Bearer" || f.Get("expires_in") != "900" {
			t.Fatalf("fragment: %v", f)
		}
		e.want(e.do("GET", "/api/users/me", f.Get("access_token"), nil), 200, "token from the fragment")
	})

	t.Run("MFAStillRequired", func(t *testing.T) {
		e, p := oidcEnv(t, open, "")
		a := e.register(store.RoleViewer)
		p.set(func(p *idp) { p.email = a.email })
		en := e.want(e.do("POST", "/api/auth/mfa/enroll", a.access, nil), 200, "enroll").json(t)
		e.secrets = append(e.secrets, en["secret"].(string))
		code := must(totpCode(en["secret"].(string)))
		e.want(e.do("POST", "/api/auth/mfa/confirm", a.access, map[string]string{"code": code}), 200, "confirm")
		m := e.want(e.oidcLogin(browser(t)), 200, "OIDC login of an MFA account").json(t)
		if m["mfa_required"] != true || m["access_token"] != nil {
			t.Fatalf("OIDC login skipped MFA: %v", m)
		}
		e.secrets = append(e.secrets, m["mfa_token"].(string))
	})
}

func totpCode(secret string) (string, error) { return totp.GenerateCode(secret, time.Now()) }
