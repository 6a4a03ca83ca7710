package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	neturl "net/url"
	"slices"
	"strings"
	"testing"

	"github.com/streamd/streamd/api"
	"github.com/streamd/streamd/store"
)

const sqlMeta = `'; DROP TABLE channels; -- " \ % _ $1 ? :name ` + "`x` ünï 字 🎥"

func qesc(s string) string { return neturl.QueryEscape(s) }

func bigString() string { return strings.Repeat("x'\"%_;-- ", (1<<20)/9) }

func TestPublishChannels(t *testing.T) {
	for name, open := range backends {
		t.Run(name, func(t *testing.T) { publishChannels(t, open) })
	}
}

func publishChannels(t *testing.T, open backend) {
	ctx := context.Background()
	e := newEnv(t, open, api.Limits{})
	admin, pubA, pubB := e.register(store.RoleAdmin), e.register(store.RolePublisher), e.register(store.RolePublisher)
	viewer := e.register(store.RoleViewer)

	// Viewers and anonymous callers reach none of it.
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/publish/channels"}, {"POST", "/api/publish/channels"},
		{"GET", "/api/publish/channels/x"}, {"PUT", "/api/publish/channels/x"},
		{"DELETE", "/api/publish/channels/x"}, {"POST", "/api/publish/channels/x/rotate-key"},
		{"POST", "/api/content"},
	} {
		body := any(nil)
		if c.method == "POST" || c.method == "PUT" {
			body = map[string]string{"name": "x", "title": "x"}
		}
		if r := e.do(c.method, c.path, viewer.access, body); r.status != 403 || r.code(t) != "permission_denied" {
			t.Errorf("viewer %s %s: %d %s", c.method, c.path, r.status, r.body)
		}
		e.want(e.do(c.method, c.path, "", body), 401, "anonymous "+c.method+" "+c.path)
	}

	// A creates a channel: the key comes once, and opens the channel.
	r := e.want(e.do("POST", "/api/publish/channels", pubA.access, map[string]string{"name": "a-news", "title": sqlMeta, "description": sqlMeta}), 201, "create")
	m := r.json(t)
	keyA := m["stream_key"].(string)
	e.secrets = append(e.secrets, keyA)
	if len(keyA) < 32 || m["key_prefix"] != keyA[:4] || m["owner_id"] != pubA.id || m["managed_by"] != "api" ||
		m["title"] != sqlMeta || m["description"] != sqlMeta || m["play_url"] != "/live/a-news/index.m3u8" ||
		r.header.Get("Location") != "/api/publish/channels/a-news" {
		t.Fatalf("create answer: %s", r.body)
	}
	if ch, err := e.meta.ChannelByStreamKey(ctx, keyA); err != nil || ch.Name != "a-news" {
		t.Fatalf("the returned key does not open the channel: %v", err)
	}
	got := e.want(e.do("GET", "/api/publish/channels/a-news", pubA.access, nil), 200, "get own")
	if strings.Contains(string(got.body), keyA) || got.json(t)["stream_key"] != nil {
		t.Fatalf("GET shows the key: %s", got.body)
	}
	e.want(e.do("POST", "/api/publish/channels", pubB.access, map[string]string{"name": "a-news"}), 409, "B takes A's name")
	e.want(e.do("POST", "/api/publish/channels", pubB.access, map[string]string{"name": "b-sport"}), 201, "B creates")

	// B can neither see nor touch A's channel; it looks like nothing.
	e.want(e.do("GET", "/api/publish/channels/a-news", pubB.access, nil), 404, "B reads A's")
	e.want(e.do("PUT", "/api/publish/channels/a-news", pubB.access, map[string]string{"title": "mine"}), 404, "B changes A's")
	e.want(e.do("POST", "/api/publish/channels/a-news/rotate-key", pubB.access, nil), 404, "B rotates A's")
	e.want(e.do("DELETE", "/api/publish/channels/a-news", pubB.access, nil), 404, "B deletes A's")
	if ch, err := e.meta.GetChannel(ctx, "a-news"); err != nil || ch.Title != sqlMeta {
		t.Fatalf("A's channel changed: %+v %v", ch, err)
	}
	if ch, err := e.meta.ChannelByStreamKey(ctx, keyA); err != nil || ch.Name != "a-news" {
		t.Fatalf("A's key changed: %v", err)
	}
	names := func(who *account, query string) []string {
		var out []string
		for _, c := range e.want(e.do("GET", "/api/publish/channels"+query, who.access, nil), 200, "list").json(t)["channels"].([]any) {
			out = append(out, c.(map[string]any)["name"].(string))
		}
		return out
	}
	if l := names(pubA, ""); !slices.Equal(l, []string{"a-news"}) {
		t.Fatalf("A lists %v", l)
	}
	if l := names(pubB, ""); !slices.Equal(l, []string{"b-sport"}) {
		t.Fatalf("B lists %v", l)
	}

	// Rotation: new key once, old one dead at once.
	m = e.want(e.do("POST", "/api/publish/channels/a-news/rotate-key", pubA.access, nil), 200, "rotate").json(t)
	keyA2 := m["stream_key"].(string)
	e.secrets = append(e.secrets, keyA2)
	if keyA2 == keyA || m["key_prefix"] != keyA2[:4] {
		t.Fatalf("rotate answer: %v", m)
	}
	if _, err := e.meta.ChannelByStreamKey(ctx, keyA); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old key after rotation: %v", err)
	}
	if ch, err := e.meta.ChannelByStreamKey(ctx, keyA2); err != nil || ch.Name != "a-news" {
		t.Fatalf("new key: %v", err)
	}
	up := e.want(e.do("PUT", "/api/publish/channels/a-news", pubA.access, map[string]string{"description": "plain"}), 200, "update").json(t)
	if up["title"] != sqlMeta || up["description"] != "plain" {
		t.Fatalf("update: %v", up)
	}

	// Admins manage everyone's, and config channels except their key.
	if _, err := e.meta.CreateChannel(ctx, store.Channel{Name: "main", FromConfig: true}, "config-key-main-0123456789"); err != nil {
		t.Fatal(err)
	}
	e.secrets = append(e.secrets, "config-key-main-0123456789")
	if l := names(admin, ""); !slices.Equal(l, []string{"a-news", "b-sport", "main"}) {
		t.Fatalf("admin lists %v", l)
	}
	if l := names(admin, "?owner=me"); len(l) != 0 {
		t.Fatalf("admin's own: %v", l)
	}
	e.want(e.do("GET", "/api/publish/channels/main", pubA.access, nil), 404, "publisher reads a config channel")
	e.want(e.do("PUT", "/api/publish/channels/b-sport", admin.access, map[string]string{"title": "Sport"}), 200, "admin changes B's")
	if c := e.want(e.do("POST", "/api/publish/channels/main/rotate-key", admin.access, nil), 409, "rotate a config channel").code(t); c != "conflict" {
		t.Fatalf("code %q", c)
	}
	e.want(e.do("DELETE", "/api/publish/channels/main", admin.access, nil), 409, "delete a config channel")
	if m := e.want(e.do("PUT", "/api/publish/channels/main", admin.access, map[string]string{"title": "Main"}), 200, "title of a config channel").json(t); m["managed_by"] != "config" {
		t.Fatalf("config channel: %v", m)
	}
	m = e.want(e.do("POST", "/api/publish/channels/b-sport/rotate-key", admin.access, nil), 200, "admin rotates B's").json(t)
	e.secrets = append(e.secrets, m["stream_key"].(string))

	// Names are URL path elements: strictly checked. Free text is kept
	// verbatim up to its limit, refused beyond; never a 500.
	big := bigString()
	for _, name := range []string{"", "UPPER", "a/b", "..", "-x", sqlMeta, strings.Repeat("a", 65), big} {
		r := e.do("POST", "/api/publish/channels", pubA.access, map[string]string{"name": name})
		if r.status != 400 && r.status != 413 {
			t.Errorf("name %.20q: %d %s", name, r.status, r.body)
		}
	}
	for i, body := range []map[string]string{
		{"name": "t1", "title": big}, {"name": "t2", "description": big}, {"name": "t3", "title": "nul\x00"},
		{"name": "t4", "description": strings.Repeat("é", 40000)},
	} {
		r := e.do("POST", "/api/publish/channels", pubA.access, body)
		if r.status != 400 && r.status != 413 {
			t.Errorf("body %d: %d %s", i, r.status, r.body)
		}
	}
	for _, body := range []map[string]string{{"title": big}, {"description": big}, {"title": "\x00"}} {
		if r := e.do("PUT", "/api/publish/channels/a-news", pubA.access, body); r.status != 400 && r.status != 413 {
			t.Errorf("PUT %.20q: %d", fmt.Sprint(body), r.status)
		}
	}
	long := strings.Repeat(sqlMeta, 1000/len(sqlMeta))
	r = e.want(e.do("PUT", "/api/publish/channels/a-news", pubA.access, map[string]string{"title": long, "description": long}), 200, "long metachar title")
	if g := e.want(e.do("GET", "/api/publish/channels/a-news", pubA.access, nil), 200, "get").json(t); g["title"] != long || g["description"] != long {
		t.Fatal("metachar text not stored verbatim")
	}
	for _, path := range []string{"/api/publish/channels/" + url(sqlMeta), "/api/publish/channels/%25", "/api/publish/channels/" + url(sqlMeta) + "/rotate-key"} {
		method := "GET"
		if strings.HasSuffix(path, "rotate-key") {
			method = "POST"
		}
		e.want(e.do(method, path, admin.access, nil), 404, method+" "+path)
	}
	e.want(e.do("POST", "/api/publish/channels", pubA.access, `{"name":"z1","owner_id":"`+pubB.id+`"}`), 400, "owner_id field")
	e.want(e.do("PUT", "/api/publish/channels/a-news", pubA.access, `{"stream_key":"mine-now-123456"}`), 400, "stream_key field")

	// Delete: the key dies with the channel.
	e.want(e.do("DELETE", "/api/publish/channels/a-news", pubA.access, nil), 204, "delete")
	e.want(e.do("GET", "/api/publish/channels/a-news", pubA.access, nil), 404, "get deleted")
	if _, err := e.meta.ChannelByStreamKey(ctx, keyA2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("key of a deleted channel: %v", err)
	}
	if strings.Contains(e.logs.String(), "stream_key") {
		t.Fatal("logs mention stream_key")
	}
}

