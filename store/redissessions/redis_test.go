package redissessions

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/storetest"
)

// go-redis logs its redials to a logger of its own; keep test output to
// what the tests say.
func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	os.Exit(m.Run())
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func TestContract(t *testing.T) {
	storetest.TestSessions(t, func(t *testing.T) store.Sessions {
		url := testenv.Redis(t)
		s, err := Open(context.Background(), url, Options{Prefix: "streamd:"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func oneLine(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not say %q", msg, w)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	port := strconv.Itoa(freePort(t))
	_, err := Open(ctx, "redis://127.0.0.1:"+port+"/0", Options{})
	oneLine(t, err, "redis at 127.0.0.1:"+port, "connection refused")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("closed port: %v does not match ErrUnavailable", err)
	}
	t.Log(err)

	_, err = Open(ctx, "http://nope", Options{})
	oneLine(t, err, "invalid URL")

	// A wrong password, on a private server that wants one.
	p := freePort(t)
	startRedis(t, p, "--requirepass", "right-pw")
	_, err = Open(ctx, "redis://:s3cret-pw@127.0.0.1:"+strconv.Itoa(p)+"/0", Options{})
	oneLine(t, err, "authentication failed")
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("error shows the password: %v", err)
	}
	t.Log(err)
}

// startRedis runs a private redis-server on port until the returned stop
// is called: stopping the shared one would break other tests.
func startRedis(t *testing.T, port int, args ...string) (stop func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		testenv.Require(t, "redis-server")
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	cmd.Args = append(cmd.Args, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop = func() {
		_ = cmd.Process.Kill()
		<-done
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
			return stop
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %d did not start", port)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Redis goes away while the client is open: calls fail with ErrUnavailable
// (quickly, not after minutes), and the same Store works once it is back.
func TestOutage(t *testing.T) {
	ctx := context.Background()
	port := freePort(t)
	stop := startRedis(t, port)
	s, err := Open(ctx, "redis://127.0.0.1:"+strconv.Itoa(port)+"/0", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	stop()

	start := time.Now()
	for i, call := range []func() error{
		func() error { _, err := s.Get(ctx, "k"); return err },
		func() error { _, err := s.Incr(ctx, "c", time.Minute); return err },
		func() error { return s.SAdd(ctx, "s", "m") },
		func() error { return s.Ping(ctx) },
	} {
		err := call()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("during outage: %v, want ErrUnavailable", err)
		}
		oneLine(t, err, "redis at 127.0.0.1:"+strconv.Itoa(port))
		t.Logf("call %d failed after %v", i, time.Since(start))
	}
	t.Logf("during outage: %v", s.Ping(ctx))
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("outage errors took %v", d)
	}

	startRedis(t, port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.Set(ctx, "k2", []byte("v2"), 0)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v, err := s.Get(ctx, "k2"); err != nil || string(v) != "v2" {
		t.Fatalf("after restart: get = %q, %v", v, err)
	}
}
