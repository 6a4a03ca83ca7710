package origin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/fsstore"
	"github.com/streamd/streamd/store/s3store"
)

// countingStore counts the calls that reach the real store. With gate set,
// every Get waits for the gate to close first, so a test can hold a load
// open until all its clients are waiting on it.
type countingStore struct {
	store.Objects
	gets, stats, ranged atomic.Int64
	gate                chan struct{}
}

func (c *countingStore) Get(ctx context.Context, key string, rng *store.Range) (io.ReadCloser, store.ObjectInfo, error) {
	c.gets.Add(1)
	if rng != nil {
		c.ranged.Add(1)
	}
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return nil, store.ObjectInfo{}, ctx.Err()
		}
	}
	return c.Objects.Get(ctx, key, rng)
}

func (c *countingStore) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	c.stats.Add(1)
	return c.Objects.Stat(ctx, key)
}

// s3Env returns the test S3 service from STREAMD_TEST_S3_* (scripts/testenv.sh
// starts MinIO and exports them). Without it the test fails under CI=true
// and is skipped, loudly, elsewhere.
func s3Env(t *testing.T) (endpoint, access, secret string) {
	t.Helper()
	endpoint = os.Getenv("STREAMD_TEST_S3_ENDPOINT")
	if endpoint == "" {
		const why = "no S3 service: set STREAMD_TEST_S3_ENDPOINT (host:port), STREAMD_TEST_S3_ACCESS_KEY and STREAMD_TEST_S3_SECRET_KEY, e.g. via scripts/testenv.sh"
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but " + why)
		}
		t.Skip("SKIPPED — " + why)
	}
	return endpoint, os.Getenv("STREAMD_TEST_S3_ACCESS_KEY"), os.Getenv("STREAMD_TEST_S3_SECRET_KEY")
}

// newS3Store opens a store on a fresh bucket streamd-test-<random>, removed
// with its objects when the test ends.
func newS3Store(t *testing.T) store.Objects {
	endpoint, access, secret := s3Env(t)
	b := make([]byte, 6)
	rand.Read(b)
	cfg := s3store.Config{Endpoint: endpoint, Bucket: "streamd-test-" + hex.EncodeToString(b), AccessKey: access, SecretKey: secret}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := minio.New(cfg.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, "")})
		if err != nil {
			t.Error(err)
			return
		}
		for e := range c.RemoveObjects(ctx, cfg.Bucket, c.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Recursive: true}), minio.RemoveObjectsOptions{}) {
			t.Errorf("cleanup: %s: %v", e.ObjectName, e.Err)
		}
		if err := c.RemoveBucket(ctx, cfg.Bucket); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	s, err := s3store.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newFSStore(t *testing.T) store.Objects {
	s, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var backends = []struct {
	name string
	open func(t *testing.T) store.Objects
}{
	{"fsstore", newFSStore},
	{"s3store", newS3Store},
}

func putObject(t testing.TB, s store.Objects, key string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), fsstore.ContentType(key)); err != nil {
		t.Fatal(err)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestCoalescing: 1,000 clients ask for the same uncached segment at once;
// the store sees exactly one Get. The store's Get is held until all 1,000
// requests wait on the same load, so the test proves coalescing, not just
// that the first request happened to fill the cache before the others.
func TestCoalescing(t *testing.T) {
	const clients = 1000
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			base := be.open(t)
			seg := bytes.Repeat([]byte("segment-bytes-"), 15000) // 210 kB
			const key = "live/main/1a2b-00042.m4s"
			putObject(t, base, key, seg)
			cs := &countingStore{Objects: base, gate: make(chan struct{})}
			h := New(Config{}, cs, quietLog())
			srv := httptest.NewServer(h)
			defer srv.Close()
			tr := &http.Transport{MaxIdleConnsPerHost: clients}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 60 * time.Second}

			get := func() error {
				resp, err := client.Get(srv.URL + "/" + key)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					return err
				}
				if resp.StatusCode != 200 || !bytes.Equal(body, seg) || resp.Header.Get("Cache-Control") != ccImmutable {
					return fmt.Errorf("status %d, %d bytes, Cache-Control %q", resp.StatusCode, len(body), resp.Header.Get("Cache-Control"))
				}
				return nil
			}
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for range clients {
				wg.Go(func() {
					if err := get(); err != nil {
						errs <- err
					}
				})
			}
			deadline := time.Now().Add(60 * time.Second)
			for h.cache.flights.waiting(key) < clients && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if n := h.cache.flights.waiting(key); n != clients {
				t.Errorf("only %d of %d requests joined the load", n, clients)
			}
			close(cs.gate)
			wg.Wait()
			close(errs)
			failed := 0
			for err := range errs {
				if failed++; failed <= 3 {
					t.Errorf("client: %v", err)
				}
			}
			if failed > 0 {
				t.Errorf("%d of %d clients failed", failed, clients)
			}
			if g, s := cs.gets.Load(), cs.stats.Load(); g != 1 || s != 0 {
				t.Errorf("store saw %d Gets and %d Stats for %d concurrent requests, want 1 and 0", g, s, clients)
			}
			// Later requests are served from memory.
			for range 20 {
				if err := get(); err != nil {
					t.Fatal(err)
				}
			}
			if g := cs.gets.Load(); g != 1 {
				t.Errorf("store saw %d Gets after cached requests, want 1", g)
			}
		})
	}
}

