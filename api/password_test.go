package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/streamd/streamd/api"
	"github.com/streamd/streamd/store"
)

func TestChangePassword(t *testing.T) {
	for name, open := range backends {
		t.Run(name, func(t *testing.T) { changePassword(t, open) })
	}
}

// sessionOf reads the sid claim of an access token (its payload is plain
// base64url JSON).
func sessionOf(t *testing.T, access string) string {
	t.Helper()
	parts := strings.Split(access, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		SID string `json:"sid"`
	}
	json.Unmarshal(b, &c)
	return c.SID
}

func changePassword(t *testing.T, open backend) {
	t.Run("WithPassword", func(t *testing.T) {
		e := newEnv(t, open, api.Limits{})
		a := e.register(store.RoleViewer)
		other := *a
		e.login(&other) // a second session of the same user
		next := "a brand new passphrase " + store.NewID()
		e.secrets = append(e.secrets, next)

		e.want(e.do("PUT", "/api/users/me/password", "", map[string]string{"new_password": next}), 401, "anonymous")
		e.want(e.do("PUT", "/api/users/me/password", a.access, map[string]string{"new_password": next}), 400, "no current password")
		e.want(e.do("PUT", "/api/users/me/password", a.access, map[string]string{"current_password": "wrong password!", "new_password": next}), 403, "wrong current password")
		e.want(e.do("PUT", "/api/users/me/password", a.access, map[string]string{"current_password": a.password, "new_password": "short"}), 400, "too short")
		e.want(e.do("PUT", "/api/users/me/password", a.access, map[string]string{"current_password": a.password, "new_password": strings.Repeat("x", 2000)}), 400, "too long")
		e.want(e.do("PUT", "/api/users/me/password", a.access, map[string]string{"current_password": a.password, "new_password": next}), 204, "change")

		e.want(e.do("GET", "/api/users/me", a.access, nil), 200, "the caller's session stays")
		e.want(e.do("GET", "/api/users/me", other.access, nil), 401, "the other session ended")
		e.want(e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": other.refresh}), 401, "the other session's refresh token")
		e.want(e.do("POST", "/api/auth/login", "", map[string]string{"username": a.username, "password": a.password}), 401, "old password")
		e.want(e.do("POST", "/api/auth/login", "", map[string]string{"username": a.username, "password": next}), 200, "new password")

		// Wrong current passwords count towards the lockout.
		for i := 0; i < 5; i++ {
			e.do("PUT", "/api/users/me/password", a.access, map[string]string{"current_password": "wrong password!", "new_password": next + "x"})
		}
		e.want(e.do("PUT", "/api/users/me/password", a.access, map[string]string{"current_password": next, "new_password": next + "x"}), 429, "locked after guesses")
	})

	t.Run("OIDCAccount", func(t *testing.T) {
		e, p := oidcEnv(t, open, "")
		m := e.want(e.oidcLogin(browser(t)), 200, "OIDC login").json(t)
		access := m["access_token"].(string)
		first := "a first passphrase " + store.NewID()
		e.secrets = append(e.secrets, first)

		// A session older than RecentLogin may not set a first password.
		sid := sessionOf(t, access)
		ctx := context.Background()
		b, err := e.sessions.Get(ctx, "auth:session:"+sid)
		if err != nil {
			t.Fatal(err)
		}
		var ss map[string]any
		json.Unmarshal(b, &ss)
		fresh := ss["created"]
		ss["created"] = time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)
		b, _ = json.Marshal(ss)
		if err := e.sessions.Set(ctx, "auth:session:"+sid, b, time.Hour); err != nil {
			t.Fatal(err)
		}
		r := e.want(e.do("PUT", "/api/users/me/password", access, map[string]string{"new_password": first}), 403, "stale session")
		if !strings.Contains(string(r.body), "log in again") {
			t.Errorf("403 body: %s", r.body)
		}
		ss["created"] = fresh
		b, _ = json.Marshal(ss)
		if err := e.sessions.Set(ctx, "auth:session:"+sid, b, time.Hour); err != nil {
			t.Fatal(err)
		}
		e.want(e.do("PUT", "/api/users/me/password", access, map[string]string{"new_password": first}), 204, "first password")
		e.want(e.do("POST", "/api/auth/login", "", map[string]string{"email": p.email, "password": first}), 200, "password login of an OIDC account")
		// Now it has one: changing it needs it.
		e.want(e.do("PUT", "/api/users/me/password", access, map[string]string{"new_password": first + "2"}), 400, "second change without the current one")
	})
}
