package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pquerna/otp/totp"

	"github.com/streamd/streamd/api"
	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/ratelimit"
	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/memsessions"
	"github.com/streamd/streamd/store/pgmeta"
	"github.com/streamd/streamd/store/redissessions"
	"github.com/streamd/streamd/store/sqlitemeta"
)

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	t        *testing.T
	url      string
	svc      *auth.Service
	key      ed25519.PrivateKey
	logs     *syncBuffer
	sessions store.Sessions
	meta     store.Meta
	secrets  []string // passwords, tokens and stream keys that must never be logged
	// wrap, when a setup sets it, wraps the API's handler as streamd's
	// server does (LimitBodies, security headers).
	wrap func(http.Handler) http.Handler
}

type backend func(t *testing.T) (store.Meta, store.Sessions)

func sqliteMem(t *testing.T) (store.Meta, store.Sessions) {
	m, err := sqlitemeta.Open(context.Background(), filepath.Join(t.TempDir(), "meta.db"), sqlitemeta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := memsessions.New(memsessions.Options{})
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

func postgresRedis(t *testing.T) (store.Meta, store.Sessions) {
	pgURL, redisURL := testenv.Postgres(t), testenv.Redis(t)
	m, err := pgmeta.Open(context.Background(), pgURL, pgmeta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := redissessions.Open(context.Background(), redisURL, redissessions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

func newEnv(t *testing.T, open backend, limits api.Limits) *env {
	return newEnvWith(t, open, limits, auth.Config{}, nil)
}

// newEnvWith is newEnv with an auth config, and setup to change the API's
// dependencies once the server's URL (e.url) is known.
func newEnvWith(t *testing.T, open backend, limits api.Limits, cfg auth.Config, setup func(e *env, d *api.Deps)) *env {
	meta, sessions := open(t)
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	key, _, err := auth.JWTKeyStore{Dir: t.TempDir()}.LoadOrCreate()
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.NewTokens(key, auth.TokenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := auth.NewHasher(auth.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 0)
	if err != nil {
		t.Fatal(err)
	}
	svc := auth.NewService(meta, sessions, hasher, tokens, cfg, log)
	if limits == (api.Limits{}) {
		limits = api.Limits{Auth: -1, API: -1, Account: -1}
	}
	d := api.Deps{Auth: svc, Users: svc, Limiter: limiterFor(t, sessions), Limits: limits,
		Channels: meta, Content: meta, Logger: log}
	srv := httptest.NewUnstartedServer(nil)
	e := &env{t: t, url: "http://" + srv.Listener.Addr().String(), svc: svc, key: key, logs: logs, sessions: sessions, meta: meta}
	if setup != nil {
		setup(e, &d)
	}
	srv.Config.Handler = api.New(d)
	if e.wrap != nil {
		srv.Config.Handler = e.wrap(srv.Config.Handler)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		out := logs.String()
		for _, s := range e.secrets {
			if s != "" && strings.Contains(out, s) {
				t.Errorf("a secret appears in the logs: %.12s…", s)
			}
		}
	})
	return e
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d is not a JSON object: %q", r.status, r.body)
	}
	return m
}

func (r resp) code(t *testing.T) string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// do sends body (marshalled unless it is a string) with token as Bearer.
func (e *env) do(method, path, token string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 500 && res.StatusCode != 503 {
		e.t.Errorf("%s %s: %d %s", method, path, res.StatusCode, b)
	}
	if ct := res.Header.Get("Content-Type"); len(b) > 0 && ct != "application/json" {
		e.t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp{res.StatusCode, res.Header, b}
}

func (e *env) want(r resp, status int, what string) resp {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("%s: status %d, want %d: %s", what, r.status, status, r.body)
	}
	return r
}

type account struct {
	id, email, username, password string
	access, refresh               string
}

var seq struct {
	sync.Mutex
	n int
}

func (e *env) register(role store.Role) *account {
	e.t.Helper()
	seq.Lock()
	seq.n++
	n := seq.n
	seq.Unlock()
	a := &account{email: fmt.Sprintf("user%d@example.com", n), username: fmt.Sprintf("user%d", n),
		password: fmt.Sprintf("pw-%d-%s", n, store.NewID())}
	if role == store.RoleViewer {
		r := e.want(e.do("POST", "/api/auth/register", "", map[string]string{"email": a.email, "username": a.username, "password": a.password}), 201, "register")
		a.id = r.json(e.t)["id"].(string)
		if bytes.Contains(r.body, []byte("password")) || bytes.Contains(r.body, []byte("argon2")) {
			e.t.Fatalf("register answer shows the password or its hash: %s", r.body)
		}
	} else {
		u, err := e.svc.CreateUser(context.Background(), auth.NewUser{Email: a.email, Username: a.username, Password: a.password, Role: role})
		if err != nil {
			e.t.Fatal(err)
		}
		a.id = u.ID
	}
	e.secrets = append(e.secrets, a.password)
	e.login(a)
	return a
}

func (e *env) login(a *account) {
	e.t.Helper()
	m := e.want(e.do("POST", "/api/auth/login", "", map[string]string{"username": a.username, "password": a.password}), 200, "login").json(e.t)
	if m["token_type"] != "Bearer" || m["expires_in"] != float64(900) {
		e.t.Fatalf("login answer: %v", m)
	}
	a.access, a.refresh = m["access_token"].(string), m["refresh_token"].(string)
	e.secrets = append(e.secrets, a.access, a.refresh)
}

var backends = map[string]backend{"sqlite+memory": sqliteMem, "postgres+redis": postgresRedis}

func TestSecurity(t *testing.T) {
	for name, open := range backends {
		t.Run(name, func(t *testing.T) { security(t, open) })
	}
}

func security(t *testing.T, open backend) {
	t.Run("ForgedJWT", func(t *testing.T) {
		e := newEnv(t, open, api.Limits{})
		a := e.register(store.RoleViewer)
		e.want(e.do("GET", "/api/users/me", a.access, nil), 200, "own token")
		parts := strings.Split(a.access, ".")
		var claims jwt.MapClaims
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		if err := json.Unmarshal(payload, &claims); err != nil {
			t.Fatal(err)
		}
		with := func(mut func(jwt.MapClaims)) jwt.MapClaims {
			c := jwt.MapClaims{}
			for k, v := range claims {
				c[k] = v
			}
			mut(c)
			return c
		}
		same := func(jwt.MapClaims) {}
		sign := func(m jwt.SigningMethod, key any, c jwt.MapClaims) string {
			s, err := jwt.NewWithClaims(m, c).SignedString(key)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		_, other, _ := ed25519.GenerateKey(rand.Reader)
		rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
		escalated, _ := json.Marshal(with(func(c jwt.MapClaims) { c["role"] = "admin" }))
		for name, tok := range map[string]string{
			"alg none":         sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, with(same)),
			"HS256 public key": sign(jwt.SigningMethodHS256, []byte(e.key.Public().(ed25519.PublicKey)), with(same)),
			"RS256":            sign(jwt.SigningMethodRS256, rsaKey, with(same)),
			"wrong key":        sign(jwt.SigningMethodEdDSA, other, with(same)),
			"expired":          sign(jwt.SigningMethodEdDSA, e.key, with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() })),
			"changed claim":    parts[0] + "." + base64.RawURLEncoding.EncodeToString(escalated) + "." + parts[2],
			"other subject":    parts[0] + "." + base64.RawURLEncoding.EncodeToString(must(json.Marshal(with(func(c jwt.MapClaims) { c["sub"] = "someone" })))) + "." + parts[2],
			"no signature":     parts[0] + "." + parts[1] + ".",
		} {
			for _, path := range []string{"/api/users/me", "/api/users"} {
				r := e.do("GET", path, tok, nil)
				if r.status != 401 || r.code(t) != "unauthenticated" || r.header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s on %s: %d %s", name, path, r.status, r.body)
				}
			}
		}
		for _, h := range []string{"", "Bearer", "Bearer ", "Basic " + a.access, "Bearer  " + a.access, "Bearer " + a.access + " x", "bearer" + a.access} {
			req, _ := http.NewRequest("GET", e.url+"/api/users/me", nil)
			req.Header.Set("Authorization", h)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 401 {
				t.Errorf("Authorization %.20q: %d, want 401", h, res.StatusCode)
			}
		}
	})

	t.Run("Injection", func(t *testing.T) {
		e := newEnv(t, open, api.Limits{})
		a := e.register(store.RoleViewer)
		const meta = `'; DROP TABLE users; -- " \ % _ $1 ? :name ` + "`x` ünï 字 🎥"
		big := strings.Repeat("x'\"%_;-- ", (1<<20)/9)
		for i, v := range []string{meta, big, meta + "@example.com", "a@b.c" + big} {
			for j, body := range []map[string]string{
				{"email": v, "username": fmt.Sprintf("ok%d%d", i, 0), "password": "a good long passphrase"},
				{"email": fmt.Sprintf("ok%d%d@example.com", i, 1), "username": v, "password": "a good long passphrase"},
				{"email": fmt.Sprintf("ok%d%d@example.com", i, 2), "username": fmt.Sprintf("ok%d%d", i, 2), "password": v},
			} {
				r := e.do("POST", "/api/auth/register", "", body)
				if r.status != 400 && r.status != 201 && r.status != 413 {
					t.Errorf("register with %.20q: %d %s", v, r.status, r.body)
				}
				if r.status == 201 {
					m := r.json(t)
					if m["email"] != body["email"] || m["username"] != body["username"] {
						t.Errorf("register with %.20q not returned verbatim", v)
					}
					if j == 2 { // the password was kept verbatim: it logs in
						e.secrets = append(e.secrets, v)
						e.want(e.do("POST", "/api/auth/login", "", map[string]string{"username": body["username"], "password": v}), 200, "login with a metachar password")
					}
				}
			}
			for _, body := range []map[string]string{{"email": v, "password": v}, {"username": v, "password": "x"}} {
				r := e.do("POST", "/api/auth/login", "", body)
				if r.status != 401 && r.status != 413 {
					t.Errorf("login with %.20q: %d %s", v, r.status, r.body)
				}
			}
			r := e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": v})
			if r.status != 401 && r.status != 413 {
				t.Errorf("refresh with %.20q: %d", v, r.status)
			}
			r = e.do("POST", "/api/auth/mfa/verify", "", map[string]string{"mfa_token": v, "code": v})
			if r.status != 401 && r.status != 413 {
				t.Errorf("mfa verify with %.20q: %d", v, r.status)
			}
			for _, body := range []map[string]any{{"email": v}, {"username": v}} {
				if r := e.do("PUT", "/api/users/me", a.access, body); r.status != 400 && r.status != 413 {
					t.Errorf("PUT me %.20q: %d %s", v, r.status, r.body)
				}
			}
		}
		// Preferences keep any text verbatim (within their size limit).
		prefs := map[string]any{"q": meta, "nested": map[string]any{meta: []any{meta, 1.5, true}}}
		r := e.want(e.do("PUT", "/api/users/me", a.access, map[string]any{"preferences": prefs}), 200, "put prefs")
		got := e.want(e.do("GET", "/api/users/me", a.access, nil), 200, "get me").json(t)["preferences"]
		if fmt.Sprint(got) != fmt.Sprint(prefs) || fmt.Sprint(r.json(t)["preferences"]) != fmt.Sprint(prefs) {
			t.Fatalf("preferences = %v, want %v", got, prefs)
		}
		r = e.do("PUT", "/api/users/me", a.access, map[string]any{"preferences": map[string]string{"big": big}})
		if r.status != 400 && r.status != 413 {
			t.Fatalf("1 MB preferences: %d", r.status)
		}
		e.want(e.do("PUT", "/api/users/me", a.access, `{"preferences": [1]}`), 400, "array preferences")
		// JSON that PostgreSQL's jsonb cannot hold: refused alike (NUL), or
		// refused there and stored by SQLite (a number beyond numeric's
		// range); never a 500.
		e.want(e.do("PUT", "/api/users/me", a.access, `{"preferences": {"a": "x\u0000y"}}`), 400, "NUL in preferences")
		for _, v := range []string{"1e-40000", "1" + strings.Repeat("0", 20000)} {
			if r := e.do("PUT", "/api/users/me", a.access, `{"preferences": {"n": `+v+`}}`); r.status != 200 && r.status != 400 {
				t.Errorf("preferences number %.10s…: %d %s", v, r.status, r.body)
			}
		}
		e.want(e.do("GET", "/api/users/"+url(meta), a.access, nil), 403, "viewer reads a user by a metachar id")
	})

	t.Run("Requests", func(t *testing.T) {
		e := newEnv(t, open, api.Limits{})
		a := e.register(store.RoleViewer)
		e.want(e.do("PUT", "/api/users/me", a.access, `{"email":"x@example.com","role":"admin"}`), 400, "unknown field")
		e.want(e.do("PUT", "/api/users/me", a.access, `{"email":"x@example.com"} {}`), 400, "trailing data")
		e.want(e.do("PUT", "/api/users/me", a.access, `{"email":`), 400, "truncated JSON")
		e.want(e.do("PUT", "/api/users/me", a.access, `{"preferences":"`+strings.Repeat("a", 2<<20)+`"}`), 413, "2 MiB body")
		if c := e.want(e.do("GET", "/api/nope", "", nil), 404, "unknown path").code(t); c != "not_found" {
			t.Fatalf("code %q", c)
		}
		r := e.want(e.do("DELETE", "/api/users/me", a.access, nil), 405, "wrong method")
		if r.header.Get("Allow") == "" {
			t.Fatal("405 without Allow")
		}
		req, _ := http.NewRequest("POST", e.url+"/api/auth/login", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "text/plain")
		res, _ := http.DefaultClient.Do(req)
		res.Body.Close()
		if res.StatusCode != 415 {
			t.Fatalf("text/plain body: %d", res.StatusCode)
		}
		me := e.want(e.do("GET", "/api/users/me", a.access, nil), 200, "me").json(t)
		if me["role"] != "viewer" || me["tier"] != "free" || me["last_login_at"] == nil || me["id"] != a.id {
			t.Fatalf("me = %v", me)
		}
		e.want(e.do("POST", "/api/auth/register", "", map[string]string{"email": strings.ToUpper(a.email), "username": "other1", "password": "a good long passphrase"}), 409, "same email")
		e.want(e.do("POST", "/api/auth/register", "", map[string]string{"email": "new@example.com", "username": a.username, "password": "a good long passphrase"}), 409, "same username")
		e.want(e.do("POST", "/api/auth/register", "", map[string]string{"email": "new@example.com", "username": "newname", "password": "short"}), 400, "weak password")
		e.want(e.do("POST", "/api/auth/login", "", map[string]string{"email": a.email, "password": a.password}), 200, "login by email")
		e.want(e.do("POST", "/api/auth/login", "", map[string]string{"email": "nobody@example.com", "password": a.password}), 401, "unknown user")
	})

	t.Run("Roles", func(t *testing.T) {
		e := newEnv(t, open, api.Limits{})
		admin := e.register(store.RoleAdmin)
		pub := e.register(store.RolePublisher)
		a, b := e.register(store.RoleViewer), e.register(store.RoleViewer)
		for _, u := range []*account{pub, a} {
			e.want(e.do("GET", "/api/users", u.access, nil), 403, "non-admin lists users")
			e.want(e.do("GET", "/api/users/"+b.id, u.access, nil), 403, "non-admin reads another user")
			e.want(e.do("PUT", "/api/users/"+b.id+"/role", u.access, map[string]string{"role": "admin"}), 403, "non-admin sets a role")
			e.want(e.do("PUT", "/api/users/"+u.id+"/role", u.access, map[string]string{"role": "admin"}), 403, "self-promotion")
		}
		e.want(e.do("GET", "/api/users", "", nil), 401, "anonymous lists users")
		// A cannot change B through its own profile either.
		e.want(e.do("PUT", "/api/users/me", a.access, map[string]string{"email": b.email}), 409, "take B's email")
		e.want(e.do("PUT", "/api/users/me", a.access, `{"id":"`+b.id+`","email":"z@example.com"}`), 400, "id field")
		bm := e.want(e.do("GET", "/api/users/me", b.access, nil), 200, "B").json(t)
		if bm["email"] != b.email {
			t.Fatalf("B changed: %v", bm)
		}

		// Admin: paging and role change.
		seen := map[string]bool{}
		after := ""
		for range 10 {
			m := e.want(e.do("GET", "/api/users?limit=2&after="+after, admin.access, nil), 200, "list").json(t)
			for _, u := range m["users"].([]any) {
				um := u.(map[string]any)
				seen[um["id"].(string)] = true
				if _, ok := um["password_hash"]; ok {
					t.Fatal("listing shows password hashes")
				}
			}
			next, _ := m["next_after"].(string)
			if next == "" {
				break
			}
			after = next
		}
		if len(seen) != 4 {
			t.Fatalf("listed %d users, want 4", len(seen))
		}
		e.want(e.do("GET", "/api/users?limit=0", admin.access, nil), 400, "limit 0")
		e.want(e.do("GET", "/api/users/nobody", admin.access, nil), 404, "missing user")
		e.want(e.do("PUT", "/api/users/"+a.id+"/role", admin.access, map[string]string{"role": "root"}), 400, "unknown role")
		e.want(e.do("PUT", "/api/users/"+admin.id+"/role", admin.access, map[string]string{"role": "viewer"}), 400, "own role")
		e.want(e.do("PUT", "/api/users/nobody/role", admin.access, map[string]string{"role": "viewer"}), 404, "role of nobody")
		r := e.want(e.do("PUT", "/api/users/"+a.id+"/role", admin.access, map[string]string{"role": "admin"}), 200, "promote")
		if r.json(t)["role"] != "admin" {
			t.Fatalf("promote: %s", r.body)
		}
		// The role change ended A's sessions: the old viewer token is gone.
		e.want(e.do("GET", "/api/users/me", a.access, nil), 401, "token from before the role change")
		e.login(a)
		e.want(e.do("GET", "/api/users", a.access, nil), 200, "promoted user lists users")
	})

	t.Run("RefreshRotation", func(t *testing.T) {
		e := newEnv(t, open, api.Limits{})
		a := e.register(store.RoleViewer)
		first := a.refresh
		m := e.want(e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": first}), 200, "refresh").json(t)
		second, access2 := m["refresh_token"].(string), m["access_token"].(string)
		e.secrets = append(e.secrets, second, access2)
		if second == first || m["token_type"] != "Bearer" {
			t.Fatalf("refresh answer: %v", m)
		}
		e.want(e.do("GET", "/api/users/me", access2, nil), 200, "new access token")
		// The rotated token is dead, and using it revokes the family.
		e.want(e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": first}), 401, "reuse of a rotated token")
		e.want(e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": second}), 401, "current token after reuse")
		e.want(e.do("GET", "/api/users/me", access2, nil), 401, "access token after reuse")
		// Another session of the same user is not affected.
		b := *a
		e.login(&b)
		e.want(e.do("GET", "/api/users/me", b.access, nil), 200, "other session")

		// Concurrent refreshes of one token: at most one wins.
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range 6 {
			wg.Go(func() {
				req, _ := http.NewRequest("POST", e.url+"/api/auth/refresh", strings.NewReader(`{"refresh_token":"`+b.refresh+`"}`))
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode == 200 {
					var m map[string]any
					_ = json.Unmarshal(body, &m)
					mu.Lock()
					wins++
					e.secrets = append(e.secrets, m["refresh_token"].(string), m["access_token"].(string))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if wins > 1 {
			t.Fatalf("%d concurrent refreshes of one token succeeded", wins)
		}
	})

	t.Run("Logout", func(t *testing.T) {
		e := newEnv(t, open, api.Limits{})
		a := e.register(store.RoleViewer)
		b := *a
		e.login(&b)
		e.want(e.do("POST", "/api/auth/logout", a.access, nil), 204, "logout")
		e.want(e.do("GET", "/api/users/me", a.access, nil), 401, "access token after logout")
		e.want(e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": a.refresh}), 401, "refresh after logout")
		e.want(e.do("GET", "/api/users/me", b.access, nil), 200, "other session after logout")
		c := *a
		e.login(&c)
		e.want(e.do("POST", "/api/auth/logout-all", c.access, nil), 204, "logout-all")
		for _, s := range []account{b, c} {
			e.want(e.do("GET", "/api/users/me", s.access, nil), 401, "access after logout-all")
			e.want(e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": s.refresh}), 401, "refresh after logout-all")
		}
		e.want(e.do("POST", "/api/auth/logout", "", nil), 401, "logout without a token")
	})

	t.Run("Lockout", func(t *testing.T) {
		e := newEnv(t, open, api.Limits{})
		a := e.register(store.RoleViewer)
		for i := range 5 {
			e.want(e.do("POST", "/api/auth/login", "", map[string]string{"username": a.username, "password": fmt.Sprintf("wrong-password-%d", i)}), 401, "wrong password")
		}
		for _, login := range []map[string]string{{"username": a.username}, {"email": strings.ToUpper(a.email)}} {
			login["password"] = a.password
			r := e.want(e.do("POST", "/api/auth/login", "", login), 429, "right password while locked")
			if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 15*60 {
				t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
			}
			if r.code(t) != "rate_limited" {
				t.Fatalf("code %q", r.code(t))
			}
		}
		// Unknown accounts lock the same way: the lockout tells nothing.
		for range 5 {
			e.want(e.do("POST", "/api/auth/login", "", map[string]string{"username": "ghost", "password": "whatever-password"}), 401, "ghost")
		}
		e.want(e.do("POST", "/api/auth/login", "", map[string]string{"username": "ghost", "password": "whatever-password"}), 429, "ghost locked")
		// Other accounts are unaffected.
		b := e.register(store.RoleViewer)
		e.want(e.do("GET", "/api/users/me", b.access, nil), 200, "other account")
	})

	t.Run("IPRateLimit", func(t *testing.T) {
		e := newEnv(t, open, api.Limits{Auth: 3, API: 1000})
		for i := range 3 {
			e.want(e.do("POST", "/api/auth/login", "", map[string]string{"username": "x", "password": "y"}), 401, fmt.Sprint("attempt ", i))
		}
		r := e.want(e.do("POST", "/api/auth/login", "", map[string]string{"username": "x", "password": "y"}), 429, "over the limit")
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
		e.want(e.do("GET", "/api/openapi.json", "", nil), 200, "other bucket")
	})

	t.Run("AccountRateLimit", func(t *testing.T) {
		// Per account, whatever the address: the per-IP limits are off.
		e := newEnv(t, open, api.Limits{Auth: -1, API: -1, Account: 3})
		a := e.register(store.RoleViewer)
		other := e.register(store.RoleViewer)
		for i := range 3 {
			e.want(e.do("GET", "/api/users/me", a.access, nil), 200, fmt.Sprint("request ", i))
		}
		r := e.want(e.do("GET", "/api/users/me", a.access, nil), 429, "over the account limit")
		if r.header.Get("Retry-After") == "" {
			t.Fatal("no Retry-After")
		}
		e.want(e.do("GET", "/api/users/me", other.access, nil), 200, "another account")
	})

	t.Run("MFA", func(t *testing.T) {
		// Wrong codes count towards the account lockout too
		// (TestMFALockout); here the challenge's own limit is tested, so
		// the lockout is out of the way.
		e := newEnvWith(t, open, api.Limits{}, auth.Config{Lockout: auth.LockoutConfig{MaxFailures: 100}}, nil)
		a := e.register(store.RoleViewer)
		e.want(e.do("POST", "/api/auth/mfa/confirm", a.access, map[string]string{"code": "123456"}), 404, "confirm before enroll")
		en := e.want(e.do("POST", "/api/auth/mfa/enroll", a.access, nil), 200, "enroll").json(t)
		secret, u := en["secret"].(string), en["otpauth_url"].(string)
		e.secrets = append(e.secrets, secret)
		if !strings.HasPrefix(u, "otpauth://totp/") || !strings.Contains(u, "secret="+secret) {
			t.Fatalf("otpauth URL %q", u)
		}
		qr, ok := strings.CutPrefix(en["qr_png"].(string), "data:image/png;base64,")
		pngBytes, err := base64.StdEncoding.DecodeString(qr)
		if !ok || err != nil {
			t.Fatalf("qr_png is not a PNG data URL: %.60s", en["qr_png"])
		}
		img, err := png.Decode(bytes.NewReader(pngBytes))
		if err != nil || img.Bounds().Dx() != 256 || img.Bounds().Dy() != 256 {
			t.Fatalf("QR image: %v %v", err, img)
		}
		// Not yet confirmed: login needs no code.
		b := *a
		e.login(&b)
		e.want(e.do("POST", "/api/auth/mfa/confirm", a.access, map[string]string{"code": "000000"}), 401, "wrong code")
		now := time.Now()
		code := func(at time.Time) string {
			c, err := totp.GenerateCode(secret, at)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		m := e.want(e.do("POST", "/api/auth/mfa/confirm", a.access, map[string]string{"code": code(now)}), 200, "confirm").json(t)
		var recovery []string
		for _, c := range m["recovery_codes"].([]any) {
			recovery = append(recovery, c.(string))
		}
		e.secrets = append(e.secrets, recovery...)
		if len(recovery) != 10 {
			t.Fatalf("%d recovery codes", len(recovery))
		}
		e.want(e.do("POST", "/api/auth/mfa/enroll", a.access, nil), 409, "enroll while on")

		challenge := func() string {
			m := e.want(e.do("POST", "/api/auth/login", "", map[string]string{"username": a.username, "password": a.password}), 200, "login with MFA").json(t)
			if m["mfa_required"] != true || m["access_token"] != nil {
				t.Fatalf("login answer: %v", m)
			}
			tok := m["mfa_token"].(string)
			e.secrets = append(e.secrets, tok)
			return tok
		}
		ch := challenge()
		e.want(e.do("POST", "/api/auth/mfa/verify", "", map[string]string{"mfa_token": ch, "code": "000000"}), 401, "wrong code")
		// The confirm code was used: replaying it fails.
		e.want(e.do("POST", "/api/auth/mfa/verify", "", map[string]string{"mfa_token": ch, "code": code(now)}), 401, "replayed code")
		next := code(now.Add(30 * time.Second)) // within the allowed skew
		r := e.want(e.do("POST", "/api/auth/mfa/verify", "", map[string]string{"mfa_token": ch, "code": next}), 200, "verify").json(t)
		e.secrets = append(e.secrets, r["access_token"].(string), r["refresh_token"].(string))
		e.want(e.do("GET", "/api/users/me", r["access_token"].(string), nil), 200, "access after MFA")
		e.want(e.do("POST", "/api/auth/mfa/verify", "", map[string]string{"mfa_token": ch, "code": next}), 401, "challenge used twice")

		// A recovery code works once.
		ch = challenge()
		typed := strings.ToUpper(strings.ReplaceAll(recovery[3], "-", " "))
		r = e.want(e.do("POST", "/api/auth/mfa/verify", "", map[string]string{"mfa_token": ch, "code": typed}), 200, "recovery code").json(t)
		e.secrets = append(e.secrets, r["access_token"].(string), r["refresh_token"].(string))
		ch = challenge()
		e.want(e.do("POST", "/api/auth/mfa/verify", "", map[string]string{"mfa_token": ch, "code": recovery[3]}), 401, "recovery code again")
		// Too many tries end the challenge.
		for range 4 {
			e.want(e.do("POST", "/api/auth/mfa/verify", "", map[string]string{"mfa_token": ch, "code": "111111"}), 401, "guess")
		}
		e.want(e.do("POST", "/api/auth/mfa/verify", "", map[string]string{"mfa_token": ch, "code": recovery[4]}), 401, "after 5 tries")

		e.want(e.do("POST", "/api/auth/mfa/disable", a.access, map[string]string{"code": "000000"}), 401, "disable with a wrong code")
		e.want(e.do("POST", "/api/auth/mfa/disable", a.access, map[string]string{"code": recovery[5]}), 204, "disable")
		e.login(a) // no challenge any more
	})

	t.Run("Unavailable", func(t *testing.T) {
		e := newEnv(t, open, api.Limits{})
		a := e.register(store.RoleViewer)
		e.sessions.Close()
		r := e.want(e.do("GET", "/api/users/me", a.access, nil), 503, "sessions store closed")
		if r.code(t) != "unavailable" || r.header.Get("Retry-After") == "" {
			t.Fatalf("503: %s %v", r.body, r.header)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func url(s string) string {
	return strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23", " ", "%20", "/", "%2F", "`", "%60", "\"", "%22", "\\", "%5C").Replace(s)
}

// limiterFor is the limiter streamd uses with these sessions: GCRA in
// Redis (redis_rate) for Redis sessions, in process otherwise.
func limiterFor(t *testing.T, sessions store.Sessions) api.Limiter {
	if rs, ok := sessions.(*redissessions.Store); ok {
		return ratelimit.NewRedis(rs.Client(), "test:"+store.NewID()+":")
	}
	return ratelimit.NewMemory(nil)
}