// TestCacheMatchesStore compares, request by request, a handler serving
// from a warm cache with one that has no cache: same statuses, headers and
// bodies for ranges, validators and HEAD, while the warm one never touches
// the store.
func TestCacheMatchesStore(t *testing.T) {
	// A long max-age keeps the warmed playlists in the cache for the
	// whole test.
	f := newFixture(t, Config{})
	cold := New(Config{CacheBytes: -1, PlaylistMaxAge: time.Hour}, f.objs, quietLog())
	cs := &countingStore{Objects: f.objs}
	warm := New(Config{PlaylistMaxAge: time.Hour}, cs, quietLog())
	keys := []string{"live/main/seg_00001.m4s", "live/main/init.mp4", "live/main/index.m3u8", "live/main/manifest.mpd", "live/main/empty.m4s"}
	for _, k := range keys {
		rec := httptest.NewRecorder()
		warm.ServeHTTP(rec, httptest.NewRequest("GET", "/"+k, nil))
		if rec.Code != 200 {
			t.Fatalf("warming %s: %d", k, rec.Code)
		}
	}
	if g := cs.gets.Load(); g != int64(len(keys)) {
		t.Fatalf("warming: %d Gets for %d keys", g, len(keys))
	}
	for _, k := range keys {
		info, err := f.objs.Stat(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		etag, lm := info.ETag, info.ModTime.UTC().Format(http.TimeFormat)
		early := info.ModTime.Add(-time.Hour).UTC().Format(http.TimeFormat)
		hdrs := []map[string]string{
			nil,
			{"Range": "bytes=0-0"}, {"Range": "bytes=0-99"}, {"Range": "bytes=100-199"}, {"Range": "bytes=9990-"},
			{"Range": "bytes=9999-"}, {"Range": "bytes=5000-99999"}, {"Range": "bytes=-10"}, {"Range": "bytes=-20000"},
			{"Range": "bytes=0-"}, {"Range": "bytes=10000-"}, {"Range": "bytes=-0"}, {"Range": "bytes=0-1,5-6"},
			{"Range": "bytes=5-2"}, {"Range": "items=0-1"}, {"Range": "bytes=3-"},
			{"Range": "bytes=0-99", "If-Range": etag}, {"Range": "bytes=0-99", "If-Range": lm},
			{"Range": "bytes=0-99", "If-Range": `"stale"`}, {"Range": "bytes=0-99", "If-Range": "W/" + etag},
			{"If-None-Match": etag}, {"If-None-Match": "W/" + etag}, {"If-None-Match": `"x", ` + etag},
			{"If-None-Match": "*"}, {"If-None-Match": `"other"`}, {"If-Modified-Since": lm},
			{"If-Modified-Since": early}, {"If-None-Match": `"other"`, "If-Modified-Since": lm},
			{"Origin": "https://a.example"},
		}
		for _, hdr := range hdrs {
			for _, method := range []string{"GET", "HEAD"} {
				name := fmt.Sprintf("%s %s %v", method, k, hdr)
				want, got := httptest.NewRecorder(), httptest.NewRecorder()
				for rec, hh := range map[*httptest.ResponseRecorder]http.Handler{want: cold, got: warm} {
					req := httptest.NewRequest(method, "/"+k, nil)
					for k, v := range hdr {
						req.Header.Set(k, v)
					}
					hh.ServeHTTP(rec, req)
				}
				if got.Code != want.Code {
					t.Errorf("%s: status %d, uncached %d", name, got.Code, want.Code)
					continue
				}
				for _, h := range []string{"Content-Type", "Content-Length", "Content-Range", "ETag", "Last-Modified",
					"Cache-Control", "Accept-Ranges", "X-Content-Type-Options", "Access-Control-Allow-Origin"} {
					if g, w := got.Header().Values(h), want.Header().Values(h); strings.Join(g, "|") != strings.Join(w, "|") {
						t.Errorf("%s: %s %q, uncached %q", name, h, g, w)
					}
				}
				if !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
					t.Errorf("%s: body %d bytes, uncached %d", name, got.Body.Len(), want.Body.Len())
				}
			}
		}
	}
	if g, s := cs.gets.Load(), cs.stats.Load(); g != int64(len(keys)) || s != 0 {
		t.Errorf("warm cache used the store: %d Gets (want %d), %d Stats", g, len(keys), s)
	}
}

