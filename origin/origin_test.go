package origin

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/fsstore"
)

const secret = "TOP-SECRET-OUTSIDE-THE-STORE"

type fixture struct {
	root    string // the store folder
	objs    *fsstore.Store
	seg     []byte // live/main/seg_00001.m4s
	logs    *syncBuffer
	handler *Handler
}

// syncBuffer collects log output from the server goroutines.
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

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "store")
	objs, err := fsstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	// The secret sits next to the store root and in a sibling folder
	// whose name shares the root's prefix: reaching either is an escape.
	for _, p := range []string{filepath.Join(dir, "secret.txt"), filepath.Join(dir, "store-x", "secret.txt")} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(secret), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	seg := make([]byte, 10000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range seg {
		seg[i] = byte(r.Uint32())
	}
	put := func(key string, data []byte) {
		if err := objs.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), fsstore.ContentType(key)); err != nil {
			t.Fatal(err)
		}
	}
	put("live/main/index.m3u8", []byte("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n"))
	put("live/main/init.mp4", []byte("ftypiso6...moov"))
	put("live/main/seg_00001.m4s", seg)
	put("live/main/thumb.jpg", []byte("\xff\xd8\xff"))
	put("live/main/manifest.mpd", []byte("<MPD/>"))
	put("live/main/meta.json", []byte("{}"))
	put("live/main/empty.m4s", nil)
	put("vod/film/index.m3u8", []byte("#EXTM3U\n"))
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return &fixture{root: root, objs: objs, seg: seg, logs: logs, handler: New(cfg, objs, log)}
}

