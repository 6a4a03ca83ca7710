package s3store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/objectstest"
)

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

// testConfig names a fresh bucket streamd-test-<random>; t.Cleanup removes
// it with everything in it.
func testConfig(t *testing.T) Config {
	t.Helper()
	endpoint, access, secret := s3Env(t)
	b := make([]byte, 6)
	rand.Read(b)
	cfg := Config{Endpoint: endpoint, Bucket: "streamd-test-" + hex.EncodeToString(b), AccessKey: access, SecretKey: secret}
	t.Cleanup(func() { removeBucket(t, cfg) })
	return cfg
}

func removeBucket(t *testing.T, cfg Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := minio.New(cfg.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")})
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	if ok, err := c.BucketExists(ctx, cfg.Bucket); err != nil || !ok {
		return
	}
	objs := c.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Recursive: true})
	for e := range c.RemoveObjects(ctx, cfg.Bucket, objs, minio.RemoveObjectsOptions{}) {
		t.Errorf("cleanup: remove %s: %v", e.ObjectName, e.Err)
	}
	if err := c.RemoveBucket(ctx, cfg.Bucket); err != nil {
		t.Errorf("cleanup: remove bucket %s: %v", cfg.Bucket, err)
	}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func open(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := New(context.Background(), cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	s3Env(t) // skip once, not in every subtest
	objectstest.Run(t, func(t *testing.T) store.Objects { return open(t, testConfig(t)) })
}

// With a prefix, the same contract holds and nothing lands outside it.
func TestContractWithPrefix(t *testing.T) {
	s3Env(t)
	objectstest.Run(t, func(t *testing.T) store.Objects {
		cfg := testConfig(t)
		cfg.Prefix = "/tenant-a/"
		s := open(t, cfg)
		t.Cleanup(func() {
			// Everything in the bucket is under the prefix.
			for oi := range s.client.ListObjects(context.Background(), cfg.Bucket, minio.ListObjectsOptions{Recursive: true}) {
				if oi.Err == nil && !strings.HasPrefix(oi.Key, "tenant-a/") {
					t.Errorf("object %q outside the prefix", oi.Key)
				}
			}
		})
		return s
	})
}

func TestPrefixIsolation(t *testing.T) {
	cfg := testConfig(t)
	ctx := context.Background()
	a, b := cfg, cfg
	a.Prefix, b.Prefix = "a", "b"
	sa, sb := open(t, a), open(t, b)
	if err := sa.Put(ctx, "live/x.m4s", strings.NewReader("A"), 1, "video/iso.segment"); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Stat(ctx, "live/x.m4s"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("b sees a's object: %v", err)
	}
	if l, err := sb.List(ctx, ""); err != nil || len(l) != 0 {
		t.Errorf("b lists %v %v", l, err)
	}
	if l, err := sa.List(ctx, ""); err != nil || len(l) != 1 || l[0].Key != "live/x.m4s" {
		t.Errorf("a lists %v %v", l, err)
	}
}

func TestETagAsS3SendsIt(t *testing.T) {
	s := open(t, testConfig(t))
	ctx := context.Background()
	if err := s.Put(ctx, "x.m4s", strings.NewReader("hello"), 5, "video/iso.segment"); err != nil {
		t.Fatal(err)
	}
	info, err := s.Stat(ctx, "x.m4s")
	if err != nil {
		t.Fatal(err)
	}
	// MinIO's single-part ETag is the MD5 of the content, quoted.
	if info.ETag != `"5d41402abc4b2a76b9719d911017c592"` {
		t.Errorf("ETag %s", info.ETag)
	}
}

// Keys the folder store accepts but S3 cannot name are refused as invalid
// (so the origin answers 400), not sent to fail as a store error (502).
func TestNonUTF8KeyInvalid(t *testing.T) {
	s := open(t, testConfig(t))
	for _, key := range []string{"live/main/\xff", "live/\xc0\xae\xc0\xae/x", strings.Repeat("k", 1025)} {
		if _, err := s.Stat(context.Background(), key); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("Stat(%.20q): %v, want ErrInvalidKey", key, err)
		}
	}
}

func TestNewCreatesBucketOnce(t *testing.T) {
	cfg := testConfig(t)
	open(t, cfg)
	open(t, cfg) // already there: fine
}

