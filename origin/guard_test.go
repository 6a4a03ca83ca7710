package origin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	m3u8 "github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/store/fsstore"
)

// The master the packager writes for a ladder channel: shared audio,
// variants highest bandwidth first, one folder per rendition.
const guardMaster = `#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="audio",DEFAULT=YES,AUTOSELECT=YES,URI="audio/index.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=5128000,AVERAGE-BANDWIDTH=4800000,CODECS="avc1.640028,mp4a.40.2",RESOLUTION=1920x1080,FRAME-RATE=30.000,AUDIO="audio"
1080p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=3128000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=30.000,AUDIO="audio"
720p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=928000,CODECS="avc1.64001e,mp4a.40.2",RESOLUTION=640x360,FRAME-RATE=30.000,AUDIO="audio"
360p/index.m3u8
`

func guardMedia(run string) string {
	return `#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:1
#EXT-X-MAP:URI="init-` + run + `.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z
#EXTINF:2.000,
` + run + `-00001.m4s
#EXTINF:2.000,
` + run + `-00002.m4s
`
}

var guardRenditions = []string{"1080p", "720p", "360p", "audio"}

type guardFixture struct {
	*fixture
	signer *auth.URLSigner
	now    time.Time
	srv    *httptest.Server
	objs   map[string][]byte // what was stored
}

