package api_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/streamd/streamd/api"
	"github.com/streamd/streamd/store"
)

func TestMFALockout(t *testing.T) {
	for name, open := range backends {
		t.Run(name, func(t *testing.T) { mfaLockout(t, open) })
	}
}

// mfaAccount is a viewer with MFA on, and a source of TOTP codes not yet
// used (the API refuses a replayed one).
type mfaAccount struct {
	*account
	secret string
	used   map[string]bool
}

func (e *env) mfaAccount() *mfaAccount {
	e.t.Helper()
	a := &mfaAccount{account: e.register(store.RoleViewer), used: map[string]bool{}}
	en := e.want(e.do("POST", "/api/auth/mfa/enroll", a.access, nil), 200, "enroll").json(e.t)
	a.secret = en["secret"].(string)
	e.secrets = append(e.secrets, a.secret)
	e.want(e.do("POST", "/api/auth/mfa/confirm", a.access, map[string]string{"code": a.code(e.t)}), 200, "confirm")
	return a
}

// code is a valid code not used before: the current one or, with the
// allowed skew, the previous or next.
func (a *mfaAccount) code(t *testing.T) string {
	t.Helper()
	for _, off := range []time.Duration{0, 30 * time.Second, -30 * time.Second} {
		c, err := totp.GenerateCode(a.secret, time.Now().Add(off))
		if err != nil {
			t.Fatal(err)
		}
		if !a.used[c] {
			a.used[c] = true
			return c
		}
	}
	t.Fatal("no unused TOTP code left")
	return ""
}

func (e *env) challenge(a *mfaAccount) string {
	e.t.Helper()
	m := e.want(e.do("POST", "/api/auth/login", "", map[string]string{"username": a.username, "password": a.password}), 200, "login").json(e.t)
	tok, _ := m["mfa_token"].(string)
	if tok == "" {
		e.t.Fatalf("login without an MFA challenge: %v", m)
	}
	e.secrets = append(e.secrets, tok)
	return tok
}

func (e *env) verify(tok, code string) resp {
	e.t.Helper()
	r := e.do("POST", "/api/auth/mfa/verify", "", map[string]string{"mfa_token": tok, "code": code})
	if r.status == 200 {
		m := r.json(e.t)
		e.secrets = append(e.secrets, m["access_token"].(string), m["refresh_token"].(string))
	}
	return r
}

func (e *env) wantLocked(r resp, what string) {
	e.t.Helper()
	e.want(r, 429, what)
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 15*60 || r.code(e.t) != "rate_limited" {
		e.t.Fatalf("%s: Retry-After %q, code %q", what, r.header.Get("Retry-After"), r.code(e.t))
	}
}

// Wrong second-factor codes, TOTP or recovery, count towards the same
// lockout as wrong passwords (5 by default), across challenges: knowing
// the password does not buy 5 more guesses per login.
func mfaLockout(t *testing.T, open backend) {
	t.Run("AcrossChallenges", func(t *testing.T) {
		e := newEnv(t, open, api.Limits{})
		a := e.mfaAccount()
		ch := e.challenge(a)
		for _, c := range []string{"000000", "111111", "abcd-efgh-ijkl-mnop"} {
			e.want(e.verify(ch, c), 401, "wrong code "+c)
		}
		ch = e.challenge(a) // the password is right: the count goes on
		e.want(e.verify(ch, "222222"), 401, "wrong code 4")
		e.want(e.verify(ch, "qrst-uvwx-yz23-4567"), 401, "wrong recovery code 5")
		e.wantLocked(e.verify(ch, a.code(t)), "right code while locked")
		e.wantLocked(e.do("POST", "/api/auth/login", "", map[string]string{"username": a.username, "password": a.password}), "right password while locked")
		// Other accounts are unaffected.
		b := e.mfaAccount()
		e.want(e.verify(e.challenge(b), b.code(t)), 200, "other account")
	})

	t.Run("SuccessForgives", func(t *testing.T) {
		e := newEnv(t, open, api.Limits{})
		a := e.mfaAccount()
		for range 2 {
			ch := e.challenge(a)
			for i := range 4 {
				e.want(e.verify(ch, "00000"+strconv.Itoa(i)), 401, "wrong code")
			}
			e.want(e.verify(ch, a.code(t)), 200, "right code after 4 wrong")
		}
	})

	t.Run("Disable", func(t *testing.T) {
		// A stolen access token does not turn MFA off by guessing.
		e := newEnv(t, open, api.Limits{})
		a := e.mfaAccount()
		for i := range 5 {
			e.want(e.do("POST", "/api/auth/mfa/disable", a.access, map[string]string{"code": "00000" + strconv.Itoa(i)}), 401, "wrong disable code")
		}
		e.wantLocked(e.do("POST", "/api/auth/mfa/disable", a.access, map[string]string{"code": a.code(t)}), "disable while locked")
		e.wantLocked(e.do("POST", "/api/auth/login", "", map[string]string{"username": a.username, "password": a.password}), "login while locked")
	})
}