func TestNewErrors(t *testing.T) {
	cfg := testConfig(t)
	refused := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}()
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"wrong secret", func(c *Config) { c.SecretKey = "wrong-secret" }, "storage.objects.access_key/secret_key: access denied by s3 at " + cfg.Endpoint},
		{"unknown access key", func(c *Config) { c.AccessKey = "nobody" }, "storage.objects.access_key/secret_key: access denied by s3 at " + cfg.Endpoint},
		{"refused", func(c *Config) { c.Endpoint = refused }, "storage.objects.endpoint " + refused + ": connection refused"},
		{"no such host", func(c *Config) { c.Endpoint = "no-such-host.invalid:9000" }, "storage.objects.endpoint no-such-host.invalid:9000: no such host"},
		{"scheme", func(c *Config) { c.Endpoint = "http://" + c.Endpoint }, "storage.objects.endpoint \"http://"},
		{"empty endpoint", func(c *Config) { c.Endpoint = "" }, "storage.objects.endpoint: required"},
		{"empty bucket", func(c *Config) { c.Bucket = "" }, "storage.objects.bucket: required"},
		{"bad bucket", func(c *Config) { c.Bucket = "Bad_Bucket" }, "storage.objects.bucket \"Bad_Bucket\": "},
		{"bad prefix", func(c *Config) { c.Prefix = "a/../b" }, "storage.objects.prefix \"a/../b\": "},
		{"tls to plain", func(c *Config) { c.UseSSL = true }, "storage.objects.use_ssl: " + cfg.Endpoint + " speaks plain HTTP; set use_ssl to false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			tc.edit(&c)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			_, err := New(ctx, c, quiet())
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line starting %q", err, tc.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v: a wrong setting must fail fast", d)
			}
		})
	}
}

func TestPresign(t *testing.T) {
	s := open(t, testConfig(t))
	ctx := context.Background()
	var p store.Presigner = s
	up, err := p.PresignPut(ctx, "vod/upload/master.mp4", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("PUT", up, strings.NewReader("master bytes"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("presigned PUT: %s", resp.Status)
	}
	down, err := p.PresignGet(ctx, "vod/upload/master.mp4", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(down)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "master bytes" {
		t.Errorf("presigned GET: %s %q", resp.Status, body)
	}
	// Without the signature, the bucket is private.
	resp, err = http.Get(strings.SplitN(down, "?", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("unsigned GET: %s, want 403", resp.Status)
	}
	if _, err := p.PresignGet(ctx, "../x", time.Minute); !errors.Is(err, store.ErrInvalidKey) {
		t.Errorf("presign of an invalid key: %v", err)
	}
}

func TestLifecycle(t *testing.T) {
	cfg := testConfig(t)
	cfg.Prefix = "tenant"
	s := open(t, cfg)
	other := cfg
	other.Prefix = "other"
	o := open(t, other)
	ctx := context.Background()
	var l store.Lifecycler = s
	if rules, err := l.Lifecycle(ctx); err != nil || len(rules) != 0 {
		t.Fatalf("no rules yet: %v %v", rules, err)
	}
	if err := o.ApplyLifecycle(ctx, []store.LifecycleRule{{Prefix: "live/", ExpireAfterDays: 9}}); err != nil {
		t.Fatal(err)
	}
	want := []store.LifecycleRule{
		{ID: "live/", Prefix: "live/", ExpireAfterDays: 1},
		{ID: "thumbs", Prefix: "vod/thumbs/", ExpireAfterDays: 30},
	}
	if err := l.ApplyLifecycle(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := l.Lifecycle(ctx)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("Lifecycle: %v %v, want %v", got, err, want)
	}
	// The bucket rule really has the full prefix.
	bc, err := s.client.GetBucketLifecycle(ctx, cfg.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	var prefixes []string
	for _, r := range bc.Rules {
		prefixes = append(prefixes, r.RuleFilter.Prefix)
	}
	slices.Sort(prefixes)
	if !slices.Equal(prefixes, []string{"other/live/", "tenant/live/", "tenant/vod/thumbs/"}) {
		t.Errorf("bucket rule prefixes %q", prefixes)
	}
	// Declarative: fewer rules remove the others; the other store's rule stays.
	if err := l.ApplyLifecycle(ctx, want[:1]); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Lifecycle(ctx); !slices.Equal(got, want[:1]) {
		t.Errorf("after shrinking: %v", got)
	}
	if got, _ := o.Lifecycle(ctx); len(got) != 1 || got[0].ExpireAfterDays != 9 {
		t.Errorf("other prefix's rules: %v", got)
	}
	if err := l.ApplyLifecycle(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Lifecycle(ctx); len(got) != 0 {
		t.Errorf("after clearing: %v", got)
	}
	for _, bad := range [][]store.LifecycleRule{
		{{Prefix: "", ExpireAfterDays: 1}},
		{{Prefix: "../x/", ExpireAfterDays: 1}},
		{{Prefix: "live/", ExpireAfterDays: 0}},
		{{Prefix: "live/", ExpireAfterDays: 1}, {Prefix: "live/", ExpireAfterDays: 2}},
	} {
		if err := l.ApplyLifecycle(ctx, bad); err == nil {
			t.Errorf("ApplyLifecycle(%v): no error", bad)
		}
	}
}

// Get streams: reading the first bytes of a large object must not wait for
// the whole of it.
func TestGetStreams(t *testing.T) {
	s := open(t, testConfig(t))
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	if err := s.Put(ctx, "big.mp4", bytes.NewReader(data), int64(len(data)), "video/mp4"); err != nil {
		t.Fatal(err)
	}
	rc, info, err := s.Get(ctx, "big.mp4", &store.Range{Start: 16, Length: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if info.Size != int64(len(data)) {
		t.Errorf("Size %d with a range, want the whole %d", info.Size, len(data))
	}
	buf := make([]byte, 16)
	if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "0123456789abcdef" {
		t.Errorf("first bytes of the range: %q %v", buf, err)
	}
}