func newGuardFixture(t *testing.T, cfg Config) *guardFixture {
	t.Helper()
	signer, err := auth.NewURLSigner(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	gf := &guardFixture{signer: signer, now: time.Now(), objs: map[string][]byte{}}
	g, err := NewTokenGuard(signer, []string{"/live/main/", "/vod/film"}, func() time.Time { return gf.now })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Guard = g
	gf.fixture = newFixture(t, cfg) // its live/main objects are replaced below
	put := func(key string, data []byte) {
		if err := gf.fixture.objs.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), fsstore.ContentType(key)); err != nil {
			t.Fatal(err)
		}
		gf.objs[key] = data
	}
	for _, ch := range []string{"live/main", "live/mainly"} {
		put(ch+"/index.m3u8", []byte(guardMaster))
		for _, r := range guardRenditions {
			run := "r" + r
			put(ch+"/"+r+"/index.m3u8", []byte(guardMedia(run)))
			put(ch+"/"+r+"/init-"+run+".mp4", []byte("ftyp "+ch+"/"+r))
			for i := 1; i <= 2; i++ {
				put(fmt.Sprintf("%s/%s/%s-%05d.m4s", ch, r, run, i), bytes.Repeat([]byte(ch+r), 300*i))
			}
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/live/", gf.handler)
	mux.Handle("/vod/", gf.handler)
	gf.srv = httptest.NewServer(mux)
	t.Cleanup(gf.srv.Close)
	return gf
}

func (gf *guardFixture) token(t *testing.T, g auth.Grant) string {
	t.Helper()
	if g.Prefix == "" {
		g.Prefix = "/live/main/"
	}
	if g.Expires.IsZero() {
		g.Expires = gf.now.Add(time.Hour)
	}
	tok, err := gf.signer.Sign(g)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (gf *guardFixture) get(t *testing.T, method, u string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	if strings.HasPrefix(u, "/") {
		u = gf.srv.URL + u
	}
	return do(t, method, u, hdr)
}

func withST(p, tok string) string { return p + "?st=" + url.QueryEscape(tok) }

func TestGuardRefusals(t *testing.T) {
	gf := newGuardFixture(t, Config{})
	good := gf.token(t, auth.Grant{})
	expired := gf.token(t, auth.Grant{Expires: gf.now.Add(-time.Second)})
	news := gf.token(t, auth.Grant{Prefix: "/live/news/"})
	bound := gf.token(t, auth.Grant{ClientIP: "192.0.2.99"})
	parts := strings.Split(good, ".")
	later := gf.token(t, auth.Grant{Expires: gf.now.Add(48 * time.Hour)})
	spliced := parts[0] + "." + strings.Split(later, ".")[1] + "." + parts[2]

	for _, p := range []string{"/live/main/index.m3u8", "/live/main/720p/index.m3u8", "/live/main/720p/r720p-00001.m4s", "/live/main/720p/init-r720p.mp4", "/live/main/nothing.m4s"} {
		for _, method := range []string{"GET", "HEAD"} {
			resp, body := gf.get(t, method, p, nil)
			if resp.StatusCode != 401 || resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s without token: %d, Cache-Control %q", method, p, resp.StatusCode, resp.Header.Get("Cache-Control"))
			}
			if method == "GET" && (string(body) != "playback token required\n") {
				t.Errorf("%s body %q", p, body)
			}
			for name, tok := range map[string]string{
				"garbage": "nope", "expired": expired, "other channel": news, "other IP": bound,
				"later expiry spliced": spliced, "truncated": good[:len(good)-3],
			} {
				resp, body := gf.get(t, method, withST(p, tok), nil)
				if resp.StatusCode != 403 || resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("ETag") != "" {
					t.Errorf("%s %s with %s token: %d, Cache-Control %q", method, p, name, resp.StatusCode, resp.Header.Get("Cache-Control"))
				}
				if method == "GET" && string(body) != "invalid or expired playback token\n" {
					t.Errorf("%s with %s token: body %q", p, name, body)
				}
			}
		}
	}
	// The token of /live/main/ does not open /live/mainly/, which is
	// public: served as usual whatever the query says.
	resp, body := gf.get(t, "GET", withST("/live/mainly/index.m3u8", good), nil)
	if resp.StatusCode != 200 || string(body) != guardMaster {
		t.Errorf("public /live/mainly/: %d %q", resp.StatusCode, body)
	}
	// CORS preflight needs no token.
	resp, _ = gf.get(t, "OPTIONS", "/live/main/index.m3u8", map[string]string{"Access-Control-Request-Method": "GET", "Origin": "https://x.example"})
	if resp.StatusCode != 204 {
		t.Errorf("OPTIONS: %d", resp.StatusCode)
	}
	if logs := gf.logs.String(); strings.Contains(logs, good) || strings.Contains(logs, parts[2]) {
		t.Errorf("a token reached the logs")
	}
}

// uris returns every URI a playlist names, parsing it with gohlslib.
func uris(t *testing.T, body []byte) (pl m3u8.Playlist, out []string) {
	t.Helper()
	pl, err := m3u8.Unmarshal(body)
	if err != nil {
		t.Fatalf("gohlslib cannot parse the rewritten playlist: %v\n%s", err, body)
	}
	switch p := pl.(type) {
	case *m3u8.Multivariant:
		for _, r := range p.Renditions {
			if r.URI != nil {
				out = append(out, *r.URI)
			}
		}
		for _, v := range p.Variants {
			out = append(out, v.URI)
		}
	case *m3u8.Media:
		if p.Map != nil {
			out = append(out, p.Map.URI)
		}
		for _, s := range p.Segments {
			out = append(out, s.URI)
		}
	}
	return pl, out
}

// crawl follows a signed master like a player: every URI must carry the
// token, and every object it leads to must be served intact. It returns
// the media playlists reached.
func (gf *guardFixture) crawl(t *testing.T, masterPath, tok string) []string {
	t.Helper()
	base, _ := url.Parse(gf.srv.URL + withST(masterPath, tok))
	resp, body := gf.get(t, "GET", base.String(), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("master: %d %s", resp.StatusCode, body)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "private, max-age=") {
		t.Errorf("master Cache-Control %q", cc)
	}
	pl, list := uris(t, body)
	if _, ok := pl.(*m3u8.Multivariant); !ok {
		t.Fatalf("master parsed as %T", pl)
	}
	var media []string
	for _, u := range list {
		ref, err := url.Parse(u)
		if err != nil || ref.Query().Get("st") != tok {
			t.Fatalf("master URI %q does not carry the token", u)
		}
		// Resolve the way players do: against the playlist URL, whose
		// query is dropped.
		mu := base.ResolveReference(ref)
		media = append(media, strings.TrimPrefix(mu.Path, "/live/main/"))
		resp, body := gf.get(t, "GET", mu.String(), nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", mu.Path, resp.StatusCode, body)
		}
		if resp.Header.Get("ETag") == "" || strings.HasPrefix(resp.Header.Get("Cache-Control"), "public") {
			t.Errorf("%s: ETag %q Cache-Control %q", mu.Path, resp.Header.Get("ETag"), resp.Header.Get("Cache-Control"))
		}
		mpl, segs := uris(t, body)
		if _, ok := mpl.(*m3u8.Media); !ok || len(segs) != 3 {
			t.Fatalf("%s: %T with %d URIs", mu.Path, mpl, len(segs))
		}
		for _, s := range segs {
			sref, err := url.Parse(s)
			if err != nil || sref.Query().Get("st") != tok {
				t.Fatalf("%s: URI %q does not carry the token", mu.Path, s)
			}
			su := mu.ResolveReference(sref)
			resp, body := gf.get(t, "GET", su.String(), nil)
			key := strings.TrimPrefix(su.Path, "/")
			if resp.StatusCode != 200 || !bytes.Equal(body, gf.objs[key]) {
				t.Fatalf("%s: %d, %d bytes, want %d", su.Path, resp.StatusCode, len(body), len(gf.objs[key]))
			}
			cc := resp.Header.Get("Cache-Control")
			age, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(cc, "public, max-age="), ", immutable"))
			if !strings.HasPrefix(cc, "public, max-age=") || age > 3600 || age < 3500 {
				t.Errorf("%s: Cache-Control %q, want public until the token expires", su.Path, cc)
			}
		}
	}
	return media
}

