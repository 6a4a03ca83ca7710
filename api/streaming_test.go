package api_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/streamd/streamd/api"
	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/playback"
	"github.com/streamd/streamd/store"
)

func TestStreaming(t *testing.T) {
	for name, open := range backends {
		t.Run(name, func(t *testing.T) { streaming(t, open) })
	}
}

// streaming: GET /api/streaming/{id} for catalog items and channels, and
// PUT /api/content/{id}.
func streaming(t *testing.T, open backend) {
	signer, err := auth.NewURLSigner(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, open, api.Limits{}, auth.Config{}, func(e *env, d *api.Deps) {
		d.Playback = playback.Issuer{Signer: signer, TTL: time.Hour,
			TierMaxHeight: map[store.Tier]int{store.TierFree: 720},
			AdFree:        map[store.Tier]bool{store.TierPremium: true}}
	})
	ctx := context.Background()
	pub, other, viewer := e.register(store.RolePublisher), e.register(store.RolePublisher), e.register(store.RoleViewer)
	mk := func(vis string) string {
		t.Helper()
		m := e.want(e.do("POST", "/api/content", pub.access, map[string]string{"title": "t", "visibility": vis}), 201, "create").json(t)
		return m["id"].(string)
	}
	public, protected := mk("public"), mk("protected")

	// Not encoded yet: 409 with a pointer to the progress.
	r := e.want(e.do("GET", "/api/streaming/"+public, "", nil), 409, "pending item")
	if !bytes.Contains(r.body, []byte("pending")) {
		t.Errorf("409 body %s", r.body)
	}
	for _, id := range []string{public, protected} {
		if err := e.meta.UpdateEncoding(ctx, id, store.Encoding{Status: store.EncodingReady, Progress: 100}); err != nil {
			t.Fatal(err)
		}
	}

	m := e.want(e.do("GET", "/api/streaming/"+public, "", nil), 200, "public item, anonymous").json(t)
	if m["hls"] != "/vod/"+public+"/index.m3u8" || m["dash"] != "/vod/"+public+"/manifest.mpd" || m["protected"] != false ||
		m["kind"] != "content" || m["expires_at"] != nil || m["ads"] != true {
		t.Fatalf("public item: %v", m)
	}
	// Ads: anonymous and free viewers see them, premium ones do not.
	// A tier raised after login counts at once: no need to wait for the
	// access token to be refreshed.
	premium := e.register(store.RoleViewer)
	if _, _, err := e.svc.SetTier(ctx, premium.id, store.TierPremium); err != nil {
		t.Fatal(err)
	}
	if m := e.want(e.do("GET", "/api/streaming/"+public, viewer.access, nil), 200, "free viewer").json(t); m["ads"] != true {
		t.Errorf("free viewer: ads %v", m["ads"])
	}
	if m := e.want(e.do("GET", "/api/streaming/"+protected, premium.access, nil), 200, "premium viewer").json(t); m["ads"] != false || m["max_height"] != nil {
		t.Errorf("premium viewer: %v", m)
	}
	e.want(e.do("GET", "/api/streaming/"+protected, "", nil), 401, "protected item, anonymous")
	e.want(e.do("GET", "/api/streaming/"+protected, "not-a-token", nil), 401, "protected item, bad token")
	m = e.want(e.do("GET", "/api/streaming/"+protected, viewer.access, nil), 200, "protected item, viewer").json(t)
	hls, _ := m["hls"].(string)
	dash, _ := m["dash"].(string)
	tok, ok := strings.CutPrefix(hls, "/vod/"+protected+"/index.m3u8?st=")
	if !ok || dash != "/vod/"+protected+"/manifest.mpd?st="+tok || m["max_height"] != float64(720) || m["expires_at"] == nil {
		t.Fatalf("protected item: %v", m)
	}
	g, err := signer.Verify(tok, "/vod/"+protected+"/r0/seg-00001.m4s", "", time.Now())
	if err != nil || g.MaxHeight != 720 {
		t.Fatalf("the token does not open the item's segments: %+v %v", g, err)
	}
	if _, err := signer.Verify(tok, "/vod/"+public+"/index.m3u8", "", time.Now()); err == nil {
		t.Fatal("the token opens another item")
	}
	e.secrets = append(e.secrets, tok)

	// Channels, by name.
	e.want(e.do("POST", "/api/publish/channels", pub.access, map[string]string{"name": "open"}), 201, "public channel")
	m = e.want(e.do("POST", "/api/publish/channels", pub.access, map[string]string{"name": "paid", "visibility": "protected"}), 201, "protected channel").json(t)
	if m["visibility"] != "protected" {
		t.Fatalf("created channel: %v", m)
	}
	e.want(e.do("POST", "/api/publish/channels", pub.access, map[string]string{"name": "x", "visibility": "secret"}), 400, "unknown visibility")
	if m = e.want(e.do("GET", "/api/streaming/open", "", nil), 200, "public channel").json(t); m["hls"] != "/live/open/index.m3u8" || m["kind"] != "channel" {
		t.Fatalf("public channel: %v", m)
	}
	e.want(e.do("GET", "/api/streaming/paid", "", nil), 401, "protected channel, anonymous")
	if m = e.want(e.do("GET", "/api/streaming/paid", viewer.access, nil), 200, "protected channel").json(t); !strings.HasPrefix(m["hls"].(string), "/live/paid/index.m3u8?st=") {
		t.Fatalf("protected channel: %v", m)
	}
	if m = e.want(e.do("PUT", "/api/publish/channels/open", pub.access, map[string]string{"visibility": "protected"}), 200, "protect a channel").json(t); m["visibility"] != "protected" {
		t.Fatalf("after PUT: %v", m)
	}
	e.want(e.do("GET", "/api/streaming/open", "", nil), 401, "channel protected by PUT")
	for _, id := range []string{"nope", url(sqlMeta), strings.Repeat("a", 300), url(bigString()[:4000])} {
		r := e.do("GET", "/api/streaming/"+id, viewer.access, nil)
		if r.status != 404 && r.status != 431 && r.status != 414 {
			t.Errorf("streaming %.20s: %d %s", id, r.status, r.body)
		}
	}

	// PUT /api/content/{id}: the owner (or an admin) only.
	e.want(e.do("PUT", "/api/content/"+public, viewer.access, map[string]string{"visibility": "protected"}), 403, "viewer edits")
	e.want(e.do("PUT", "/api/content/"+public, other.access, map[string]string{"visibility": "protected"}), 404, "another publisher edits")
	m = e.want(e.do("PUT", "/api/content/"+public, pub.access, map[string]string{"visibility": "protected", "title": sqlMeta}), 200, "owner edits").json(t)
	if m["visibility"] != "protected" || m["title"] != sqlMeta || m["encoding_status"] != "ready" {
		t.Fatalf("after PUT: %v", m)
	}
	e.want(e.do("GET", "/api/streaming/"+public, "", nil), 401, "item protected by PUT")
	big := bigString()
	for i, body := range []map[string]string{
		{"title": ""}, {"title": big}, {"description": big}, {"genre": big}, {"visibility": "secret"},
		{"visibility": sqlMeta}, {"title": "nul\x00"}, {"owner_id": "me"},
	} {
		r := e.do("PUT", "/api/content/"+public, pub.access, body)
		if r.status != 400 && r.status != 413 {
			t.Errorf("PUT %d: %d %s", i, r.status, r.body)
		}
	}
	e.want(e.do("PUT", "/api/content/nope", pub.access, map[string]string{"title": "x"}), 404, "unknown item")

	// Log out everywhere revokes the playback URLs issued until then; a
	// URL issued after works. So does a password change.
	v := e.register(store.RoleViewer)
	urlOf := func(a *account) auth.Grant {
		t.Helper()
		m := e.want(e.do("GET", "/api/streaming/"+protected, a.access, nil), 200, "streaming").json(t)
		tok := strings.SplitN(m["hls"].(string), "?st=", 2)[1]
		g, err := signer.Verify(tok, "/vod/"+protected+"/index.m3u8", "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	before := urlOf(v)
	if before.Subject != v.id {
		t.Fatalf("token subject %q, want the viewer %q", before.Subject, v.id)
	}
	if auth.NewPlaybackRevocations(e.sessions, nil).Revoked(ctx, before.Subject, before.IssuedAt) {
		t.Fatal("a fresh URL is revoked")
	}
	time.Sleep(2 * time.Millisecond) // issue times are in milliseconds
	e.want(e.do("POST", "/api/auth/logout-all", v.access, nil), 204, "log out everywhere")
	e.login(v)
	after := urlOf(v)
	rev := auth.NewPlaybackRevocations(e.sessions, nil)
	if !rev.Revoked(ctx, before.Subject, before.IssuedAt) || rev.Revoked(ctx, after.Subject, after.IssuedAt) {
		t.Fatal("log out everywhere: the old URL must be revoked, the new one not")
	}
	time.Sleep(2 * time.Millisecond)
	next := "another passphrase " + store.NewID()
	e.secrets = append(e.secrets, next)
	e.want(e.do("PUT", "/api/users/me/password", v.access, map[string]string{"current_password": v.password, "new_password": next}), 204, "password change")
	if !auth.NewPlaybackRevocations(e.sessions, nil).Revoked(ctx, after.Subject, after.IssuedAt) {
		t.Fatal("a password change leaves the URLs issued before it working")
	}

	// Without a signer, protected playback is unavailable, not open.
	e2 := newEnv(t, open, api.Limits{})
	v2, p2 := e2.register(store.RoleViewer), e2.register(store.RolePublisher)
	id := e2.want(e2.do("POST", "/api/content", p2.access, map[string]string{"title": "t", "visibility": "protected"}), 201, "create").json(t)["id"].(string)
	if err := e2.meta.UpdateEncoding(ctx, id, store.Encoding{Status: store.EncodingReady, Progress: 100}); err != nil {
		t.Fatal(err)
	}
	e2.want(e2.do("GET", "/api/streaming/"+id, v2.access, nil), 503, "no signer")
}