// server serves the handler mounted the way the binary mounts it.
func (f *fixture) server(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/live/", f.handler)
	mux.Handle("/vod/", f.handler)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// bareServer serves the handler with no mux in front, so the handler's own
// path checks see every request unchanged.
func (f *fixture) bareServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(f.handler)
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, u string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestContentTypeAndCacheControl(t *testing.T) {
	f := newFixture(t, Config{})
	srv := f.server(t)
	for _, tc := range []struct{ path, ct, cc string }{
		{"/live/main/index.m3u8", "application/vnd.apple.mpegurl", "public, max-age=1"},
		{"/live/main/manifest.mpd", "application/dash+xml", "public, max-age=1"},
		{"/live/main/init.mp4", "video/mp4", ccImmutable},
		{"/live/main/seg_00001.m4s", "video/iso.segment", ccImmutable},
		{"/live/main/thumb.jpg", "image/jpeg", ccImmutable},
		{"/live/main/meta.json", "application/json", "no-cache"},
		{"/vod/film/index.m3u8", "application/vnd.apple.mpegurl", "public, max-age=1"},
	} {
		resp, body := do(t, "GET", srv.URL+tc.path, nil)
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d %q", tc.path, resp.StatusCode, body)
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != tc.ct {
			t.Errorf("%s: Content-Type %q, want %q", tc.path, got, tc.ct)
		}
		if got := resp.Header.Get("Cache-Control"); got != tc.cc {
			t.Errorf("%s: Cache-Control %q, want %q", tc.path, got, tc.cc)
		}
		if resp.Header.Get("ETag") == "" || resp.Header.Get("Last-Modified") == "" {
			t.Errorf("%s: missing validators: %v", tc.path, resp.Header)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", tc.path)
		}
	}
	resp, body := do(t, "GET", srv.URL+"/live/main/seg_00001.m4s", nil)
	if !bytes.Equal(body, f.seg) || resp.ContentLength != int64(len(f.seg)) {
		t.Errorf("segment body differs (%d bytes, Content-Length %d)", len(body), resp.ContentLength)
	}
	resp, body = do(t, "GET", srv.URL+"/live/main/empty.m4s", nil)
	if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Length") != "0" {
		t.Errorf("empty object: %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

func TestPlaylistMaxAge(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "public, max-age=1"},
		{time.Second, "public, max-age=1"},
		{3 * time.Second, "public, max-age=3"},
		{2500 * time.Millisecond, "public, max-age=2"},
		{500 * time.Millisecond, "public, max-age=0"},
		{-time.Second, "public, max-age=0"},
	} {
		h := New(Config{PlaylistMaxAge: tc.d}, nil, slog.New(slog.DiscardHandler))
		if got := h.cacheControl("live/a/index.m3u8"); got != tc.want {
			t.Errorf("PlaylistMaxAge %v: %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestNotFound(t *testing.T) {
	f := newFixture(t, Config{})
	srv := f.server(t)
	for _, p := range []string{"/live/main/nope.m3u8", "/live/other/index.m3u8", "/live/main", "/live/main/", "/live/"} {
		resp, body := do(t, "GET", srv.URL+p, nil)
		if resp.StatusCode != 404 {
			t.Errorf("%s: status %d, want 404", p, resp.StatusCode)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("%s: Cache-Control %q, want no-cache", p, cc)
		}
		if resp.Header.Get("ETag") != "" || resp.Header.Get("Last-Modified") != "" {
			t.Errorf("%s: validators on a 404: %v", p, resp.Header)
		}
		if s := string(body); strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") {
			t.Errorf("%s: body %q is not one line", p, s)
		}
	}
}

func TestConditional(t *testing.T) {
	f := newFixture(t, Config{})
	srv := f.server(t)
	u := srv.URL + "/live/main/index.m3u8"
	resp, _ := do(t, "GET", u, nil)
	etag, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if !strings.HasPrefix(etag, `"`) {
		t.Fatalf("ETag %q not quoted", etag)
	}
	lmTime, err := http.ParseTime(lm)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"inm match", map[string]string{"If-None-Match": etag}, 304},
		{"inm weak", map[string]string{"If-None-Match": "W/" + etag}, 304},
		{"inm list", map[string]string{"If-None-Match": `"x", ` + etag}, 304},
		{"inm star", map[string]string{"If-None-Match": "*"}, 304},
		{"inm other", map[string]string{"If-None-Match": `"other"`}, 200},
		{"ims equal", map[string]string{"If-Modified-Since": lm}, 304},
		{"ims later", map[string]string{"If-Modified-Since": lmTime.Add(time.Hour).Format(http.TimeFormat)}, 304},
		{"ims earlier", map[string]string{"If-Modified-Since": lmTime.Add(-time.Second).Format(http.TimeFormat)}, 200},
		{"ims garbage", map[string]string{"If-Modified-Since": "yesterday"}, 200},
		// If-None-Match wins over If-Modified-Since, both ways.
		{"inm miss wins", map[string]string{"If-None-Match": `"other"`, "If-Modified-Since": lm}, 200},
		{"inm hit wins", map[string]string{"If-None-Match": etag, "If-Modified-Since": lmTime.Add(-time.Hour).Format(http.TimeFormat)}, 304},
	} {
		for _, method := range []string{"GET", "HEAD"} {
			resp, body := do(t, method, u, tc.hdr)
			if resp.StatusCode != tc.want {
				t.Errorf("%s %s: status %d, want %d", method, tc.name, resp.StatusCode, tc.want)
			}
			if tc.want == 304 {
				if len(body) != 0 || resp.Header.Get("ETag") != etag || resp.Header.Get("Cache-Control") != "public, max-age=1" {
					t.Errorf("%s %s: 304 with body %q headers %v", method, tc.name, body, resp.Header)
				}
			}
		}
	}
}

func TestRange(t *testing.T) {
	f := newFixture(t, Config{})
	srv := f.server(t)
	u := srv.URL + "/live/main/seg_00001.m4s"
	resp, _ := do(t, "HEAD", u, nil)
	etag, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	size := int64(len(f.seg))
	full := func() (int, int64, int64, string) { return 200, 0, size, "" }
	part := func(a, b int64) (int, int64, int64, string) {
		return 206, a, b + 1, fmt.Sprintf("bytes %d-%d/%d", a, b, size)
	}
	bad := func() (int, int64, int64, string) { return 416, 0, 0, fmt.Sprintf("bytes */%d", size) }
	for _, tc := range []struct {
		hdr  map[string]string
		want func() (int, int64, int64, string)
	}{
		{map[string]string{"Range": "bytes=0-0"}, func() (int, int64, int64, string) { return part(0, 0) }},
		{map[string]string{"Range": "bytes=0-99"}, func() (int, int64, int64, string) { return part(0, 99) }},
		{map[string]string{"Range": "bytes=100-199"}, func() (int, int64, int64, string) { return part(100, 199) }},
		{map[string]string{"Range": "bytes=9990-"}, func() (int, int64, int64, string) { return part(9990, 9999) }},
		{map[string]string{"Range": "bytes=9999-"}, func() (int, int64, int64, string) { return part(9999, 9999) }},
		{map[string]string{"Range": "bytes=5000-99999"}, func() (int, int64, int64, string) { return part(5000, 9999) }},
		{map[string]string{"Range": "bytes=-10"}, func() (int, int64, int64, string) { return part(9990, 9999) }},
		{map[string]string{"Range": "bytes=-1"}, func() (int, int64, int64, string) { return part(9999, 9999) }},
		{map[string]string{"Range": "bytes=-20000"}, func() (int, int64, int64, string) { return part(0, 9999) }},
		{map[string]string{"Range": "bytes=0-"}, func() (int, int64, int64, string) { return part(0, 9999) }},
		{map[string]string{"Range": "bytes=10000-"}, bad},
		{map[string]string{"Range": "bytes=10000-10005"}, bad},
		{map[string]string{"Range": "bytes=-0"}, bad},
		{map[string]string{"Range": "bytes=0-1,5-6"}, full}, // several ranges: whole object
		{map[string]string{"Range": "bytes=5-2"}, full},     // invalid: ignored
		{map[string]string{"Range": "bytes=a-b"}, full},
		{map[string]string{"Range": "bytes=+1-2"}, full},
		{map[string]string{"Range": "items=0-1"}, full},
		{map[string]string{"Range": "bytes=0-99", "If-Range": etag}, func() (int, int64, int64, string) { return part(0, 99) }},
		{map[string]string{"Range": "bytes=0-99", "If-Range": lm}, func() (int, int64, int64, string) { return part(0, 99) }},
		{map[string]string{"Range": "bytes=0-99", "If-Range": `"stale"`}, full},
		{map[string]string{"Range": "bytes=0-99", "If-Range": "W/" + etag}, full}, // weak never matches
		{map[string]string{"Range": "bytes=0-99", "If-Range": "Mon, 02 Jan 2006 15:04:05 GMT"}, full},
		{map[string]string{"Range": "bytes=20000-", "If-Range": `"stale"`}, full}, // stale If-Range: no 416 either
	} {
		status, a, b, cr := tc.want()
		for _, method := range []string{"GET", "HEAD"} {
			resp, body := do(t, method, u, tc.hdr)
			name := fmt.Sprintf("%s %v", method, tc.hdr)
			if resp.StatusCode != status {
				t.Errorf("%s: status %d, want %d", name, resp.StatusCode, status)
				continue
			}
			if got := resp.Header.Get("Content-Range"); got != cr {
				t.Errorf("%s: Content-Range %q, want %q", name, got, cr)
			}
			if status == 416 {
				continue
			}
			if method == "HEAD" {
				if len(body) != 0 || resp.ContentLength != b-a {
					t.Errorf("%s: body %d bytes, Content-Length %d, want none and %d", name, len(body), resp.ContentLength, b-a)
				}
				continue
			}
			if !bytes.Equal(body, f.seg[a:b]) {
				t.Errorf("%s: body is %d bytes, not seg[%d:%d]", name, len(body), a, b)
			}
			if resp.ContentLength != b-a {
				t.Errorf("%s: Content-Length %d, want %d", name, resp.ContentLength, b-a)
			}
		}
	}
	// An empty object has no satisfiable range.
	resp, _ = do(t, "GET", srv.URL+"/live/main/empty.m4s", map[string]string{"Range": "bytes=0-"})
	if resp.StatusCode != 416 || resp.Header.Get("Content-Range") != "bytes */0" {
		t.Errorf("empty object range: %d %q", resp.StatusCode, resp.Header.Get("Content-Range"))
	}
}

func TestHeadMatchesGet(t *testing.T) {
	f := newFixture(t, Config{})
	srv := f.server(t)
	for _, p := range []string{"/live/main/index.m3u8", "/live/main/seg_00001.m4s", "/live/main/missing.m4s"} {
		g, gbody := do(t, "GET", srv.URL+p, nil)
		h, hbody := do(t, "HEAD", srv.URL+p, nil)
		if g.StatusCode != h.StatusCode {
			t.Errorf("%s: GET %d, HEAD %d", p, g.StatusCode, h.StatusCode)
		}
		if len(hbody) != 0 {
			t.Errorf("%s: HEAD has a body", p)
		}
		for _, k := range []string{"Content-Type", "Cache-Control", "ETag", "Last-Modified", "Access-Control-Allow-Origin"} {
			if g.Header.Get(k) != h.Header.Get(k) {
				t.Errorf("%s: %s differs: GET %q, HEAD %q", p, k, g.Header.Get(k), h.Header.Get(k))
			}
		}
		if g.StatusCode == 200 && h.ContentLength != int64(len(gbody)) {
			t.Errorf("%s: HEAD Content-Length %d, body %d", p, h.ContentLength, len(gbody))
		}
	}
}

func TestCORS(t *testing.T) {
	t.Run("any", func(t *testing.T) {
		srv := newFixture(t, Config{}).server(t)
		resp, _ := do(t, "GET", srv.URL+"/live/main/index.m3u8", map[string]string{"Origin": "https://a.example"})
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("ACAO %q, want *", got)
		}
		if got := resp.Header.Get("Access-Control-Expose-Headers"); got != "Content-Length, Content-Range, ETag" {
			t.Errorf("Expose-Headers %q", got)
		}
		if resp.Header.Get("Vary") != "" {
			t.Errorf("Vary %q with a wildcard", resp.Header.Get("Vary"))
		}
		// Errors carry CORS headers too, so a player can read the status.
		resp, _ = do(t, "GET", srv.URL+"/live/main/missing.m3u8", map[string]string{"Origin": "https://a.example"})
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("404 without ACAO")
		}
	})
	t.Run("list", func(t *testing.T) {
		srv := newFixture(t, Config{AllowedOrigins: []string{"https://a.example", "https://b.example/"}}).server(t)
		for _, tc := range []struct{ origin, want string }{
			{"https://a.example", "https://a.example"},
			{"https://b.example", "https://b.example"},
			{"https://evil.example", ""},
			{"", ""},
		} {
			resp, _ := do(t, "GET", srv.URL+"/live/main/index.m3u8", map[string]string{"Origin": tc.origin})
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tc.want {
				t.Errorf("Origin %q: ACAO %q, want %q", tc.origin, got, tc.want)
			}
			if got := resp.Header.Values("Vary"); len(got) != 1 || got[0] != "Origin" {
				t.Errorf("Origin %q: Vary %q", tc.origin, got)
			}
		}
	})
	t.Run("preflight", func(t *testing.T) {
		srv := newFixture(t, Config{AllowedOrigins: []string{"https://a.example"}}).server(t)
		resp, body := do(t, "OPTIONS", srv.URL+"/live/main/seg_00001.m4s", map[string]string{
			"Origin":                         "https://a.example",
			"Access-Control-Request-Method":  "GET",
			"Access-Control-Request-Headers": "range",
		})
		if resp.StatusCode != 204 || len(body) != 0 {
			t.Fatalf("preflight: %d %q", resp.StatusCode, body)
		}
		for k, want := range map[string]string{
			"Access-Control-Allow-Origin":  "https://a.example",
			"Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
			"Access-Control-Allow-Headers": "Range",
			"Allow":                        "GET, HEAD, OPTIONS",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s: %q, want %q", k, got, want)
			}
		}
	})
}

