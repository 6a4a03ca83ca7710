package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamd/streamd/internal/testenv"
)

// productionEnv points the binary at MinIO, PostgreSQL and Redis.
func productionEnv(t *testing.T, s3Endpoint string) []string {
	_, access, secret, bucket := testenv.S3Bucket(t)
	return []string{
		"STREAMD_STORAGE_OBJECTS_DRIVER=s3",
		"STREAMD_STORAGE_OBJECTS_ENDPOINT=" + s3Endpoint,
		"STREAMD_STORAGE_OBJECTS_BUCKET=" + bucket,
		"STREAMD_STORAGE_OBJECTS_ACCESS_KEY=" + access,
		"STREAMD_STORAGE_OBJECTS_SECRET_KEY=" + secret,
		"STREAMD_STORAGE_OBJECTS_LIVE_EXPIRE_DAYS=2",
		"STREAMD_STORAGE_META_DRIVER=postgres",
		"STREAMD_STORAGE_META_URL=" + testenv.Postgres(t),
		"STREAMD_STORAGE_SESSIONS_DRIVER=redis",
		"STREAMD_STORAGE_SESSIONS_URL=" + testenv.Redis(t),
	}
}

func TestLiveOnMinIOPostgresRedis(t *testing.T) {
	endpoint, _, _ := testenv.S3(t)
	s := startServer(t, productionEnv(t, endpoint)...)
	ff := publish(t, "h264_aac_360p.mp4", "-f", "flv", "rtmp://"+s.rtmp+"/live/"+testKey)
	if err := ff.Wait(); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	checkEndedStream(t, s, "main", 4, []string{"avc1.4d401e", "mp4a.40.2"})
	for _, want := range []string{`"meta":"postgres"`, `"sessions":"redis"`, `"objects":"s3://`} {
		if !strings.Contains(s.Logs(), want) {
			t.Errorf("start-up log lacks %s", want)
		}
	}
}

// proxy is a TCP relay the test can cut, standing for MinIO going down.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.setDown(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			if down {
				c.Close() // connection refused, as good as
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// TestMinIOOutageDuringLiveStream: MinIO is unreachable for 15 s while a
// channel is live. The stream goes on, /readyz says not ready meanwhile,
// and afterwards every segment is stored and the playlist has no hole.
func TestMinIOOutageDuringLiveStream(t *testing.T) {
	endpoint, _, _ := testenv.S3(t)
	px := newProxy(t, endpoint)
	s := startServer(t, append(productionEnv(t, px.addr()), "STREAMD_LIVE_PLAYLIST_SEGMENTS=100")...)
	// 24 s of media: ~6 s before, 15 s during, a few after the outage.
	ff := publishArgs(t, "h264_aac_720p.mp4", true, "-t", "24", "-f", "flv", "rtmp://"+s.rtmp+"/live/"+testKey)
	waitFor(t, 15*time.Second, "the first playlist", func() bool {
		resp, _ := s.get(t, "/live/main/source/index.m3u8")
		return resp.StatusCode == 200
	})
	time.Sleep(2 * time.Second) // let a segment or two through first
	px.setDown(true)
	waitFor(t, 10*time.Second, "/readyz to report the outage", func() bool {
		resp, _ := s.get(t, "/readyz")
		return resp.StatusCode == 503
	})
	time.Sleep(13 * time.Second)
	px.setDown(false)
	waitFor(t, 20*time.Second, "/readyz back", func() bool {
		resp, _ := s.get(t, "/readyz")
		return resp.StatusCode == 200
	})
	if err := ff.Wait(); err != nil {
		t.Fatalf("the publisher was disturbed by the outage: %v", err)
	}
	mp := checkEndedStream(t, s, "main", 24, []string{"avc1.64001f", "mp4a.40.2"})
	for _, seg := range mp.Segments {
		if seg.Discontinuity {
			t.Fatalf("the outage left a hole (discontinuity before %s)", seg.URI)
		}
	}
	if strings.Contains(s.Logs(), "panic") {
		t.Error("panic in the logs")
	}
}

func TestUnreachableBackendIsOneClearLine(t *testing.T) {
	dead := func() string { // a port nobody listens on
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		a := ln.Addr().String()
		ln.Close()
		return a
	}
	cases := []struct {
		env  []string
		want string
	}{
		{[]string{"STREAMD_STORAGE_META_DRIVER=postgres", "STREAMD_STORAGE_META_URL=postgres://streamd:wrongpass@" + dead() + "/streamd?sslmode=disable"},
			"storage.meta.url: postgres at 127.0.0.1:"},
		{[]string{"STREAMD_STORAGE_SESSIONS_DRIVER=redis", "STREAMD_STORAGE_SESSIONS_URL=redis://" + dead() + "/0"},
			"storage.sessions.url: redis at 127.0.0.1:"},
		{[]string{"STREAMD_STORAGE_OBJECTS_DRIVER=s3", "STREAMD_STORAGE_OBJECTS_ENDPOINT=" + dead(), "STREAMD_STORAGE_OBJECTS_BUCKET=bucket",
			"STREAMD_STORAGE_OBJECTS_ACCESS_KEY=a", "STREAMD_STORAGE_OBJECTS_SECRET_KEY=s3cret-s3cret"},
			"storage.objects.endpoint 127.0.0.1:"},
	}
	for _, c := range cases {
		t.Run(strings.SplitN(c.want, ":", 2)[0], func(t *testing.T) { checkStartFails(t, c.env, c.want) })
	}
}

