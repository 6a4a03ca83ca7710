package configs

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func noEnv(string) (string, bool) { return "", false }

func TestShippedFileEqualsDefaults(t *testing.T) {
	cfg, err := Parse(DefaultFile(), "streamd.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.Resolve()
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("configs/streamd.yaml and Defaults() differ:\nfile:     %+v\ndefaults: %+v", cfg, want)
	}
}

func TestPartialFileKeepsDefaults(t *testing.T) {
	cfg, err := Parse([]byte("http:\n  addr: \"127.0.0.1:9000\"\n"), "x.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Addr != "127.0.0.1:9000" || cfg.RTMP.Addr != ":1935" || time.Duration(cfg.Live.SegmentDuration) != 2*time.Second {
		t.Fatalf("unexpected %+v", cfg)
	}
	if len(cfg.Channels) != 1 || cfg.Channels[0].Name != "main" {
		t.Fatalf("default channel lost: %+v", cfg.Channels)
	}
}

func TestChannelsReplaceDefault(t *testing.T) {
	cfg, err := Parse([]byte("channels:\n  - name: news\n    stream_key: abcdefgh1\n  - name: sport\n"), "x.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := []Channel{{Name: "news", StreamKey: "abcdefgh1"}, {Name: "sport"}}
	if !reflect.DeepEqual(cfg.Channels, want) {
		t.Fatalf("got %+v", cfg.Channels)
	}
}

// A server without configured channels is valid: publishers create
// theirs through the API, and a VOD-only deployment needs none. Both the
// file and the environment can say so.
func TestNoChannelsIsValid(t *testing.T) {
	cfg, err := Parse([]byte("channels: []\n"), "x.yaml", noEnv)
	if err != nil {
		t.Fatalf("channels: [] refused: %v", err)
	}
	if len(cfg.Channels) != 0 {
		t.Fatalf("channels: %+v", cfg.Channels)
	}
	env := func(k string) (string, bool) { return "[]", k == "STREAMD_CHANNELS" }
	if cfg, err = Parse(DefaultFile(), "d", env); err != nil || len(cfg.Channels) != 0 {
		t.Fatalf("STREAMD_CHANNELS=[]: %+v %v", cfg.Channels, err)
	}
	if d := Defaults(); len(d.Channels) != 1 || d.Channels[0].Name != "main" {
		t.Fatalf("the default channel changed: %+v", d.Channels)
	}
}

func TestJobsRescueAfterBounded(t *testing.T) {
	for _, v := range []string{"1s", "2h"} {
		_, err := Parse([]byte("jobs:\n  rescue_after: "+v+"\n"), "x.yaml", noEnv)
		if err == nil || !strings.Contains(err.Error(), "line 2: jobs.rescue_after") {
			t.Errorf("rescue_after %s: %v", v, err)
		}
	}
	if cfg, err := Parse([]byte("jobs:\n  rescue_after: 30s\n"), "x.yaml", noEnv); err != nil || time.Duration(cfg.Jobs.RescueAfter) != 30*time.Second {
		t.Errorf("rescue_after 30s: %+v %v", cfg.Jobs, err)
	}
}

func problems(t *testing.T, err error) []Problem {
	t.Helper()
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want *configs.Error, got %v", err)
	}
	return ce.Problems
}

func TestUnknownKeysReportedWithLineAndPath(t *testing.T) {
	src := "http:\n  adr: \":1\"\nlive:\n  segment_duration: 2s\n  bogus: 1\ntopthing: 3\n"
	_, err := Parse([]byte(src), "bad.yaml", noEnv)
	ps := problems(t, err)
	if len(ps) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
	want := []Problem{
		{Key: "http.adr", Line: 2},
		{Key: "live.bogus", Line: 5},
		{Key: "topthing", Line: 6},
	}
	for i, w := range want {
		if ps[i].Key != w.Key || ps[i].Line != w.Line || !strings.Contains(ps[i].Message, "unknown key") {
			t.Errorf("problem %d = %+v, want key %s line %d", i, ps[i], w.Key, w.Line)
		}
	}
	if !strings.Contains(ps[0].Message, `did you mean "addr"`) {
		t.Errorf("no suggestion: %s", ps[0].Message)
	}
	if !strings.Contains(err.Error(), "line 2: http.adr: unknown key") {
		t.Errorf("error text: %s", err)
	}
}