func TestGuardSignedPlayback(t *testing.T) {
	gf := newGuardFixture(t, Config{})
	tok := gf.token(t, auth.Grant{})
	media := gf.crawl(t, "/live/main/index.m3u8", tok)
	if got := strings.Join(media, " "); got != "audio/index.m3u8 1080p/index.m3u8 720p/index.m3u8 360p/index.m3u8" {
		t.Errorf("media playlists reached: %s", got)
	}
	// The hot cache still holds the stored master, not a rewritten one.
	e, ok := gf.handler.cache.c.GetIfPresent("live/main/index.m3u8")
	if ok && string(e.body) != guardMaster {
		t.Errorf("cache holds a rewritten master:\n%s", e.body)
	}
	// The token never widens what a token-less request gets.
	if resp, _ := gf.get(t, "GET", "/live/main/720p/r720p-00001.m4s", nil); resp.StatusCode != 401 {
		t.Errorf("cached segment without token: %d", resp.StatusCode)
	}
	// Public content is byte-identical and keeps its headers.
	for _, p := range []string{"live/mainly/index.m3u8", "live/mainly/720p/index.m3u8", "live/mainly/720p/r720p-00002.m4s"} {
		resp, body := gf.get(t, "GET", "/"+p, nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, gf.objs[p]) || resp.Header.Get("Cache-Control") != gf.handler.cacheControl(p) {
			t.Errorf("public %s: %d, Cache-Control %q, identical %v", p, resp.StatusCode, resp.Header.Get("Cache-Control"), bytes.Equal(body, gf.objs[p]))
		}
	}
}