func checkStartFails(t *testing.T, extra []string, want string) {
	c := struct {
		env  []string
		want string
	}{extra, want}
	{
		dir := t.TempDir()
		env := append([]string{"STREAMD_DATA_DIR=" + dir, "STREAMD_STORAGE_OBJECTS_PATH=" + dir, "STREAMD_STORAGE_META_URL=" + dir + "/m.db",
			"STREAMD_HTTP_ADDR=127.0.0.1:0", "STREAMD_RTMP_ADDR=127.0.0.1:0", "STREAMD_RTSP_ADDR=",
			"STREAMD_RTSP_UDP_RTP_ADDR=", "STREAMD_RTSP_UDP_RTCP_ADDR="}, c.env...)
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			t.Setenv(k, v)
		}
		var out, errb bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		code := run(ctx, []string{"serve"}, strings.NewReader(""), &out, &errb)
		cancel()
		lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
		last := lines[len(lines)-1]
		if code != 1 || !strings.Contains(last, c.want) {
			t.Errorf("want exit 1 and a line with %q, got %d:\n%s", c.want, code, errb.String())
		}
		if strings.Contains(errb.String(), "wrongpass") || strings.Contains(errb.String(), "s3cret-s3cret") {
			t.Errorf("a secret reached the output:\n%s", errb.String())
		}
		if strings.Contains(errb.String(), "panic") {
			t.Errorf("panic:\n%s", errb.String())
		}
	}
}

func TestConfigCheckReportsBackends(t *testing.T) {
	endpoint, _, _ := testenv.S3(t)
	for _, kv := range productionEnv(t, endpoint) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	code, out, errOut := runCLI("config", "check", "../../configs/production.yaml")
	if code != 0 {
		t.Fatalf("%d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"objects  ok      s3 ", "meta     ok      postgres ", "sessions ok      redis "} {
		if !strings.Contains(out, want) {
			t.Errorf("config check output lacks %q:\n%s", want, out)
		}
	}
	t.Setenv("STREAMD_STORAGE_SESSIONS_URL", "redis://127.0.0.1:1/0")
	code, out, _ = runCLI("config", "check", "../../configs/production.yaml")
	if code != 1 || !strings.Contains(out, "sessions FAILED") {
		t.Errorf("unreachable redis not reported: %d\n%s", code, out)
	}
}

// TestRedisOutage: with Redis unreachable, logins fail with a clear 503
// while playback of a live channel goes on.
func TestRedisOutage(t *testing.T) {
	redisURL := testenv.Redis(t)
	u, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, u.Host)
	u.Host = px.addr()
	s := startServer(t, "STREAMD_STORAGE_SESSIONS_DRIVER=redis", "STREAMD_STORAGE_SESSIONS_URL="+u.String())
	publishLoop(t, "h264_aac_720p.mp4", "-f", "flv", "rtmp://"+s.rtmp+"/live/"+testKey)
	waitFor(t, 15*time.Second, "the first playlist", func() bool {
		resp, _ := s.get(t, "/live/main/source/index.m3u8")
		return resp.StatusCode == 200
	})
	px.setDown(true)
	resp, err := http.Post(s.url("/api/auth/login"), "application/json", strings.NewReader(`{"username":"nobody","password":"whatever-long-pw"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), `"code":"unavailable"`) {
		t.Errorf("login during the Redis outage: %d %s", resp.StatusCode, body)
	}
	// Playback continues: the playlist keeps moving.
	first := mediaPlaylist(t, s, "/live/main/source/index.m3u8")
	waitFor(t, 10*time.Second, "a new segment during the outage", func() bool {
		mp := mediaPlaylist(t, s, "/live/main/source/index.m3u8")
		return len(mp.Segments)+mp.MediaSequence > len(first.Segments)+first.MediaSequence
	})
	if resp, _ := s.get(t, "/live/main/index.m3u8"); resp.StatusCode != 200 {
		t.Errorf("master during the Redis outage: %d", resp.StatusCode)
	}
}

// TestPostgresOutage: PostgreSQL unreachable for a while (a relay the test
// cuts) — API requests that need it get a clear 503, playback goes on
// (the origin keeps the last visibility it read for a channel), and the
// pool reconnects by itself once it is back.
func TestPostgresOutage(t *testing.T) {
	pgURL := testenv.Postgres(t)
	u, err := url.Parse(pgURL)
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, u.Host)
	u.Host = px.addr()
	s := startServer(t, "STREAMD_STORAGE_META_DRIVER=postgres", "STREAMD_STORAGE_META_URL="+u.String())
	get := func() (int, string) {
		resp, b := s.get(t, "/api/content")
		return resp.StatusCode, string(b)
	}
	if code, b := get(); code != 200 {
		t.Fatalf("catalog before the outage: %d %s", code, b)
	}
	publishLoop(t, "h264_aac_720p.mp4", "-f", "flv", "rtmp://"+s.rtmp+"/live/"+testKey)
	waitFor(t, 15*time.Second, "the first playlist", func() bool {
		resp, _ := s.get(t, "/live/main/source/index.m3u8")
		return resp.StatusCode == 200
	})
	px.setDown(true)
	waitFor(t, 15*time.Second, "a 503 during the outage", func() bool {
		code, b := get()
		if code != 503 && code != 200 {
			t.Fatalf("during the outage: %d %s", code, b)
		}
		return code == 503 && strings.Contains(b, `"code":"unavailable"`)
	})
	// The policy's memo (2 s) has expired by now: the channel still plays.
	first := mediaPlaylist(t, s, "/live/main/source/index.m3u8")
	waitFor(t, 10*time.Second, "a new segment during the outage", func() bool {
		mp := mediaPlaylist(t, s, "/live/main/source/index.m3u8")
		return len(mp.Segments)+mp.MediaSequence > len(first.Segments)+first.MediaSequence
	})
	px.setDown(false)
	waitFor(t, 20*time.Second, "the pool to reconnect", func() bool {
		code, _ := get()
		return code == 200
	})
}