func TestMethodNotAllowed(t *testing.T) {
	srv := newFixture(t, Config{}).server(t)
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		resp, body := do(t, m, srv.URL+"/live/main/index.m3u8", nil)
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD, OPTIONS" {
			t.Errorf("%s: %d Allow=%q", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
		if strings.Count(string(body), "\n") != 1 {
			t.Errorf("%s: body %q", m, body)
		}
	}
}

// traversals are request targets that try to leave the store. want is the
// status of the bare handler; 0 means "400 or 404, whatever, never the
// secret" for targets the handler may legitimately read as an odd key.
var traversals = []struct {
	target string
	want   int
}{
	{"/live/../../secret.txt", 400},
	{"/live/main/../../../secret.txt", 400},
	{"/live/%2e%2e/%2e%2e/secret.txt", 400},
	{"/live/%2E%2E/%2E%2E/secret.txt", 400},
	{"/live/.%2e/.%2e/secret.txt", 400},
	{"/live/..%2f..%2fsecret.txt", 400},
	{"/live/..%2F..%2Fsecret.txt", 400},
	{"/live/%2e%2e%2f%2e%2e%2fsecret.txt", 400},
	{"/live/..%5c..%5csecret.txt", 400},
	{"/live/..\\..\\secret.txt", 400},
	{"/live/main%2f..%2f..%2f..%2fsecret.txt", 400},
	{"/live/main/%00", 400},
	{"/live/main/index.m3u8%00.jpg", 400},
	{"/live//secret.txt", 400},
	{"//secret.txt", 400},
	{"/live/./main/index.m3u8", 400},
	{"/live/main/.", 400},
	{"/live/..;/..;/secret.txt", 400},
	{"/live/....//....//secret.txt", 400},
	{"/%2e%2e/secret.txt", 400},
	{"/C:/secret.txt", 400},
	{"/live/main/.tmp-123", 400},
	{"/live/../../../../../../../../etc/passwd", 400},
	{"/live/%252e%252e/%252e%252e/secret.txt", 0}, // double-encoded: a literal "%2e%2e" name
	{"/live/%c0%ae%c0%ae/secret.txt", 0},          // overlong UTF-8 dot: just bytes
	{"/live/main/%ff", 0},
}

