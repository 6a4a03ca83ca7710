package web

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/streamd/streamd/live"
)

type fakeChannels []live.ChannelStatus

func (f fakeChannels) Status() []live.ChannelStatus { return f }

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestIndex(t *testing.T) {
	h := New(fakeChannels{}, slog.New(slog.DiscardHandler))
	rec := get(t, h, "GET", "/", nil)
	if rec.Code != 200 {
		t.Fatalf("GET /: %d", rec.Code)
	}
	for k, want := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"Cache-Control":          "no-cache",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := rec.Header().Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "media-src 'self' blob:") {
		t.Errorf("CSP %q", csp)
	}
	body := rec.Body.String()
	for _, want := range []string{"<h1>streamd</h1>", "<video id=\"video\" controls muted autoplay playsinline>", `src="static/hls.min.js"`, `src="static/app.js"`, `href="static/style.css"`,
		`<label for="quality">Quality</label>`, `<select id="quality">`} {
		if !strings.Contains(body, want) {
			t.Errorf("index lacks %q", want)
		}
	}
	// The library sits under the channel list, in the same side column,
	// with a readable empty state and its own error line.
	side := strings.Index(body, `<div class="side">`)
	chans := strings.Index(body, `<ul id="channels"></ul>`)
	lib := strings.Index(body, `<section class="library" aria-label="Library">`)
	if side < 0 || chans < side || lib < chans {
		t.Errorf("library section not under the channel list in the side column (side %d, channels %d, library %d)", side, chans, lib)
	}
	for _, want := range []string{`<h2>Library</h2>`, `<ul id="library"></ul>`,
		`<p id="libraryempty" class="note" hidden>No videos yet.</p>`, `<p id="libraryerror" class="error" hidden></p>`} {
		if !strings.Contains(body, want) {
			t.Errorf("index lacks %q", want)
		}
	}
	// The sign-in area sits in the header: every field has a label, the
	// status line is a polite live region, the code field and the Sign
	// out button start hidden.
	head := body[strings.Index(body, "<header>"):strings.Index(body, "</header>")]
	for _, want := range []string{`<form id="signin" class="signin" aria-label="Sign in" novalidate>`,
		`<label class="vh" for="login">Username or email</label>`, `autocomplete="username"`,
		`<label class="vh" for="password">Password</label>`, `<input id="password" name="password" type="password" autocomplete="current-password"`,
		`<span id="mfabox" class="mfa" hidden>`, `<label class="vh" for="mfacode">`, `autocomplete="one-time-code"`,
		`<button id="signinbtn" type="submit">Sign in</button>`, `<button id="signout" type="button" hidden>Sign out</button>`,
		`<p id="authstatus" class="authstatus" role="status" aria-live="polite"></p>`,
		`<p id="autherror" class="autherror" role="alert" hidden></p>`} {
		if !strings.Contains(head, want) {
			t.Errorf("header lacks %q", want)
		}
	}
	for _, m := range regexp.MustCompile(`<input id="([a-z]+)"`).FindAllStringSubmatch(body, -1) {
		if !strings.Contains(body, `for="`+m[1]+`"`) {
			t.Errorf("input %s has no label", m[1])
		}
	}
	// CSP forbids inline script and style: every script is a file, and no
	// element carries a style or an event handler attribute.
	if n, m := strings.Count(body, "<script"), strings.Count(body, `<script src="static/`); n != m {
		t.Errorf("%d scripts, %d of them from static/: inline script", n, m)
	}
	if inline := regexp.MustCompile(`(?i)<style|\sstyle=|\son[a-z]+=`).FindString(body); inline != "" {
		t.Errorf("index has inline style or handler: %q", inline)
	}
	// Revalidation is a cheap 304.
	rec2 := get(t, h, "GET", "/", map[string]string{"If-None-Match": rec.Header().Get("ETag")})
	if rec2.Code != 304 {
		t.Errorf("revalidation: %d, want 304", rec2.Code)
	}
	if rec := get(t, h, "HEAD", "/", nil); rec.Code != 200 || rec.Body.Len() != 0 {
		t.Errorf("HEAD /: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	if rec := get(t, h, "POST", "/", nil); rec.Code != 405 {
		t.Errorf("POST /: %d, want 405", rec.Code)
	}
}

