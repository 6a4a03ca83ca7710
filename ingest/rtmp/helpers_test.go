package rtmp

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/live"
	"github.com/streamd/streamd/media"
)

const testKey = "secretkey123"

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// recorder is a hub listener that records every publication's units.
type recorder struct {
	mu   sync.Mutex
	pubs []*recordedPub
}

func (r *recorder) OnPublish(s *live.Stream) {
	p := &recordedPub{tracks: s.Tracks}
	r.mu.Lock()
	r.pubs = append(r.pubs, p)
	r.mu.Unlock()
	s.AddReader(p)
}

func (r *recorder) list() []*recordedPub {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*recordedPub(nil), r.pubs...)
}

type recordedPub struct {
	tracks []*media.Track

	mu     sync.Mutex
	units  []*media.Unit
	closed bool
}

func (p *recordedPub) WriteUnit(u *media.Unit) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.units = append(p.units, u)
}

func (p *recordedPub) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
}

func (p *recordedPub) snapshot() ([]*media.Unit, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*media.Unit(nil), p.units...), p.closed
}

func (p *recordedPub) unitCount() int {
	u, _ := p.snapshot()
	return len(u)
}

func (p *recordedPub) isClosed() bool {
	_, c := p.snapshot()
	return c
}

func (p *recordedPub) unitsOf(trackID int) []*media.Unit {
	all, _ := p.snapshot()
	var out []*media.Unit
	for _, u := range all {
		if u.Track.ID == trackID {
			out = append(out, u)
		}
	}
	return out
}

type env struct {
	t    *testing.T
	hub  *live.Hub
	srv  *Server
	rec  *recorder
	logs *syncBuffer
	addr string // host:port
}

// newEnv starts a server on a free port with a real hub. At cleanup it
// closes the server and checks that no key ever reached the logs.
func newEnv(t *testing.T, readTimeout time.Duration, forbidden ...string) *env {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	hub := live.NewHub(logger, []live.Channel{{Name: "main", StreamKey: testKey}})
	rec := &recorder{}
	hub.AddListener(rec)
	srv := &Server{Addr: "127.0.0.1:0", Hub: hub, Log: logger, ReadTimeout: readTimeout}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, hub: hub, srv: srv, rec: rec, logs: logs, addr: srv.ListenAddr().String()}
	t.Cleanup(func() {
		out := logs.String()
		for _, k := range append([]string{testKey}, forbidden...) {
			if strings.Contains(out, k) {
				t.Errorf("a stream key (%q) appears in the logs:\n%s", k, out)
			}
		}
		if t.Failed() || os.Getenv("RTMP_TEST_LOGS") != "" {
			t.Logf("server log:\n%s", out)
		}
	})
	t.Cleanup(srv.Close)
	return e
}

func (e *env) url(path string) string { return "rtmp://" + e.addr + path }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitPub waits for the n-th publication to appear and returns it.
func (e *env) waitPub(n int, timeout time.Duration) *recordedPub {
	e.t.Helper()
	var p *recordedPub
	waitFor(e.t, timeout, fmt.Sprintf("publication #%d", n+1), func() bool {
		l := e.rec.list()
		if len(l) > n {
			p = l[n]
			return true
		}
		return false
	})
	return p
}

// ffmpeg is a running ffmpeg process with its output captured.
type ffmpeg struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	done   chan struct{}
	err    error
	cancel context.CancelFunc
}

func startFFmpeg(t *testing.T, args ...string) *ffmpeg {
	t.Helper()
	bin := testenv.FFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	full := append([]string{"-hide_banner", "-nostdin", "-loglevel", "error"}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	f := &ffmpeg{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{}), cancel: cancel}
	cmd.Stdout, cmd.Stderr = f.out, f.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		f.err = cmd.Wait()
		close(f.done)
	}()
	t.Cleanup(func() { f.cancel(); <-f.done })
	return f
}

// wait returns ffmpeg's exit error (nil for exit 0).
func (f *ffmpeg) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-f.done:
		return f.err
	case <-time.After(timeout):
		f.cancel()
		<-f.done
		t.Fatalf("ffmpeg did not exit within %s; output:\n%s", timeout, f.out.String())
		return nil
	}
}

func (f *ffmpeg) exited() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// dial opens a raw TCP connection to the server.
func (e *env) dial() net.Conn {
	e.t.Helper()
	c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// waitServerClose reads from c until the server closes it and returns how
// long that took.
func waitServerClose(t *testing.T, c net.Conn, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(timeout))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("server did not close the connection within %s", timeout)
			}
			return time.Since(start)
		}
	}
}