// assertNoLeak fails if the secret (or /etc/passwd) was served. With strict,
// any 200 fails too; without, a 200 is allowed because the mux or the
// client may have cleaned the path to one inside the store (e.g.
// "/live/./main/index.m3u8" redirected to "/live/main/index.m3u8").
func assertNoLeak(t *testing.T, name string, strict bool, status int, body []byte) {
	t.Helper()
	if bytes.Contains(body, []byte(secret)) || bytes.Contains(body, []byte("root:")) {
		t.Errorf("%s: LEAK: status %d body %q", name, status, body)
	}
	if strict && status == 200 {
		t.Errorf("%s: status 200 for a traversal attempt: %q", name, body)
	}
}

// rawGet sends target exactly as written, bypassing the client's URL
// handling, and returns status and body.
func rawGet(t *testing.T, srv *httptest.Server, target string) (int, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func TestTraversal(t *testing.T) {
	f := newFixture(t, Config{})
	bare, mounted := f.bareServer(t), f.server(t)
	for _, tc := range traversals {
		// Bare handler: the exact status, over a raw connection.
		status, body := rawGet(t, bare, tc.target)
		assertNoLeak(t, "raw bare "+tc.target, true, status, body)
		if tc.want != 0 && status != tc.want {
			t.Errorf("raw bare %s: status %d, want %d (%q)", tc.target, status, tc.want, body)
		}
		if tc.want == 0 && status != 400 && status != 404 {
			t.Errorf("raw bare %s: status %d, want 400 or 404", tc.target, status)
		}
		if status == 400 && strings.Count(string(body), "\n") != 1 {
			t.Errorf("raw bare %s: 400 body %q is not one line", tc.target, body)
		}
		// Absolute-form request target: same answer.
		status, body = rawGet(t, bare, "http://origin.test"+tc.target)
		assertNoLeak(t, "raw absolute "+tc.target, true, status, body)
		// Mounted behind the mux (which may redirect a cleaned path):
		// whatever happens, never the secret.
		status, body = rawGet(t, mounted, tc.target)
		assertNoLeak(t, "raw mounted "+tc.target, false, status, body)
		// And through Go's client, which cleans some of these itself.
		if u, err := url.Parse(mounted.URL + tc.target); err == nil {
			req := &http.Request{Method: "GET", URL: u, Header: http.Header{}}
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				assertNoLeak(t, "client "+tc.target, false, resp.StatusCode, body)
			}
		}
	}
	// The store folder itself is intact and still served.
	if status, _ := rawGet(t, bare, "/live/main/index.m3u8"); status != 200 {
		t.Errorf("control request: %d", status)
	}
}