func TestCatalog(t *testing.T) {
	for name, open := range backends {
		t.Run(name, func(t *testing.T) { catalog(t, open) })
	}
}

func catalog(t *testing.T, open backend) {
	e := newEnv(t, open, api.Limits{})
	pub, viewer := e.register(store.RolePublisher), e.register(store.RoleViewer)
	create := func(title, desc, genre, vis string) string {
		t.Helper()
		body := map[string]string{"title": title, "description": desc, "genre": genre}
		if vis != "" {
			body["visibility"] = vis
		}
		r := e.want(e.do("POST", "/api/content", pub.access, body), 201, "create "+title)
		m := r.json(t)
		if m["title"] != title || m["description"] != desc || m["genre"] != genre || m["encoding_status"] != "pending" ||
			r.header.Get("Location") != "/api/content/"+m["id"].(string) || m["owner_id"] != nil {
			t.Fatalf("create answer: %s", r.body)
		}
		return m["id"].(string)
	}
	news := create("Evening News", "the day", "news", "")
	secret := create("Members News", "for members", "news", "protected")
	cook := create("Cooking 100%", "recipes_and_more", "food", "public")
	meta := create(sqlMeta, sqlMeta, sqlMeta, "")
	football := create("Match", "FOOTBALL highlights", "sport", "")

	list := func(token, query string) ([]string, string) {
		t.Helper()
		m := e.want(e.do("GET", "/api/content"+query, token, nil), 200, "list "+query).json(t)
		var ids []string
		for _, it := range m["items"].([]any) {
			ids = append(ids, it.(map[string]any)["id"].(string))
		}
		next, _ := m["next_after"].(string)
		return ids, next
	}
	sorted := func(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
	for _, c := range []struct {
		token, query string
		want         []string
	}{
		{"", "", []string{news, cook, meta, football}},
		{viewer.access, "", []string{news, secret, cook, meta, football}},
		{"", "?genre=news", []string{news}},
		{viewer.access, "?genre=news", []string{news, secret}},
		{"", "?q=NEWS", []string{news}},
		{viewer.access, "?q=news&genre=news", []string{news, secret}},
		{"", "?q=football", []string{football}},
		{"", "?q=" + qesc("100%"), []string{cook}},
		{"", "?q=%25", []string{cook, meta}},
		{"", "?q=_", []string{cook, meta}},
		{"", "?q=" + qesc("' OR '1'='1"), nil},
		{"", "?genre=" + qesc(sqlMeta), []string{meta}},
		{"", "?q=" + qesc(sqlMeta), []string{meta}},
		{"", "?genre=%25", nil},
	} {
		got, _ := list(c.token, c.query)
		if !slices.Equal(sorted(got), sorted(c.want)) {
			t.Errorf("list %s (logged in %v): %v, want %v", c.query, c.token != "", got, c.want)
		}
	}
	// Paging: every item once.
	var paged []string
	after := ""
	for range 10 {
		ids, next := list(viewer.access, "?limit=2&after="+after)
		paged = append(paged, ids...)
		if next == "" {
			break
		}
		after = next
	}
	if all, _ := list(viewer.access, "?limit=100"); !slices.Equal(paged, all) || len(all) != 5 {
		t.Fatalf("paged %v, all %v", paged, all)
	}

	// One item: protected ones need a login.
	e.want(e.do("GET", "/api/content/"+news, "", nil), 200, "public item, anonymous")
	if r := e.want(e.do("GET", "/api/content/"+secret, "", nil), 401, "protected item, anonymous"); r.header.Get("WWW-Authenticate") == "" {
		t.Fatal("401 without WWW-Authenticate")
	}
	if m := e.want(e.do("GET", "/api/content/"+secret, viewer.access, nil), 200, "protected item, viewer").json(t); m["title"] != "Members News" {
		t.Fatalf("item: %v", m)
	}
	if m := e.want(e.do("GET", "/api/content/"+meta, "", nil), 200, "metachar item").json(t); m["title"] != sqlMeta || m["genre"] != sqlMeta {
		t.Fatal("metachars not returned verbatim")
	}
	for _, id := range []string{"nope", url(sqlMeta), "%25", url("' OR '1'='1")} {
		e.want(e.do("GET", "/api/content/"+id, "", nil), 404, "item "+id)
	}
	e.want(e.do("GET", "/api/content", "not-a-token", nil), 401, "a bad token is not anonymous")
	e.want(e.do("GET", "/api/content/"+news, "not-a-token", nil), 401, "a bad token on an item")

	// Bad parameters and bodies: 400 (or 413/431 for huge ones), never 500.
	for _, q := range []string{"?limit=0", "?limit=101", "?limit=x", "?after=nope", "?after=" + qesc(sqlMeta), "?q=a;b", "?q=%zz",
		"?q=" + strings.Repeat("a", 257), "?genre=" + strings.Repeat("g", 300), "?q=%00", "?genre=%FF",
		"?q=" + strings.Repeat("x", 100<<10)} {
		r := e.do("GET", "/api/content"+q, "", nil)
		if r.status != 400 && r.status != 431 {
			t.Errorf("GET /api/content%.40s: %d %s", q, r.status, r.body)
		}
	}
	big := bigString()
	for i, body := range []map[string]string{
		{"title": ""}, {"title": big}, {"title": "t", "description": big}, {"title": "t", "genre": big},
		{"title": "t", "genre": strings.Repeat("g", 257)}, {"title": "t", "visibility": "secret"},
		{"title": "t", "visibility": sqlMeta}, {"title": "nul\x00"}, {"title": "t", "id": "chosen"},
	} {
		r := e.do("POST", "/api/content", pub.access, body)
		if r.status != 400 && r.status != 413 {
			t.Errorf("create %d: %d %s", i, r.status, r.body)
		}
	}
	// Right at the limits: stored verbatim.
	long := strings.Repeat("'%_", 64<<10/3)
	r := e.want(e.do("POST", "/api/content", pub.access, map[string]string{"title": strings.Repeat("ü", 512), "description": long,
		"genre": strings.Repeat("%", 256)}), 201, "at the limits")
	id := r.json(t)["id"].(string)
	if m := e.want(e.do("GET", "/api/content/"+id, "", nil), 200, "get").json(t); m["description"] != long || m["genre"] != strings.Repeat("%", 256) {
		t.Fatal("not verbatim at the limits")
	}
	req, _ := http.NewRequest("POST", e.url+"/api/content", strings.NewReader(`{"title":"x"}`))
	req.Header.Set("Authorization", "Bearer "+pub.access)
	req.Header.Set("Content-Type", "text/plain")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 415 {
		t.Fatalf("text/plain: %d", res.StatusCode)
	}
}