func TestTypeAndValueErrorsNameKeyAndLine(t *testing.T) {
	src := "live:\n  segment_duration: soon\n  playlist_segments: many\nrtmp:\n  addr: nonsense\n"
	_, err := Parse([]byte(src), "bad.yaml", noEnv)
	ps := problems(t, err)
	got := map[string]int{}
	for _, p := range ps {
		got[p.Key] = p.Line
	}
	if got["live.segment_duration"] != 2 || got["live.playlist_segments"] != 3 {
		t.Fatalf("problems: %v", err)
	}
	_, err = Parse([]byte("rtmp:\n  addr: nonsense\nlive:\n  playlist_segments: 1\n"), "bad.yaml", noEnv)
	ps = problems(t, err)
	if len(ps) != 2 || ps[0].Key != "rtmp.addr" || ps[0].Line != 2 || ps[1].Key != "live.playlist_segments" || ps[1].Line != 4 {
		t.Fatalf("problems: %v", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	env := map[string]string{
		"STREAMD_HTTP_ADDR":              "127.0.0.1:0",
		"STREAMD_LIVE_SEGMENT_DURATION":  "4s",
		"STREAMD_LIVE_PLAYLIST_SEGMENTS": "10",
		"STREAMD_HTTP_ALLOWED_ORIGINS":   `["https://a.example", "https://b.example"]`,
		"STREAMD_CHANNELS":               `[{name: one, stream_key: keykeykey1}]`,
		"STREAMD_STORAGE_OBJECTS_PATH":   "/tmp/x",
	}
	cfg, err := Parse(DefaultFile(), "d", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Addr != "127.0.0.1:0" || time.Duration(cfg.Live.SegmentDuration) != 4*time.Second ||
		cfg.Live.PlaylistSegments != 10 || len(cfg.HTTP.AllowedOrigins) != 2 ||
		cfg.Channels[0].Name != "one" || cfg.Storage.Objects.Path != "/tmp/x" {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	_, err = Parse(DefaultFile(), "d", func(k string) (string, bool) {
		if k == "STREAMD_LIVE_PLAYLIST_SEGMENTS" {
			return "lots", true
		}
		return "", false
	})
	if err == nil || !strings.Contains(err.Error(), "STREAMD_LIVE_PLAYLIST_SEGMENTS") {
		t.Fatalf("bad env value not reported: %v", err)
	}
}

func TestEmptyEnvTurnsAKeyOff(t *testing.T) {
	env := map[string]string{"STREAMD_RTSP_ADDR": "", "STREAMD_RTSP_UDP_RTP_ADDR": "", "STREAMD_RTSP_UDP_RTCP_ADDR": ""}
	cfg, err := Parse(DefaultFile(), "d", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil || cfg.RTSP.Addr != "" {
		t.Fatalf("%v %+v", err, cfg.RTSP)
	}
}

func TestEveryKeyHasAnEnvName(t *testing.T) {
	if EnvName("storage.objects.driver") != "STREAMD_STORAGE_OBJECTS_DRIVER" {
		t.Fatal(EnvName("storage.objects.driver"))
	}
}

func TestStreamKeyNeverEchoed(t *testing.T) {
	_, err := Parse([]byte("channels:\n  - name: a\n    stream_key: \"s3cr/t\"\n"), "x", noEnv)
	if err == nil || strings.Contains(err.Error(), "s3cr/t") {
		t.Fatalf("want an error without the key, got %v", err)
	}
	c := Config{Channels: []Channel{{Name: "a", StreamKey: "topsecret1"}}}
	c.Storage.Objects.SecretKey = "s3secret99"
	c.Storage.Meta.URL = "postgres://streamd:pgpass77@db:5432/streamd"
	c.Storage.Sessions.URL = "redis://:redispass55@cache:6379/0"
	c.Auth.URLSigningKey = "urlkey-secret-42"
	c.Auth.BillingWebhookSecret = "webhook-secret-43"
	c.Auth.OIDC = []OIDCProvider{{Name: "google", ClientSecret: "oidc-secret-44"}}
	out, err := Marshal(c, false)
	if c.Auth.OIDC[0].ClientSecret != "oidc-secret-44" {
		t.Fatal("Marshal changed the caller's config")
	}
	for _, secret := range []string{"topsecret1", "s3secret99", "pgpass77", "redispass55", "urlkey-secret-42", "webhook-secret-43", "oidc-secret-44"} {
		if err != nil || strings.Contains(string(out), secret) {
			t.Fatalf("print leaks %s: %s %v", secret, out, err)
		}
	}
	if !strings.Contains(string(out), "postgres://streamd:<redacted>@db:5432/streamd") {
		t.Errorf("URL not kept readable:\n%s", out)
	}
}

func TestBackendChoicesValidated(t *testing.T) {
	src := "storage:\n  objects:\n    driver: s3\n  meta:\n    driver: postgres\n    url: ./x.db\n  sessions:\n    driver: redis\n"
	_, err := Parse([]byte(src), "x", noEnv)
	for _, key := range []string{"storage.objects.endpoint", "storage.objects.bucket", "storage.objects.access_key", "storage.meta.url", "storage.sessions.url"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("no problem for %s: %v", key, err)
		}
	}
}

func TestMalformedYAML(t *testing.T) {
	for _, src := range []string{"http: [\n", "- a\n- b\n", "http:\n  addr: [1, 2]\n", "channels: 3\n", "\x00\x01"} {
		if _, err := Parse([]byte(src), "x", noEnv); err == nil {
			t.Errorf("%q: no error", src)
		}
	}
	if _, err := Parse(nil, "empty", noEnv); err != nil {
		t.Errorf("empty file should mean defaults: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(DefaultFile())
	f.Add([]byte("http:\n  adr: 1\n"))
	f.Add([]byte("channels:\n - {name: x, stream_key: [1]}\n"))
	f.Add([]byte("live: {segment_duration: -1s}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := Parse(b, "fuzz", noEnv)
		if err == nil && len(cfg.Validate()) > 0 {
			t.Fatalf("Parse accepted an invalid config")
		}
	})
}

func TestProductionExampleIsValidWithSecretsFromEnv(t *testing.T) {
	data, err := os.ReadFile("production.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"STREAMD_STORAGE_OBJECTS_ACCESS_KEY": "minio",
		"STREAMD_STORAGE_OBJECTS_SECRET_KEY": "minio-secret",
		"STREAMD_STORAGE_META_URL":           "postgres://streamd:pw@db:5432/streamd",
		"STREAMD_STORAGE_SESSIONS_URL":       "redis://:pw@cache:6379/0",
	}
	cfg, err := Parse(data, "production.yaml", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Storage.Objects.Driver != "s3" || cfg.Storage.Meta.Driver != "postgres" || cfg.Storage.Sessions.Driver != "redis" {
		t.Fatalf("%+v", cfg.Storage)
	}
	// Without the secrets it names what is missing.
	_, err = Parse(data, "production.yaml", noEnv)
	for _, key := range []string{"storage.objects.access_key", "storage.meta.url", "storage.sessions.url"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("missing secret %s not reported: %v", key, err)
		}
	}
}

func TestOIDCAndBillingKeys(t *testing.T) {
	good := `auth:
  oidc:
    - name: google
      issuer: https://accounts.google.com
      client_id: abc.apps.googleusercontent.com
      client_secret: s3cr3t-client
      redirect_url: https://streamd.example.com/api/auth/oidc/google/callback
      scopes: [email]
  oidc_post_login_url: https://app.example.com/logged-in
  billing_webhook_secret: 0123456789abcdef0123456789abcdef
  family_max_profiles: 6
`
	cfg, err := Parse([]byte(good), "x", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Auth.OIDC) != 1 || cfg.Auth.OIDC[0].ClientSecret != "s3cr3t-client" || cfg.Auth.FamilyMaxProfiles != 6 ||
		cfg.Auth.TierMaxHeight["free"] != 1080 {
		t.Fatalf("%+v", cfg.Auth)
	}
	// From the environment, as a YAML flow list.
	env := map[string]string{
		"STREAMD_AUTH_OIDC":                   `[{name: kc, issuer: "http://localhost:8081/realms/x", client_id: streamd, redirect_url: "http://localhost:8080/api/auth/oidc/kc/callback"}]`,
		"STREAMD_AUTH_BILLING_WEBHOOK_SECRET": "env-secret-env-secret-env-secret-1",
	}
	cfg, err = Parse(DefaultFile(), "d", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil || len(cfg.Auth.OIDC) != 1 || cfg.Auth.OIDC[0].Name != "kc" || cfg.Auth.BillingWebhookSecret == "" {
		t.Fatalf("env: %v %+v", err, cfg.Auth)
	}

	bad := `auth:
  oidc:
    - {name: Google, issuer: "http://accounts.google.com", client_id: "", redirect_url: "https://s.example/api/auth/oidc/other/callback"}
    - {name: a, issuer: https://a.example, client_id: x, redirect_url: "https://s.example/api/auth/oidc/a/callback"}
    - {name: a, issuer: https://a.example, client_id: x, redirect_url: "/api/auth/oidc/a/callback"}
  oidc_post_login_url: "javascript:alert(1)"
  billing_webhook_secret: short-s3cret
  family_max_profiles: 0
  ad_free_tiers: [premium, gold]
  oidcc: []
`
	_, err = Parse([]byte(bad), "x", noEnv)
	if err == nil || !strings.Contains(err.Error(), `"oidc"`) {
		t.Fatalf("misspelt key: %v", err)
	}
	_, err = Parse([]byte(strings.Replace(bad, "  oidcc: []\n", "", 1)), "x", noEnv)
	for _, key := range []string{"auth.oidc[0].name", "auth.oidc[0].issuer", "auth.oidc[0].client_id", "auth.oidc[0].redirect_url",
		"auth.oidc[2].name", "auth.oidc[2].redirect_url", "auth.oidc_post_login_url", "auth.billing_webhook_secret", "auth.family_max_profiles",
		"auth.ad_free_tiers[1]"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("no problem for %s: %v", key, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "short-s3cret") {
		t.Errorf("the webhook secret is echoed: %v", err)
	}
	if strings.Contains(err.Error(), "auth.oidc[1]") {
		t.Errorf("a good provider is reported: %v", err)
	}
}

func TestMaxVODWorkers(t *testing.T) {
	if d := Defaults(); d.Transcode.MaxVODWorkers != 1 {
		t.Fatalf("default transcode.max_vod_workers = %d, want 1", d.Transcode.MaxVODWorkers)
	}
	cfg, err := Parse(DefaultFile(), "d", func(k string) (string, bool) {
		if k == "STREAMD_TRANSCODE_MAX_VOD_WORKERS" {
			return "3", true
		}
		return "", false
	})
	if err != nil || cfg.Transcode.MaxVODWorkers != 3 {
		t.Fatalf("env override: %d %v", cfg.Transcode.MaxVODWorkers, err)
	}
	_, err = Parse([]byte("transcode:\n  max_vod_workers: 0\n"), "x", noEnv)
	if err == nil || !strings.Contains(err.Error(), "transcode.max_vod_workers") {
		t.Fatalf("0 workers not refused: %v", err)
	}
}

func TestStateFollowsDataDir(t *testing.T) {
	env := map[string]string{"STREAMD_DATA_DIR": "/var/lib/streamd"}
	cfg, err := Parse(DefaultFile(), "d", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Storage.Meta.URL != "/var/lib/streamd/streamd.db" || cfg.Upload.TempDir != "/var/lib/streamd/uploads" {
		t.Fatalf("meta %q, uploads %q", cfg.Storage.Meta.URL, cfg.Upload.TempDir)
	}
	env["STREAMD_STORAGE_META_URL"] = "/srv/meta.db"
	cfg, _ = Parse(DefaultFile(), "d", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if cfg.Storage.Meta.URL != "/srv/meta.db" {
		t.Fatalf("an explicit url was replaced: %q", cfg.Storage.Meta.URL)
	}
}

func TestBodyLimitKeys(t *testing.T) {
	for _, c := range []struct{ yaml, key string }{
		{"http:\n  body_timeout: 500ms\n", "line 2: http.body_timeout"},
		{"http:\n  body_timeout: 1h\n", "line 2: http.body_timeout"},
		{"http:\n  min_body_rate_kib: -1\n", "line 2: http.min_body_rate_kib"},
		{"http:\n  body_rate_window: 0s\n", "line 2: http.body_rate_window"},
	} {
		if _, err := Parse([]byte(c.yaml), "x.yaml", noEnv); err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%q: %v", c.yaml, err)
		}
	}
	env := map[string]string{"STREAMD_HTTP_BODY_TIMEOUT": "5s", "STREAMD_HTTP_MIN_BODY_RATE_KIB": "0"}
	cfg, err := Parse(DefaultFile(), "d", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil || time.Duration(cfg.HTTP.BodyTimeout) != 5*time.Second || cfg.HTTP.MinBodyRateKiB != 0 ||
		time.Duration(cfg.HTTP.BodyRateWindow) != 30*time.Second {
		t.Fatalf("%+v %v", cfg.HTTP, err)
	}
}

func TestMetricsKeys(t *testing.T) {
	for _, c := range []struct{ yaml, key string }{
		{"metrics:\n  addr: nope\n", "line 2: metrics.addr"},
		{"metrics:\n  addr: \":8080\"\n", "line 2: metrics.addr"}, // http.addr
		{"metrics:\n  token: short\n", "line 2: metrics.token"},
	} {
		if _, err := Parse([]byte(c.yaml), "x.yaml", noEnv); err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%q: %v", c.yaml, err)
		}
	}
	_, err := Parse([]byte("metrics:\n  token: \"s3cr3t short\"\n"), "x.yaml", noEnv)
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("want an error without the token, got %v", err)
	}
	const tok = "0123456789abcdef-metrics"
	env := map[string]string{"STREAMD_METRICS_TOKEN": tok, "STREAMD_METRICS_ADDR": "127.0.0.1:9100"}
	cfg, err := Parse(DefaultFile(), "d", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil || cfg.Metrics.Token != tok || cfg.Metrics.Addr != "127.0.0.1:9100" {
		t.Fatalf("%+v %v", cfg.Metrics, err)
	}
	if out, _ := Marshal(cfg, false); strings.Contains(string(out), tok) {
		t.Error("config print shows the metrics token")
	}
}