func TestGuardMaxHeight(t *testing.T) {
	gf := newGuardFixture(t, Config{})
	tok := gf.token(t, auth.Grant{MaxHeight: 720})
	media := gf.crawl(t, "/live/main/index.m3u8", tok)
	if got := strings.Join(media, " "); got != "audio/index.m3u8 720p/index.m3u8 360p/index.m3u8" {
		t.Errorf("media playlists reached with MaxHeight 720: %s", got)
	}
	for _, p := range []string{"1080p/index.m3u8", "1080p/init-r1080p.mp4", "1080p/r1080p-00001.m4s", "1080p/missing.m4s"} {
		resp, body := gf.get(t, "GET", withST("/live/main/"+p, tok), nil)
		if resp.StatusCode != 403 || string(body) != "rendition not allowed for this playback token\n" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s with a 720p token: %d %q", p, resp.StatusCode, body)
		}
	}
	// The same segments open to an unlimited token.
	all := gf.token(t, auth.Grant{})
	if resp, _ := gf.get(t, "GET", withST("/live/main/1080p/r1080p-00001.m4s", all), nil); resp.StatusCode != 200 {
		t.Errorf("1080p segment with an unlimited token: %d", resp.StatusCode)
	}
	// A rendition list works the same way.
	only := gf.token(t, auth.Grant{Renditions: []string{"360p"}})
	if got := strings.Join(gf.crawl(t, "/live/main/index.m3u8", only), " "); got != "audio/index.m3u8 360p/index.m3u8" {
		t.Errorf("media playlists reached with Renditions [360p]: %s", got)
	}
	if resp, _ := gf.get(t, "GET", withST("/live/main/720p/r720p-00001.m4s", only), nil); resp.StatusCode != 403 {
		t.Errorf("720p segment with a 360p-only token: %d", resp.StatusCode)
	}
	// Nothing left to play: 403, not an empty master.
	tiny := gf.token(t, auth.Grant{MaxHeight: 240})
	if resp, body := gf.get(t, "GET", withST("/live/main/index.m3u8", tiny), nil); resp.StatusCode != 403 {
		t.Errorf("master with MaxHeight 240: %d %s", resp.StatusCode, body)
	}
}

func TestGuardValidators(t *testing.T) {
	gf := newGuardFixture(t, Config{})
	a := gf.token(t, auth.Grant{})
	b := gf.token(t, auth.Grant{Expires: gf.now.Add(2 * time.Hour)})
	const p = "/live/main/index.m3u8"
	ra, bodyA := gf.get(t, "GET", withST(p, a), nil)
	rb, bodyB := gf.get(t, "GET", withST(p, b), nil)
	rp, _ := gf.get(t, "GET", "/live/mainly/index.m3u8", nil)
	ea, eb := ra.Header.Get("ETag"), rb.Header.Get("ETag")
	if ea == "" || ea == eb || ea == rp.Header.Get("ETag") || bytes.Equal(bodyA, bodyB) {
		t.Errorf("ETags: token a %s, token b %s, stored %s", ea, eb, rp.Header.Get("ETag"))
	}
	if ra.Header.Get("Last-Modified") == "" || ra.ContentLength != int64(len(bodyA)) {
		t.Errorf("Last-Modified %q, Content-Length %d for %d bytes", ra.Header.Get("Last-Modified"), ra.ContentLength, len(bodyA))
	}
	if r, body := gf.get(t, "GET", withST(p, a), map[string]string{"If-None-Match": ea}); r.StatusCode != 304 || len(body) != 0 || r.Header.Get("ETag") != ea {
		t.Errorf("If-None-Match with the same token: %d", r.StatusCode)
	}
	if r, body := gf.get(t, "GET", withST(p, b), map[string]string{"If-None-Match": ea}); r.StatusCode != 200 || !bytes.Equal(body, bodyB) {
		t.Errorf("If-None-Match of token a with token b: %d", r.StatusCode)
	}
	// Range on a rewritten playlist: the whole body, 200.
	if r, body := gf.get(t, "GET", withST(p, a), map[string]string{"Range": "bytes=0-9"}); r.StatusCode != 200 || !bytes.Equal(body, bodyA) || r.Header.Get("Content-Range") != "" {
		t.Errorf("Range on a rewritten playlist: %d, %d bytes", r.StatusCode, len(body))
	}
	if r, body := gf.get(t, "HEAD", withST(p, a), nil); r.StatusCode != 200 || len(body) != 0 || r.ContentLength != int64(len(bodyA)) || r.Header.Get("ETag") != ea {
		t.Errorf("HEAD: %d, Content-Length %d", r.StatusCode, r.ContentLength)
	}
	// Segments keep their stored validators and ranges.
	seg := "/live/main/720p/r720p-00002.m4s"
	r, body := gf.get(t, "GET", withST(seg, a), map[string]string{"Range": "bytes=0-9"})
	if r.StatusCode != 206 || !bytes.Equal(body, gf.objs[seg[1:]][:10]) {
		t.Errorf("Range on a protected segment: %d", r.StatusCode)
	}
	r, _ = gf.get(t, "GET", withST(seg, a), nil)
	if r2, _ := gf.get(t, "GET", withST(seg, b), map[string]string{"If-None-Match": r.Header.Get("ETag")}); r2.StatusCode != 304 || !strings.Contains(r2.Header.Get("Cache-Control"), "max-age=") {
		t.Errorf("segment revalidation: %d, Cache-Control %q", r2.StatusCode, r2.Header.Get("Cache-Control"))
	}
}