// hugeStore claims one object of 1 GiB and produces its bytes on demand,
// counting how many were read.
type hugeStore struct {
	store.Objects
	gets atomic.Int64
	read atomic.Int64
}

const hugeSize = 1 << 30

func (s *hugeStore) info(key string) store.ObjectInfo {
	return store.ObjectInfo{Key: key, Size: hugeSize, ETag: `"huge"`, ModTime: time.Unix(1e9, 0), ContentType: "video/mp4"}
}

func (s *hugeStore) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	return s.info(key), nil
}

func (s *hugeStore) Get(ctx context.Context, key string, rng *store.Range) (io.ReadCloser, store.ObjectInfo, error) {
	s.gets.Add(1)
	n := int64(hugeSize)
	if rng != nil {
		n = rng.Length
	}
	return io.NopCloser(io.LimitReader(zeros{&s.read}, n)), s.info(key), nil
}

type zeros struct{ n *atomic.Int64 }

func (z zeros) Read(p []byte) (int, error) {
	clear(p)
	z.n.Add(int64(len(p)))
	return len(p), nil
}

// TestBigObjectStreams: an object over the per-object limit is streamed,
// never read whole into memory, and is not loaded again on later requests.
func TestBigObjectStreams(t *testing.T) {
	hs := &hugeStore{}
	h := New(Config{}, hs, quietLog())
	srv := httptest.NewServer(h)
	defer srv.Close()
	for i := range 2 {
		resp, err := http.Get(srv.URL + "/vod/film/master.mp4")
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64<<10)
		_, err = io.ReadFull(resp.Body, buf)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.ContentLength != hugeSize {
			t.Fatalf("request %d: %d, Content-Length %d, %v", i, resp.StatusCode, resp.ContentLength, err)
		}
	}
	// First request: the load that finds it too big, then the stream;
	// second request: the stream only.
	if g := hs.gets.Load(); g != 3 {
		t.Errorf("%d Gets, want 3", g)
	}
	if r := hs.read.Load(); r > 64<<20 {
		t.Errorf("%d MiB read from the store to serve 2×64 KiB: the body was buffered", r>>20)
	}
	if w := h.cache.c.WeightedSize(); w > 4096 {
		t.Errorf("cache holds %d bytes for a streamed object", w)
	}
}

// TestSmallCache: with a small cache the per-object limit shrinks with it
// (a sixteenth), objects over it are still served correctly, and the cache
// stays within its bound.
func TestSmallCache(t *testing.T) {
	f := newFixture(t, Config{})
	cs := &countingStore{Objects: f.objs}
	h := New(Config{CacheBytes: 64 << 10}, cs, quietLog()) // 4 KiB per object
	srv := httptest.NewServer(h)
	defer srv.Close()
	for range 3 {
		resp, body := do(t, "GET", srv.URL+"/live/main/seg_00001.m4s", nil) // 10,000 bytes
		if resp.StatusCode != 200 || !bytes.Equal(body, f.seg) {
			t.Fatalf("big segment: %d, %d bytes", resp.StatusCode, len(body))
		}
	}
	if g := cs.gets.Load(); g != 4 { // 1 load that finds it too big + 3 streams
		t.Errorf("%d Gets, want 4", g)
	}
	for i := range 64 {
		k := fmt.Sprintf("live/many/seg_%02d.m4s", i)
		putObject(t, f.objs, k, bytes.Repeat([]byte{byte(i)}, 3000))
		if resp, body := do(t, "GET", srv.URL+"/"+k, nil); resp.StatusCode != 200 || len(body) != 3000 || body[0] != byte(i) {
			t.Fatalf("%s: %d, %d bytes", k, resp.StatusCode, len(body))
		}
	}
	h.cache.c.CleanUp()
	if w := h.cache.c.WeightedSize(); w > 64<<10 {
		t.Errorf("cache weighs %d bytes, over its 64 KiB bound", w)
	}
}