func TestStatic(t *testing.T) {
	h := New(fakeChannels{}, slog.New(slog.DiscardHandler))
	for _, tc := range []struct{ path, ct, contains string }{
		{"/static/app.js", "text/javascript; charset=utf-8", "api/channels"},
		{"/static/app.js", "text/javascript; charset=utf-8", "hls.nextLevel = "},
		{"/static/app.js", "text/javascript; charset=utf-8", "'api/content?limit=' + LIBRARY_LIMIT"},
		{"/static/app.js", "text/javascript; charset=utf-8", "LIBRARY_LIMIT = 50;"},
		{"/static/app.js", "text/javascript; charset=utf-8", "LIBRARY_POLL_MS = 5000;"},
		{"/static/app.js", "text/javascript; charset=utf-8", "it.play.hls"},
		{"/static/app.js", "text/javascript; charset=utf-8", "'Processing ' + "},
		{"/static/app.js", "text/javascript; charset=utf-8", "'Failed: ' + it.encoding_reason"},
		{"/static/app.js", "text/javascript; charset=utf-8", "'api/streaming/' + encodeURIComponent(src.id)"},
		{"/static/app.js", "text/javascript; charset=utf-8", "'api/auth/refresh'"},
		{"/static/app.js", "text/javascript; charset=utf-8", "window.sessionStorage"},
		{"/static/app.js", "text/javascript; charset=utf-8", "'Sign in to watch “' + "},
		{"/static/app.js", "text/javascript; charset=utf-8", "'Members'"},
		{"/static/style.css", "text/css; charset=utf-8", "#library"},
		{"/static/style.css", "text/css; charset=utf-8", ".badge.members"},
		{"/static/style.css", "text/css; charset=utf-8", ".badge"},
		{"/static/hls.min.js", "text/javascript; charset=utf-8", "isSupported"},
		{"/static/hls.js.LICENSE.txt", "text/plain; charset=utf-8", "Apache License"},
	} {
		rec := get(t, h, "GET", tc.path, nil)
		if rec.Code != 200 {
			t.Errorf("%s: %d", tc.path, rec.Code)
			continue
		}
		if got := rec.Header().Get("Content-Type"); got != tc.ct {
			t.Errorf("%s: Content-Type %q, want %q", tc.path, got, tc.ct)
		}
		if got := rec.Header().Get("Cache-Control"); got != "public, max-age=300" {
			t.Errorf("%s: Cache-Control %q", tc.path, got)
		}
		if rec.Header().Get("ETag") == "" {
			t.Errorf("%s: no ETag", tc.path)
		}
		if !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("%s: body lacks %q", tc.path, tc.contains)
		}
	}
	// User data (channel names, titles, genres, reasons) goes in as text:
	// the page's own script never parses markup.
	if rec := get(t, h, "GET", "/static/app.js", nil); regexp.MustCompile(`\.(inner|outer)HTML\b|insertAdjacentHTML|document\.write|\beval\(|new Function`).MatchString(rec.Body.String()) {
		t.Errorf("app.js builds markup from strings")
	}
	// Tokens stay in the tab's sessionStorage and out of the console.
	if rec := get(t, h, "GET", "/static/app.js", nil); regexp.MustCompile(`localStorage|document\.cookie|\bconsole\.`).MatchString(rec.Body.String()) {
		t.Errorf("app.js uses localStorage, cookies or the console")
	}
	// The vendored hls.js is the pinned version.
	if rec := get(t, h, "GET", "/static/hls.min.js", nil); !strings.Contains(rec.Body.String(), `"1.7.4"`) {
		t.Errorf("hls.min.js is not version 1.7.4")
	}
	for _, p := range []string{"/static/nope.js", "/static/README", "/static/index.html", "/static/", "/static/../web.go", "/static/a/app.js", "/nope", "/api/nope", "/index.html"} {
		rec := get(t, h, "GET", p, nil)
		if rec.Code != 404 && rec.Code != 301 && rec.Code != 307 {
			t.Errorf("%s: %d, want 404", p, rec.Code)
		}
		if rec.Code == 200 {
			t.Errorf("%s served", p)
		}
	}
	if rec := get(t, h, "GET", "/static/nope.js", nil); rec.Code != 404 || rec.Body.String() != "not found\n" {
		t.Errorf("unknown static: %d %q", rec.Code, rec.Body)
	}
}

func TestAPIChannels(t *testing.T) {
	since := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h := New(fakeChannels{
		{Name: "main", Live: true, Protocol: "rtmp", Since: since, Codecs: []string{"h264", "aac"}},
		{Name: "<b>x</b> & y"},
	}, slog.New(slog.DiscardHandler))
	rec := get(t, h, "GET", "/api/channels", nil)
	if rec.Code != 200 {
		t.Fatalf("%d %q", rec.Code, rec.Body)
	}
	if ct, cc := rec.Header().Get("Content-Type"), rec.Header().Get("Cache-Control"); ct != "application/json" || cc != "no-store" {
		t.Errorf("Content-Type %q Cache-Control %q", ct, cc)
	}
	var got []map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if len(got) != 2 {
		t.Fatalf("%d channels: %s", len(got), rec.Body)
	}
	want0 := map[string]any{
		"name": "main", "live": true, "protocol": "rtmp", "since": "2026-03-01T12:00:00Z",
		"codecs": []any{"h264", "aac"}, "url": "/live/main/index.m3u8",
	}
	if len(got[0]) != len(want0) {
		t.Errorf("live entry keys: %v", got[0])
	}
	for k, v := range want0 {
		if g, _ := json.Marshal(got[0][k]); string(g) != mustJSON(v) {
			t.Errorf("%s: %s, want %s", k, g, mustJSON(v))
		}
	}
	// Offline: no protocol, since or codecs; the name is path-escaped in
	// the URL and left to the page to escape in the DOM.
	want1 := map[string]any{"name": "<b>x</b> & y", "live": false, "url": "/live/%3Cb%3Ex%3C%2Fb%3E%20&%20y/index.m3u8"}
	if len(got[1]) != len(want1) {
		t.Errorf("offline entry keys: %v", got[1])
	}
	for k, v := range want1 {
		if got[1][k] != v {
			t.Errorf("%s: %v, want %v", k, got[1][k], v)
		}
	}

	empty := New(fakeChannels{}, slog.New(slog.DiscardHandler))
	if rec := get(t, empty, "GET", "/api/channels", nil); strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Errorf("no channels: %q, want []", rec.Body)
	}
	if rec := get(t, h, "POST", "/api/channels", nil); rec.Code != 405 {
		t.Errorf("POST /api/channels: %d", rec.Code)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestHandlerOverHTTP(t *testing.T) {
	srv := httptest.NewServer(New(fakeChannels{{Name: "main"}}, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/static/hls.min.js")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) < 100000 {
		t.Errorf("hls.min.js over HTTP: %d, %d bytes", resp.StatusCode, len(body))
	}
}