// fakeStore fails in configurable ways.
type fakeStore struct {
	store.Objects
	err       error
	block     bool
	changing  bool // Stat and Get disagree about the ETag
	statCalls int
	mu        sync.Mutex
}

func (s *fakeStore) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	s.mu.Lock()
	s.statCalls++
	n := s.statCalls
	s.mu.Unlock()
	if s.block {
		<-ctx.Done()
		return store.ObjectInfo{}, ctx.Err()
	}
	if s.err != nil {
		return store.ObjectInfo{}, s.err
	}
	return store.ObjectInfo{Key: key, Size: 3, ETag: fmt.Sprintf(`"stat-%d"`, n), ModTime: time.Now()}, nil
}

func (s *fakeStore) Get(ctx context.Context, key string, rng *store.Range) (io.ReadCloser, store.ObjectInfo, error) {
	if s.err != nil {
		return nil, store.ObjectInfo{}, s.err
	}
	return io.NopCloser(strings.NewReader("abc")), store.ObjectInfo{Key: key, Size: 3, ETag: `"get"`, ModTime: time.Now()}, nil
}

func TestStoreErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		st     *fakeStore
		want   int
		logged string
	}{
		{"not found", &fakeStore{err: fmt.Errorf("wrapped: %w", store.ErrNotFound)}, 404, ""},
		{"invalid key", &fakeStore{err: fmt.Errorf("wrapped: %w", store.ErrInvalidKey)}, 400, ""},
		{"io error", &fakeStore{err: errors.New("disk on fire")}, 502, "disk on fire"},
		{"always changing", &fakeStore{changing: true}, 503, "changed while being read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncBuffer{}
			h := New(Config{}, tc.st, slog.New(slog.NewTextHandler(logs, nil)))
			srv := httptest.NewServer(h)
			defer srv.Close()
			hdr := map[string]string{}
			if tc.st.changing {
				hdr["Range"] = "bytes=0-1" // forces the Stat-then-Get path
			}
			resp, body := do(t, "GET", srv.URL+"/live/main/index.m3u8", hdr)
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if strings.Count(string(body), "\n") != 1 || strings.Contains(string(body), "disk on fire") {
				t.Errorf("body %q: want one line without internals", body)
			}
			if tc.logged != "" {
				l := logs.String()
				if !strings.Contains(l, tc.logged) || !strings.Contains(l, "component=origin") || !strings.Contains(l, "level=ERROR") {
					t.Errorf("log %q lacks %q / component=origin / level=ERROR", l, tc.logged)
				}
			}
			if resp.Header.Get("Cache-Control") == "" {
				t.Errorf("no Cache-Control on %d", resp.StatusCode)
			}
		})
	}
}