func TestGuardClientIP(t *testing.T) {
	gf := newGuardFixture(t, Config{ClientIP: func(r *http.Request) string { return r.Header.Get("X-Test-Client") }})
	tok := gf.token(t, auth.Grant{ClientIP: "192.0.2.7"})
	seg := withST("/live/main/720p/r720p-00001.m4s", tok)
	if r, _ := gf.get(t, "GET", seg, map[string]string{"X-Test-Client": "192.0.2.8"}); r.StatusCode != 403 {
		t.Errorf("other client: %d", r.StatusCode)
	}
	r, _ := gf.get(t, "GET", seg, map[string]string{"X-Test-Client": "192.0.2.7"})
	if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Cache-Control"), "private, max-age=") {
		t.Errorf("bound client: %d, Cache-Control %q", r.StatusCode, r.Header.Get("Cache-Control"))
	}
}

// TestGuardNoCache: with the hot cache off, playlists are read from the
// store and everything behaves the same.
func TestGuardNoCache(t *testing.T) {
	gf := newGuardFixture(t, Config{CacheBytes: -1})
	gf.crawl(t, "/live/main/index.m3u8", gf.token(t, auth.Grant{MaxHeight: 720}))
	if r, _ := gf.get(t, "GET", withST("/live/main/1080p/r1080p-00001.m4s", gf.token(t, auth.Grant{MaxHeight: 720})), nil); r.StatusCode != 403 {
		t.Errorf("1080p segment, 720p token, no cache: %d", r.StatusCode)
	}
}

