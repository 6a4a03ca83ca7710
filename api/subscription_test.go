package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/streamd/streamd/api"
	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/store"
)

const webhookSecret = "billing-secret-0123456789abcdef-0123456789"

func subscriptionEnv(t *testing.T, open backend, secret string) *env {
	e := newEnvWith(t, open, api.Limits{}, auth.Config{
		TierMaxHeight:        map[store.Tier]int{store.TierFree: 1080},
		BillingWebhookSecret: secret,
		FamilyMaxProfiles:    3,
	}, nil)
	e.secrets = append(e.secrets, secret)
	return e
}

// webhook posts body signed with sig (a string: sent as is).
func (e *env) webhook(body []byte, sig string) resp {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.url+"/api/billing/subscription", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set(auth.WebhookSignatureHeader, sig)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 500 && res.StatusCode != 503 {
		e.t.Errorf("webhook: %d %s", res.StatusCode, b)
	}
	return resp{res.StatusCode, res.Header, b}
}

func event(fields map[string]any) []byte {
	if _, ok := fields["timestamp"]; !ok {
		fields["timestamp"] = time.Now().Unix()
	}
	b, _ := json.Marshal(fields)
	return b
}

func (e *env) tierOf(id string) store.Tier {
	e.t.Helper()
	u, err := e.meta.GetUser(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return u.Tier
}

func TestSubscriptions(t *testing.T) {
	for name, open := range backends {
		t.Run(name, func(t *testing.T) { subscriptions(t, open) })
	}
}

func subscriptions(t *testing.T, open backend) {
	ctx := context.Background()
	t.Run("Tiers", func(t *testing.T) {
		e := subscriptionEnv(t, open, webhookSecret)
		admin, pub := e.register(store.RoleAdmin), e.register(store.RolePublisher)
		a, b := e.register(store.RoleViewer), e.register(store.RoleViewer)
		prem := map[string]string{"tier": "premium"}
		// Viewers and publishers cannot change a tier, theirs or anyone's.
		for _, u := range []*account{a, pub} {
			e.want(e.do("POST", "/api/users/me/subscription", u.access, prem), 403, "own tier")
			e.want(e.do("POST", "/api/users/"+u.id+"/subscription", u.access, prem), 403, "own tier by id")
			e.want(e.do("POST", "/api/users/"+b.id+"/subscription", u.access, prem), 403, "another's tier")
		}
		e.want(e.do("POST", "/api/users/me/subscription", "", prem), 401, "anonymous")
		e.want(e.do("POST", "/api/users/me/subscription", admin.access, `{"tier":"premium","user_id":"`+b.id+`"}`), 400, "unknown field")
		if e.tierOf(a.id) != store.TierFree || e.tierOf(b.id) != store.TierFree {
			t.Fatal("a tier changed")
		}

		// An upgrade keeps the sessions; the next refresh carries the tier.
		m := e.want(e.do("POST", "/api/users/"+a.id+"/subscription", admin.access, prem), 200, "upgrade").json(t)
		if m["tier"] != "premium" || m["sessions_ended"] != false || m["id"] != a.id {
			t.Fatalf("upgrade: %v", m)
		}
		p, err := e.svc.Authenticate(ctx, a.access)
		if err != nil || p.Tier != store.TierFree {
			t.Fatalf("the old token: %+v %v", p, err)
		}
		r := e.want(e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": a.refresh}), 200, "refresh").json(t)
		a.access, a.refresh = r["access_token"].(string), r["refresh_token"].(string)
		e.secrets = append(e.secrets, a.access, a.refresh)
		if p, err := e.svc.Authenticate(ctx, a.access); err != nil || p.Tier != store.TierPremium {
			t.Fatalf("refreshed token: %+v %v", p, err)
		}
		// A downgrade (a lower max height) ends the sessions at once.
		m = e.want(e.do("POST", "/api/users/"+a.id+"/subscription", admin.access, map[string]string{"tier": "free"}), 200, "downgrade").json(t)
		if m["tier"] != "free" || m["sessions_ended"] != true {
			t.Fatalf("downgrade: %v", m)
		}
		e.want(e.do("GET", "/api/users/me", a.access, nil), 401, "token from before the downgrade")
		e.want(e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": a.refresh}), 401, "refresh after the downgrade")

		// Admins: their own tier through /me, errors.
		m = e.want(e.do("POST", "/api/users/me/subscription", admin.access, map[string]string{"tier": "family"}), 200, "admin's own").json(t)
		if m["tier"] != "family" {
			t.Fatalf("admin's own: %v", m)
		}
		e.want(e.do("POST", "/api/users/"+b.id+"/subscription", admin.access, map[string]string{"tier": "gold"}), 400, "unknown tier")
		e.want(e.do("POST", "/api/users/nobody/subscription", admin.access, prem), 404, "unknown user")
		for _, v := range []string{sqlMeta, bigString()} {
			if r := e.do("POST", "/api/users/"+url(v[:min(len(v), 4000)])+"/subscription", admin.access, prem); r.status != 404 {
				t.Errorf("metachar id %.10q: %d", v, r.status)
			}
			if r := e.do("POST", "/api/users/"+b.id+"/subscription", admin.access, map[string]string{"tier": v}); r.status != 400 && r.status != 413 {
				t.Errorf("metachar tier %.10q: %d", v, r.status)
			}
		}
	})

	t.Run("Webhook", func(t *testing.T) {
		e := subscriptionEnv(t, open, webhookSecret)
		a, b := e.register(store.RoleViewer), e.register(store.RoleViewer)
		ev := event(map[string]any{"user_id": a.id, "tier": "premium"})
		// Unsigned, forged, or signed over other bytes: refused, nothing changes.
		for name, sig := range map[string]string{
			"unsigned":        "",
			"wrong secret":    auth.SignWebhook("another-secret-0123456789abcdef-0123", ev),
			"other body":      auth.SignWebhook(webhookSecret, event(map[string]any{"user_id": b.id, "tier": "premium"})),
			"no scheme":       strings.TrimPrefix(auth.SignWebhook(webhookSecret, ev), "sha256="),
			"truncated":       auth.SignWebhook(webhookSecret, ev)[:40],
			"not hex":         "sha256=" + strings.Repeat("zz", 32),
			"metacharacters":  "sha256=" + sqlMeta,
			"empty signature": "sha256=",
		} {
			if r := e.webhook(ev, sig); r.status != 401 || r.code(t) != "unauthenticated" {
				t.Errorf("%s: %d %s", name, r.status, r.body)
			}
		}
		// A body changed after signing.
		tampered := bytes.Replace(ev, []byte(a.id), []byte(b.id), 1)
		e.want(e.webhook(tampered, auth.SignWebhook(webhookSecret, ev)), 401, "tampered body")
		if e.tierOf(a.id) != store.TierFree || e.tierOf(b.id) != store.TierFree {
			t.Fatal("a refused webhook changed a tier")
		}
		// Signed: applied once.
		m := e.want(e.webhook(ev, auth.SignWebhook(webhookSecret, ev)), 200, "signed").json(t)
		if m["user_id"] != a.id || m["tier"] != "premium" || e.tierOf(a.id) != store.TierPremium {
			t.Fatalf("webhook: %v", m)
		}
		e.want(e.webhook(ev, auth.SignWebhook(webhookSecret, ev)), 409, "replayed")
		// By email; stale or future timestamps; bad bodies.
		sign := func(fields map[string]any) resp {
			b := event(fields)
			return e.webhook(b, auth.SignWebhook(webhookSecret, b))
		}
		e.want(sign(map[string]any{"email": strings.ToUpper(b.email), "tier": "family"}), 200, "by email")
		if e.tierOf(b.id) != store.TierFamily {
			t.Fatal("by email: not applied")
		}
		e.want(sign(map[string]any{"user_id": a.id, "tier": "free", "timestamp": time.Now().Add(-time.Hour).Unix()}), 400, "stale")
		e.want(sign(map[string]any{"user_id": a.id, "tier": "free", "timestamp": time.Now().Add(time.Hour).Unix()}), 400, "future")
		e.want(sign(map[string]any{"user_id": a.id, "email": b.email, "tier": "free"}), 400, "both user_id and email")
		e.want(sign(map[string]any{"tier": "free"}), 400, "no user")
		e.want(sign(map[string]any{"user_id": a.id, "tier": "gold"}), 400, "unknown tier")
		e.want(sign(map[string]any{"user_id": a.id, "tier": "free", "role": "admin"}), 400, "unknown field")
		e.want(sign(map[string]any{"user_id": "nobody", "tier": "free"}), 404, "unknown user")
		e.want(sign(map[string]any{"email": "nobody@example.com", "tier": "free"}), 404, "unknown email")
		e.want(sign(map[string]any{"email": b.username, "tier": "free"}), 404, "a username is not an email")
		big := bigString()
		for _, v := range []string{sqlMeta, sqlMeta + "@example.com", big[:50000]} {
			for _, f := range []map[string]any{{"user_id": v, "tier": "free"}, {"email": v, "tier": "free"}, {"user_id": a.id, "tier": v}} {
				if r := sign(f); r.status != 404 && r.status != 400 {
					t.Errorf("webhook with %.10q: %d %s", v, r.status, r.body)
				}
			}
		}
		// 1 MB: refused before anything is parsed.
		body := event(map[string]any{"user_id": big, "tier": "free"})
		e.want(e.webhook(body, auth.SignWebhook(webhookSecret, body)), 413, "1 MB body")
		e.want(e.webhook([]byte(`{"user_id":`), auth.SignWebhook(webhookSecret, []byte(`{"user_id":`))), 400, "truncated JSON")
		if e.tierOf(a.id) != store.TierPremium || e.tierOf(b.id) != store.TierFamily {
			t.Fatal("a refused webhook changed a tier")
		}
		if strings.Contains(e.logs.String(), auth.SignWebhook(webhookSecret, ev)[7:]) {
			t.Error("a signature appears in the logs")
		}

		// No secret: no webhook, whatever is sent.
		off := subscriptionEnv(t, open, "")
		c := off.register(store.RoleViewer)
		evc := event(map[string]any{"user_id": c.id, "tier": "premium"})
		for _, sig := range []string{"", auth.SignWebhook("", evc), auth.SignWebhook(webhookSecret, evc)} {
			off.want(off.webhook(evc, sig), 404, "webhook off")
		}
	})

	t.Run("Profiles", func(t *testing.T) {
		e := subscriptionEnv(t, open, webhookSecret)
		admin := e.register(store.RoleAdmin)
		a, b := e.register(store.RoleViewer), e.register(store.RoleViewer)
		l := e.want(e.do("GET", "/api/users/me/profiles", a.access, nil), 200, "list").json(t)
		if len(l["profiles"].([]any)) != 0 || l["max"] != float64(3) {
			t.Fatalf("list: %v", l)
		}
		e.want(e.do("POST", "/api/users/me/profiles", a.access, map[string]string{"name": "Kids"}), 403, "free tier")
		e.want(e.do("POST", "/api/users/me/profiles", "", map[string]string{"name": "Kids"}), 401, "anonymous")
		e.want(e.do("POST", "/api/users/"+a.id+"/subscription", admin.access, map[string]string{"tier": "family"}), 200, "family")
		kids := e.want(e.do("POST", "/api/users/me/profiles", a.access, map[string]string{"name": "Kids"}), 201, "create").json(t)
		e.want(e.do("POST", "/api/users/me/profiles", a.access, map[string]string{"name": "KIDS"}), 409, "same name")
		meta := e.want(e.do("POST", "/api/users/me/profiles", a.access, map[string]string{"name": "'; DROP TABLE x; -- 字🎥"}), 201, "metachars").json(t)
		if meta["name"] != "'; DROP TABLE x; -- 字🎥" {
			t.Fatalf("not verbatim: %v", meta)
		}
		for _, v := range []string{"", "   ", "a\x00b", "tab\there", strings.Repeat("é", 65), bigString()} {
			if r := e.do("POST", "/api/users/me/profiles", a.access, map[string]string{"name": v}); r.status != 400 && r.status != 413 {
				t.Errorf("name %.10q: %d %s", v, r.status, r.body)
			}
		}
		e.want(e.do("POST", "/api/users/me/profiles", a.access, map[string]string{"name": "Third"}), 201, "third")
		e.want(e.do("POST", "/api/users/me/profiles", a.access, map[string]string{"name": "Fourth"}), 409, "over the limit")
		// B sees and touches none of A's.
		e.want(e.do("POST", "/api/users/"+b.id+"/subscription", admin.access, map[string]string{"tier": "family"}), 200, "family b")
		bl := e.want(e.do("GET", "/api/users/me/profiles", b.access, nil), 200, "b's list").json(t)
		if len(bl["profiles"].([]any)) != 0 {
			t.Fatalf("b sees: %v", bl)
		}
		e.want(e.do("DELETE", "/api/users/me/profiles/"+kids["id"].(string), b.access, nil), 404, "b deletes a's")
		e.want(e.do("DELETE", "/api/users/me/profiles/"+url(sqlMeta), a.access, nil), 404, "metachar id")
		e.want(e.do("DELETE", "/api/users/me/profiles/"+kids["id"].(string), a.access, nil), 204, "delete")
		e.want(e.do("POST", "/api/users/me/profiles", a.access, map[string]string{"name": "Fourth"}), 201, "room again")
		l = e.want(e.do("GET", "/api/users/me/profiles", a.access, nil), 200, "list").json(t)
		if n := len(l["profiles"].([]any)); n != 3 {
			t.Fatalf("%d profiles", n)
		}
		// Leaving the family tier keeps the profiles but allows no new one.
		e.want(e.do("POST", "/api/users/"+a.id+"/subscription", admin.access, map[string]string{"tier": "premium"}), 200, "premium")
		e.want(e.do("POST", "/api/users/me/profiles", a.access, map[string]string{"name": "Fifth"}), 403, "not family")
		l = e.want(e.do("GET", "/api/users/me/profiles", a.access, nil), 200, "list").json(t)
		if n := len(l["profiles"].([]any)); n != 3 {
			t.Fatalf("%d profiles after leaving the tier", n)
		}
	})
}