func TestHealthReady(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	rec := httptest.NewRecorder()
	Health().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 || rec.Body.String() != "ok\n" {
		t.Errorf("healthz: %d %q", rec.Code, rec.Body)
	}

	objs, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		st   store.Objects
		want int
		body string
	}{
		{"fsstore", objs, 200, "ready\n"},
		{"failing", &fakeStore{err: errors.New("bucket\ngone")}, 503, "not ready: bucket gone\n"},
		{"slow", &fakeStore{block: true}, 503, "not ready: object store did not answer within 50ms\n"},
	} {
		rec := httptest.NewRecorder()
		start := time.Now()
		Ready(tc.st, 50*time.Millisecond, log).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != tc.want || rec.Body.String() != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.name, rec.Code, rec.Body, tc.want, tc.body)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: took %v", tc.name, d)
		}
	}
}

func TestObjectKey(t *testing.T) {
	for _, tc := range []struct{ in, key string }{
		{"/live/main/index.m3u8", "live/main/index.m3u8"},
		{"/vod/film/seg_1.m4s", "vod/film/seg_1.m4s"},
		{"/live/my%20channel/index.m3u8", "live/my channel/index.m3u8"},
		{"/live/a+b/x.m4s", "live/a+b/x.m4s"},
		{"/live/caf%C3%A9/index.m3u8", "live/café/index.m3u8"},
	} {
		got, err := objectKey(tc.in)
		if err != nil || got != tc.key {
			t.Errorf("objectKey(%q) = %q, %v; want %q", tc.in, got, err, tc.key)
		}
	}
}

func FuzzObjectKey(f *testing.F) {
	for _, tc := range traversals {
		f.Add(tc.target)
	}
	for _, s := range []string{"/live/main/index.m3u8", "/live/main/", "/", "", "live", "/a/%", "/a/%zz", "/a..b/c"} {
		f.Add(s)
	}
	check := func(t *testing.T, in, key string) {
		if _, err := store.CleanKey(key); err != nil {
			t.Fatalf("objectKey(%q) = %q, which CleanKey refuses: %v", in, key, err)
		}
		if strings.Contains(key, "..") {
			t.Fatalf("objectKey(%q) = %q contains ..", in, key)
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		if key, err := objectKey(in); err == nil {
			check(t, in, key)
		}
		// What the handler really passes: the escaped path of a request
		// URI the server accepted.
		if u, err := url.ParseRequestURI(in); err == nil {
			if key, err := objectKey(u.EscapedPath()); err == nil {
				check(t, in, key)
			}
		}
	})
}