func TestNewTokenGuard(t *testing.T) {
	s, _ := auth.NewURLSigner(bytes.Repeat([]byte{1}, 32))
	for _, p := range []string{"live/main/", "/live/../x/", "/live//main/", ""} {
		if _, err := NewTokenGuard(s, []string{p}, nil); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	g, err := NewTokenGuard(s, []string{"/live/main", "/vod/film/"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{
		"live/main/index.m3u8": true, "live/main/1080p/x.m4s": true, "live/mainly/index.m3u8": false,
		"live/index.m3u8": false, "vod/film/index.m3u8": true, "vod/films/index.m3u8": false,
	} {
		if got, err := g.Protected(context.Background(), key); got != want || err != nil {
			t.Errorf("Protected(%q) = %v", key, got)
		}
	}
}

func TestWithToken(t *testing.T) {
	for in, want := range map[string]string{
		"720p/index.m3u8":               "720p/index.m3u8?st=T",
		"seg.m4s?x=1":                   "seg.m4s?x=1&st=T",
		"seg.m4s?st=OLD&x=1":            "seg.m4s?x=1&st=T",
		"seg.m4s#frag":                  "seg.m4s?st=T#frag",
		"/live/main/seg.m4s":            "/live/main/seg.m4s?st=T",
		"https://cdn.example/seg.m4s":   "https://cdn.example/seg.m4s",
		"//cdn.example/seg.m4s":         "//cdn.example/seg.m4s",
		"data:text/plain;base64,AAAA":   "data:text/plain;base64,AAAA",
		"skd://key-id":                  "skd://key-id",
		"a/b:c.m4s":                     "a/b:c.m4s?st=T",
		"thumbnails.jpg#xywh=0,0,10,10": "thumbnails.jpg?st=T#xywh=0,0,10,10",
	} {
		if got := withToken(in, "T"); got != want {
			t.Errorf("withToken(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRewritePlaylistTags(t *testing.T) {
	in := "#EXTM3U\r\n#EXT-X-VERSION:7\r\n# a comment\r\n" +
		`#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="en",LANGUAGE="en",URI="subs/en.m3u8"` + "\n" +
		`#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,RESOLUTION=3840x2160,URI="2160p/iframes.m3u8"` + "\n" +
		`#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,RESOLUTION=1080x1920,URI="p1080/iframes.m3u8"` + "\n" +
		`#EXT-X-STREAM-INF:BANDWIDTH=9,RESOLUTION=2160x3840,CODECS="avc1.640033,mp4a.40.2"` + "\n" +
		"\n# between\n" +
		"p2160/index.m3u8\n" +
		`#EXT-X-STREAM-INF:BANDWIDTH=5,RESOLUTION=1080x1920,CODECS="avc1.640028,mp4a.40.2"` + "\n" +
		"p1080/index.m3u8\n" +
		`#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS="mp4a.40.2"` + "\n" +
		"audio-only.m3u8\n"
	out, kept, isMaster, err := rewritePlaylist([]byte(in), "vod/film/index.m3u8", "T", Grant{MaxHeight: 1080})
	if err != nil || !isMaster || kept != 2 {
		t.Fatalf("kept %d, master %v, err %v", kept, isMaster, err)
	}
	want := "#EXTM3U\n#EXT-X-VERSION:7\n# a comment\n" +
		`#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="en",LANGUAGE="en",URI="subs/en.m3u8?st=T"` + "\n" +
		`#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,RESOLUTION=1080x1920,URI="p1080/iframes.m3u8?st=T"` + "\n" +
		`#EXT-X-STREAM-INF:BANDWIDTH=5,RESOLUTION=1080x1920,CODECS="avc1.640028,mp4a.40.2"` + "\n" +
		"p1080/index.m3u8?st=T\n" +
		`#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS="mp4a.40.2"` + "\n" +
		"audio-only.m3u8?st=T\n"
	if string(out) != want {
		t.Errorf("rewritten:\n%s\nwant:\n%s", out, want)
	}
	// Heights are short sides: the portrait 2160x3840 rendition is
	// refused, the portrait 1080x1920 one is not.
	mi, err := parseMaster("vod/film/index.m3u8", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	g := Grant{MaxHeight: 1080}
	for key, want := range map[string]bool{
		"vod/film/p2160/index.m3u8": true, "vod/film/p2160/seg-1.m4s": true, "vod/film/2160p/iframes.m3u8": true,
		"vod/film/p1080/seg-1.m4s": false, "vod/film/subs/en.vtt": false, "vod/film/audio-only.m3u8": false,
		"vod/film/poster.jpg": false,
	} {
		if got := mi.refuses(key, g); got != want {
			t.Errorf("refuses(%q) = %v", key, got)
		}
	}
	// A variant in the master's own folder is refused by name only.
	mi2, _ := parseMaster("live/x/index.m3u8", []byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=3840x2160\nuhd.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=640x360\nsd.m3u8\n"))
	if !mi2.refuses("live/x/uhd.m3u8", g) || mi2.refuses("live/x/sd.m3u8", g) || mi2.refuses("live/x/seg.m4s", g) {
		t.Errorf("same-folder variants: %+v", mi2.variants)
	}
	if _, _, _, err := rewritePlaylist([]byte("#EXTM3U\n#EXT-X-MAP:URI=\"unterminated\n"), "a/b.m3u8", "T", Grant{}); err == nil {
		t.Error("unterminated URI attribute accepted")
	}
}

// FuzzRewritePlaylist: no playlist panics the rewriter, and in what it
// returns every URI line carries the token unless it is absolute.
func FuzzRewritePlaylist(f *testing.F) {
	f.Add([]byte(guardMaster), 720)
	f.Add([]byte(guardMedia("ab")), 0)
	f.Add([]byte("#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=1x2,X=\"a,b\"\n\n#c\nu\n#EXT-X-KEY:METHOD=AES-128,URI=\"k?x=1#f\"\n"), 1)
	f.Fuzz(func(t *testing.T, body []byte, maxHeight int) {
		out, _, _, err := rewritePlaylist(body, "live/main/index.m3u8", "T.k-_", Grant{MaxHeight: maxHeight})
		if err != nil {
			return
		}
		for _, l := range strings.Split(string(out), "\n") {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") || isAbsoluteURL(l) {
				continue
			}
			if !strings.Contains(l, "st=T.k-_") {
				t.Fatalf("URI line %q lacks the token in\n%s", l, out)
			}
		}
		if _, err := parseMaster("live/main/index.m3u8", body); err != nil {
			t.Fatalf("rewrite accepted what parseMaster refuses: %v", err)
		}
	})
}

// TestPolicyGuardFailsClosed: when the policy cannot tell whether a key is
// protected (its metadata is unreachable), the origin answers 503, never
// the object.
func TestPolicyGuardFailsClosed(t *testing.T) {
	s, _ := auth.NewURLSigner(bytes.Repeat([]byte{1}, 32))
	var down atomic.Bool
	g, err := NewPolicyGuard(s, func(ctx context.Context, key string) (bool, error) {
		if down.Load() {
			return false, errors.New("metadata store unreachable")
		}
		return strings.HasPrefix(key, "live/main/"), nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, Config{Guard: g})
	srv := httptest.NewServer(f.handler)
	t.Cleanup(srv.Close)
	if res, _ := do(t, "GET", srv.URL+"/live/main/index.m3u8", nil); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("protected without token: %d, want 401", res.StatusCode)
	}
	down.Store(true)
	res, body := do(t, "GET", srv.URL+"/live/main/index.m3u8", nil)
	if res.StatusCode != http.StatusServiceUnavailable || bytes.Contains(body, []byte("#EXTM3U")) {
		t.Fatalf("policy down: %d %q, want 503 without the playlist", res.StatusCode, body)
	}
	if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") && !strings.Contains(cc, "no-cache") {
		t.Errorf("503 Cache-Control %q: a CDN could keep it", cc)
	}
	if _, err := NewPolicyGuard(s, nil, nil); err == nil {
		t.Error("a guard without a policy was accepted")
	}
}

// TestGuardRevocations: a token whose user's URLs were revoked after it
// was issued is refused like a forged one; others keep working.
func TestGuardRevocations(t *testing.T) {
	s, _ := auth.NewURLSigner(bytes.Repeat([]byte{1}, 32))
	now := time.Now()
	g, err := NewPolicyGuard(s, func(ctx context.Context, key string) (bool, error) { return true, nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.WithRevocations(func(ctx context.Context, subject string, issued time.Time) bool {
		return subject == "gone" && issued.Before(now)
	})
	f := newFixture(t, Config{Guard: g})
	srv := httptest.NewServer(f.handler)
	t.Cleanup(srv.Close)
	sign := func(subject string, issued time.Time) string {
		tok, err := s.Sign(auth.Grant{Prefix: "/live/main/", Expires: now.Add(time.Hour), Subject: subject, IssuedAt: issued})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, c := range []struct {
		name string
		tok  string
		want int
	}{
		{"revoked", sign("gone", now.Add(-time.Second)), 403},
		{"issued after the revocation", sign("gone", now.Add(time.Second)), 200},
		{"another user", sign("kept", now.Add(-time.Second)), 200},
		{"no subject", sign("", time.Time{}), 200},
	} {
		if res, body := do(t, "GET", srv.URL+"/live/main/index.m3u8?st="+c.tok, nil); res.StatusCode != c.want {
			t.Errorf("%s: %d %q, want %d", c.name, res.StatusCode, body, c.want)
		}
	}
}