// TestPlaylistFreshness: a playlist is served from memory for at most half
// of PlaylistMaxAge, so a rewrite shows within that time.
func TestPlaylistFreshness(t *testing.T) {
	objs := newFSStore(t)
	cs := &countingStore{Objects: objs}
	const key = "live/main/index.m3u8"
	putObject(t, objs, key, []byte("#EXTM3U\n#v1\n"))
	h := New(Config{PlaylistMaxAge: time.Second}, cs, quietLog()) // kept 500ms
	srv := httptest.NewServer(h)
	defer srv.Close()
	for range 10 {
		if resp, body := do(t, "GET", srv.URL+"/"+key, nil); resp.StatusCode != 200 || string(body) != "#EXTM3U\n#v1\n" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	if g := cs.gets.Load(); g != 1 && g != 2 { // 2 if the test was slow enough to cross a TTL
		t.Errorf("%d Gets for 10 quick requests", g)
	}
	putObject(t, objs, key, []byte("#EXTM3U\n#v2\n"))
	start := time.Now()
	for {
		_, body := do(t, "GET", srv.URL+"/"+key, nil)
		if string(body) == "#EXTM3U\n#v2\n" {
			break
		}
		if time.Since(start) > 900*time.Millisecond {
			t.Fatalf("rewritten playlist still served old after %v (want at most 500ms)", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A max-age under one second's worth of TTL still works, and a
	// negative one keeps no playlist at all.
	h = New(Config{PlaylistMaxAge: -time.Second}, cs, quietLog())
	before := cs.gets.Load()
	for range 3 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/"+key, nil))
		if rec.Code != 200 {
			t.Fatal(rec.Code)
		}
	}
	if g := cs.gets.Load() - before; g != 3 {
		t.Errorf("PlaylistMaxAge<0: %d Gets for 3 requests, want 3 (not kept)", g)
	}
}

// TestMissNotCached: a 404 is not remembered; the segment written a moment
// later is served.
func TestMissNotCached(t *testing.T) {
	objs := newFSStore(t)
	h := New(Config{}, objs, quietLog())
	srv := httptest.NewServer(h)
	defer srv.Close()
	const key = "live/main/r1-00001.m4s"
	if resp, _ := do(t, "GET", srv.URL+"/"+key, nil); resp.StatusCode != 404 {
		t.Fatalf("before Put: %d", resp.StatusCode)
	}
	putObject(t, objs, key, []byte("now here"))
	if resp, body := do(t, "GET", srv.URL+"/"+key, nil); resp.StatusCode != 200 || string(body) != "now here" {
		t.Fatalf("after Put: %d %q", resp.StatusCode, body)
	}
}

func TestCacheDisabled(t *testing.T) {
	objs := newFSStore(t)
	putObject(t, objs, "live/main/a.m4s", []byte("abc"))
	cs := &countingStore{Objects: objs}
	h := New(Config{CacheBytes: -1}, cs, quietLog())
	if h.cache != nil {
		t.Fatal("cache built with CacheBytes < 0")
	}
	for range 3 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/live/main/a.m4s", nil))
		if rec.Code != 200 || rec.Body.String() != "abc" {
			t.Fatal(rec.Code, rec.Body)
		}
	}
	if g := cs.gets.Load(); g != 3 {
		t.Errorf("%d Gets, want 3", g)
	}
}

// TestUncachedKindsBypass: keys that are neither segments nor playlists
// (we cannot know they are immutable) always go to the store.
func TestUncachedKindsBypass(t *testing.T) {
	objs := newFSStore(t)
	putObject(t, objs, "live/main/meta.json", []byte("{}"))
	cs := &countingStore{Objects: objs}
	h := New(Config{}, cs, quietLog())
	for range 2 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/live/main/meta.json", nil))
		if rec.Code != 200 {
			t.Fatal(rec.Code)
		}
	}
	if g := cs.gets.Load(); g != 2 {
		t.Errorf("%d Gets, want 2", g)
	}
}

func TestFlightGroup(t *testing.T) {
	t.Run("a leaving caller does not cancel the others", func(t *testing.T) {
		var g flightGroup[string]
		release := make(chan struct{})
		var loadErr atomic.Value
		load := func(ctx context.Context) (string, error) {
			<-release
			loadErr.Store(fmt.Sprint(ctx.Err()))
			return "v", nil
		}
		ctxA, cancelA := context.WithCancel(context.Background())
		resA, resB := make(chan error, 1), make(chan string, 1)
		go func() { _, err := g.do(ctxA, "k", load); resA <- err }()
		for g.waiting("k") < 1 {
			time.Sleep(time.Millisecond)
		}
		go func() { v, _ := g.do(context.Background(), "k", load); resB <- v }()
		for g.waiting("k") < 2 {
			time.Sleep(time.Millisecond)
		}
		cancelA()
		if err := <-resA; !errors.Is(err, context.Canceled) {
			t.Errorf("leaving caller: %v", err)
		}
		close(release)
		if v := <-resB; v != "v" {
			t.Errorf("remaining caller got %q", v)
		}
		if e := loadErr.Load(); e != "<nil>" {
			t.Errorf("load context: %v, want not canceled", e)
		}
	})
	t.Run("the last caller leaving cancels the load", func(t *testing.T) {
		var g flightGroup[int]
		var loads atomic.Int64
		canceled := make(chan struct{})
		load := func(ctx context.Context) (int, error) {
			if loads.Add(1) == 1 {
				<-ctx.Done()
				close(canceled)
				return 0, ctx.Err()
			}
			return 2, nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { g.do(ctx, "k", load); close(done) }()
		for g.waiting("k") < 1 {
			time.Sleep(time.Millisecond)
		}
		cancel()
		<-done
		select {
		case <-canceled:
		case <-time.After(5 * time.Second):
			t.Fatal("load not canceled")
		}
		// A new caller starts a fresh load rather than joining the
		// canceled one.
		if v, err := g.do(context.Background(), "k", load); v != 2 || err != nil {
			t.Errorf("fresh load: %v %v", v, err)
		}
	})
	t.Run("a panic becomes an error", func(t *testing.T) {
		var g flightGroup[int]
		_, err := g.do(context.Background(), "k", func(context.Context) (int, error) { panic("boom") })
		if err == nil || !strings.Contains(err.Error(), "boom") {
			t.Errorf("err %v", err)
		}
	})
}

// discardWriter is the cheapest ResponseWriter, so the benchmarks measure
// the handler, not a recorder.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }

func benchServe(b *testing.B, cfg Config, key string, data []byte) {
	objs, err := fsstore.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	putObject(b, objs, key, data)
	h := New(cfg, objs, quietLog())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "/"+key, nil)
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			h.ServeHTTP(w, req)
			if w.code != 200 {
				b.Fatalf("status %d", w.code)
			}
		}
	})
}

// BenchmarkOriginSegmentCached: a 1 MB segment at the live edge, served
// from the hot cache (compare with nginx serving the same file).
func BenchmarkOriginSegmentCached(b *testing.B) {
	benchServe(b, Config{}, "live/main/r1-00001.m4s", bytes.Repeat([]byte{7}, 1<<20))
}

// BenchmarkOriginSegmentStore is the same request without the cache.
func BenchmarkOriginSegmentStore(b *testing.B) {
	benchServe(b, Config{CacheBytes: -1}, "live/main/r1-00001.m4s", bytes.Repeat([]byte{7}, 1<<20))
}

// BenchmarkOriginPlaylist: a live media playlist, polled by every player.
func BenchmarkOriginPlaylist(b *testing.B) {
	var pl strings.Builder
	pl.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:100\n#EXT-X-MAP:URI=\"init-r1.mp4\"\n")
	for i := range 6 {
		fmt.Fprintf(&pl, "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:%02d.000Z\n#EXTINF:2.000,\nr1-%05d.m4s\n", 2*i, 100+i)
	}
	benchServe(b, Config{}, "live/main/index.m3u8", []byte(pl.String()))
}
