package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
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

	t.Run("ProfilePreferences", func(t *testing.T) {
		e := subscriptionEnv(t, open, webhookSecret)
		admin := e.register(store.RoleAdmin)
		a, b := e.register(store.RoleViewer), e.register(store.RoleViewer)
		for _, u := range []*account{a, b} {
			e.want(e.do("POST", "/api/users/"+u.id+"/subscription", admin.access, map[string]string{"tier": "family"}), 200, "family")
		}
		const base = "/api/users/me/profiles/"

		// Created with and without preferences; always an object.
		kidsPrefs := map[string]any{"subtitles": "fr", "q": sqlMeta, sqlMeta: []any{1, true, nil},
			"nested": map[string]any{"u": "ünï 字 🎥 \u00e9"}}
		r := e.want(e.do("POST", base[:len(base)-1], a.access, map[string]any{"name": "Kids", "preferences": kidsPrefs}), 201, "create with preferences")
		kids := r.json(t)
		kid := kids["id"].(string)
		if kids["name"] != "Kids" || !sameJSON(kids["preferences"], kidsPrefs) || r.header.Get("Location") != base+kid {
			t.Fatalf("create: %s (Location %q)", r.body, r.header.Get("Location"))
		}
		grown := e.want(e.do("POST", base[:len(base)-1], a.access, map[string]any{"name": "Grown-ups"}), 201, "create without").json(t)
		gid := grown["id"].(string)
		if !sameJSON(grown["preferences"], map[string]any{}) {
			t.Fatalf("default preferences: %v", grown)
		}
		e.want(e.do("POST", base[:len(base)-1], a.access, `{"name":"Null","preferences":null}`), 201, "null preferences")
		prefsOf := func(u *account, id string) any {
			t.Helper()
			m := e.want(e.do("GET", base+id, u.access, nil), 200, "get").json(t)
			if m["id"] != id {
				t.Fatalf("get %s: %v", id, m)
			}
			return m["preferences"]
		}
		if !sameJSON(prefsOf(a, kid), kidsPrefs) || !sameJSON(prefsOf(a, gid), map[string]any{}) {
			t.Fatal("get: preferences not as created")
		}
		l := e.want(e.do("GET", base[:len(base)-1], a.access, nil), 200, "list").json(t)["profiles"].([]any)
		if len(l) != 3 || !sameJSON(l[0].(map[string]any)["preferences"], kidsPrefs) ||
			!sameJSON(l[1].(map[string]any)["preferences"], map[string]any{}) || !sameJSON(l[2].(map[string]any)["preferences"], map[string]any{}) {
			t.Fatalf("list: %v", l)
		}
		e.want(e.do("DELETE", base+l[2].(map[string]any)["id"].(string), a.access, nil), 204, "delete the third")

		// Each profile's preferences are its own, and not the account's.
		auto := map[string]any{"autoplay": false}
		m := e.want(e.do("PUT", base+kid, a.access, map[string]any{"preferences": auto}), 200, "put kids' preferences").json(t)
		if m["name"] != "Kids" || !sameJSON(m["preferences"], auto) || m["created_at"] != kids["created_at"] {
			t.Fatalf("put: %v", m)
		}
		if !sameJSON(prefsOf(a, kid), auto) || !sameJSON(prefsOf(a, gid), map[string]any{}) {
			t.Fatal("setting one profile's preferences changed another's")
		}
		de := map[string]any{"subtitles": "de"}
		e.want(e.do("PUT", base+gid, a.access, map[string]any{"preferences": de}), 200, "put grown-ups' preferences")
		if !sameJSON(prefsOf(a, kid), auto) || !sameJSON(prefsOf(a, gid), de) {
			t.Fatal("setting one profile's preferences changed another's")
		}
		me := e.want(e.do("GET", "/api/users/me", a.access, nil), 200, "me").json(t)
		if !sameJSON(me["preferences"], map[string]any{}) {
			t.Fatalf("a profile's preferences reached the account's: %v", me["preferences"])
		}
		e.want(e.do("PUT", "/api/users/me", a.access, map[string]any{"preferences": map[string]any{"theme": "dark"}}), 200, "account's preferences")
		if !sameJSON(prefsOf(a, kid), auto) || !sameJSON(prefsOf(a, gid), de) {
			t.Fatal("the account's preferences changed a profile's")
		}

		// Absent or null fields stay; a rename keeps the preferences.
		for _, body := range []string{`{}`, `{"preferences":null}`, `{"name":null}`} {
			if m := e.want(e.do("PUT", base+kid, a.access, body), 200, body).json(t); m["name"] != "Kids" || !sameJSON(m["preferences"], auto) {
				t.Fatalf("put %s: %v", body, m)
			}
		}
		m = e.want(e.do("PUT", base+kid, a.access, map[string]any{"name": "Little ones"}), 200, "rename").json(t)
		if m["name"] != "Little ones" || !sameJSON(m["preferences"], auto) {
			t.Fatalf("rename: %v", m)
		}
		// Names stay unique per account, case ignored.
		e.want(e.do("PUT", base+kid, a.access, map[string]any{"name": "GROWN-UPS"}), 409, "rename to another profile's name")
		e.want(e.do("PUT", base+kid, a.access, map[string]any{"name": "LITTLE ONES"}), 200, "own name, other case")
		e.want(e.do("POST", base[:len(base)-1], a.access, map[string]any{"name": "little ones"}), 409, "create with a taken name")

		// SQL metacharacters in the name and inside the preferences: verbatim.
		metaPrefs := map[string]any{"q": sqlMeta, sqlMeta: map[string]any{sqlMeta: []any{sqlMeta}}}
		m = e.want(e.do("PUT", base+kid, a.access, map[string]any{"name": sqlMeta, "preferences": metaPrefs}), 200, "metachars").json(t)
		if m["name"] != sqlMeta || !sameJSON(m["preferences"], metaPrefs) {
			t.Fatalf("metachars: %s", e.do("GET", base+kid, a.access, nil).body)
		}
		got := e.want(e.do("GET", base+kid, a.access, nil), 200, "get metachars").json(t)
		if got["name"] != sqlMeta || !sameJSON(got["preferences"], metaPrefs) {
			t.Fatalf("not verbatim: %v", got)
		}

		// Too big, not an object, or not JSON: 400 or 413, never 500, and
		// nothing changes.
		big := bigString()
		bad := []any{
			map[string]any{"preferences": map[string]string{"big": big}},
			map[string]any{"preferences": map[string]string{"big": big[:100<<10]}},
			map[string]any{"preferences": []any{1, 2}},
			map[string]any{"preferences": "{}"},
			map[string]any{"preferences": 1},
			map[string]any{"preferences": true},
			map[string]any{"name": big},
			map[string]any{"name": ""},
			map[string]any{"name": "   "},
			map[string]any{"name": "tab\there"},
			map[string]any{"name": strings.Repeat("é", 65)},
			map[string]any{"name": 7},
			`{"preferences": {`,
			`{"preferences": {"a": 1}} {}`,
			`{"preferences": {"a": 1},}`,
			`{"preferences": {'a': 1}}`,
			`[{"preferences": {}}]`,
			`"preferences"`,
			`{"preferences":"` + strings.Repeat("a", 2<<20) + `"}`,
			`{"preferences": {"a": "x\u0000y"}}`,
			`{"preferences": {"\u0000": 1}}`,
			map[string]any{"preferences": map[string]any{}, "role": "admin"},
			map[string]any{"user_id": b.id},
		}
		for i, body := range bad {
			if r := e.do("PUT", base+kid, a.access, body); r.status != 400 && r.status != 413 {
				t.Errorf("put bad body %d: %d %.200s", i, r.status, r.body)
			}
			// The same preferences when creating (the name is fine; bad
			// names on create are Profiles' part).
			var create any = body
			if m, ok := body.(map[string]any); ok {
				if _, hasName := m["name"]; hasName {
					continue
				}
				c := map[string]any{"name": fmt.Sprint("New ", i)}
				for k, v := range m {
					c[k] = v
				}
				create = c
			}
			if r := e.do("POST", base[:len(base)-1], a.access, create); r.status != 400 && r.status != 413 {
				t.Errorf("create with bad body %d: %d %.200s", i, r.status, r.body)
			}
		}
		e.want(e.do("PUT", base+kid, a.access, `{"preferences": [1]}`), 400, "array preferences")
		e.want(e.do("PUT", base+kid, a.access, `{"preferences": {"a": "\u0000"}}`), 400, "NUL in preferences")
		// JSON PostgreSQL's jsonb may refuse and SQLite stores (numbers
		// beyond numeric's range): accepted or 400, never a 500 (do
		// fails the test on one).
		for _, v := range []string{"1e-40000", "0." + strings.Repeat("0", 20000) + "1", "1." + strings.Repeat("1", 20000),
			`"\ud800"`, strings.Repeat("[", 2000) + strings.Repeat("]", 2000)} {
			if r := e.do("PUT", base+gid, a.access, `{"preferences": {"v": `+v+`}}`); r.status != 200 && r.status != 400 {
				t.Errorf("preferences {\"v\": %.20s…}: %d %s", v, r.status, r.body)
			}
		}
		e.want(e.do("PUT", base+kid, a.access, map[string]any{"preferences": map[string]string{"big": big[:100<<10]}}), 400, "100 KB preferences")
		got = e.want(e.do("GET", base+kid, a.access, nil), 200, "get after bad bodies").json(t)
		if got["name"] != sqlMeta || !sameJSON(got["preferences"], metaPrefs) {
			t.Fatalf("a refused body changed the profile: %v", got)
		}
		if l := e.want(e.do("GET", base[:len(base)-1], a.access, nil), 200, "list").json(t)["profiles"].([]any); len(l) != 2 {
			t.Fatalf("a refused create added a profile: %d", len(l))
		}

		// Another account's profiles: not found, whatever the method; its
		// list and a profile of the same name are its own.
		bk := e.want(e.do("POST", base[:len(base)-1], b.access, map[string]any{"name": sqlMeta}), 201, "b's profile").json(t)
		bid := bk["id"].(string)
		for _, c := range []struct {
			u  *account
			id string
		}{{b, kid}, {b, gid}, {a, bid}} {
			e.want(e.do("GET", base+c.id, c.u.access, nil), 404, "get another's")
			e.want(e.do("PUT", base+c.id, c.u.access, map[string]any{"name": "Mine", "preferences": map[string]any{"x": 1}}), 404, "put another's")
			e.want(e.do("PUT", base+c.id, c.u.access, map[string]any{}), 404, "empty put of another's")
			e.want(e.do("DELETE", base+c.id, c.u.access, nil), 404, "delete another's")
		}
		bl := e.want(e.do("GET", base[:len(base)-1], b.access, nil), 200, "b's list").json(t)["profiles"].([]any)
		if len(bl) != 1 || bl[0].(map[string]any)["id"] != bid || !sameJSON(bl[0].(map[string]any)["preferences"], map[string]any{}) {
			t.Fatalf("b's list: %v", bl)
		}
		// No route reads an account's profiles by its id.
		e.want(e.do("GET", "/api/users/"+a.id+"/profiles", b.access, nil), 404, "profiles by account id")
		e.want(e.do("GET", "/api/users/"+a.id+"/profiles/"+kid, b.access, nil), 404, "profile by account id")
		for _, id := range []string{"nope", url(sqlMeta), "%00", "%FF", url(big[:4000])} {
			e.want(e.do("GET", base+id, a.access, nil), 404, "get unknown "+id[:min(len(id), 10)])
			e.want(e.do("PUT", base+id, a.access, map[string]any{"name": "x"}), 404, "put unknown "+id[:min(len(id), 10)])
		}
		for _, method := range []string{"GET", "PUT", "DELETE"} {
			e.want(e.do(method, base+kid, "", nil), 401, "anonymous "+method)
		}
		got = e.want(e.do("GET", base+kid, a.access, nil), 200, "get after b's tries").json(t)
		if got["name"] != sqlMeta || !sameJSON(got["preferences"], metaPrefs) {
			t.Fatalf("another account changed the profile: %v", got)
		}

		// Out of the family tier: existing profiles can still be edited.
		e.want(e.do("POST", "/api/users/"+a.id+"/subscription", admin.access, map[string]string{"tier": "free"}), 200, "free")
		e.login(a)
		e.want(e.do("PUT", base+kid, a.access, map[string]any{"preferences": auto}), 200, "edit after leaving the tier")
		e.want(e.do("DELETE", base+kid, a.access, nil), 204, "delete")
		e.want(e.do("GET", base+kid, a.access, nil), 404, "get deleted")
		e.want(e.do("PUT", base+kid, a.access, map[string]any{"preferences": auto}), 404, "put deleted")
	})
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	var u, v any
	return err1 == nil && err2 == nil && json.Unmarshal(x, &u) == nil && json.Unmarshal(y, &v) == nil && reflect.DeepEqual(u, v)
}
