package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/store"
)

// limiter is api.Limiter, restated so that this package need not import api.
type limiter interface {
	Allow(ctx context.Context, key string, limit int, window time.Duration) (ok bool, retryAfter time.Duration, err error)
}

var (
	_ limiter = (*Memory)(nil)
	_ limiter = (*Redis)(nil)
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// redisClient opens a client on a Redis database of the test's own.
func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// implementations are the limiters the contract runs against, both on
// real time (Redis reads its own clock).
var implementations = []struct {
	name string
	open func(t *testing.T) limiter
}{
	{"Memory", func(t *testing.T) limiter { return NewMemory(nil) }},
	{"Redis", func(t *testing.T) limiter {
		return NewRedis(redisClient(t), "test:"+randomHex(6)+":")
	}},
}

// allow calls l.Allow and fails the test on an error.
func allow(t *testing.T, l limiter, key string, limit int, window time.Duration) (bool, time.Duration) {
	t.Helper()
	ok, retry, err := l.Allow(context.Background(), key, limit, window)
	if err != nil {
		t.Fatalf("Allow(%q, %d, %v): %v", key, limit, window, err)
	}
	if ok && retry != 0 {
		t.Fatalf("Allow(%q): allowed with retryAfter %v, want 0", key, retry)
	}
	if !ok && retry < time.Millisecond {
		t.Fatalf("Allow(%q): refused with retryAfter %v, want >= 1ms", key, retry)
	}
	return ok, retry
}

// burst hits key n times and returns how many were allowed.
func burst(t *testing.T, l limiter, key string, n, limit int, window time.Duration) int {
	t.Helper()
	allowed := 0
	for range n {
		if ok, _ := allow(t, l, key, limit, window); ok {
			allowed++
		}
	}
	return allowed
}

// TestContract checks the api.Limiter semantics on both implementations.
// Real time: 10 hits per second, so one hit's worth is 100 ms.
func TestContract(t *testing.T) {
	const (
		limit    = 10
		window   = time.Second
		interval = window / limit
	)
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			t.Run("BurstThenSmooth", func(t *testing.T) {
				l := impl.open(t)
				start := time.Now()
				if n := burst(t, l, "k", limit, limit, window); n != limit {
					t.Fatalf("burst: %d of %d allowed, want all", n, limit)
				}
				ok, retry := allow(t, l, "k", limit, window)
				elapsed := time.Since(start)
				if ok {
					t.Fatalf("hit %d after the burst was allowed", limit+1)
				}
				// The first token comes back interval after the burst began.
				if retry > interval+time.Millisecond || retry < interval-elapsed-time.Millisecond {
					t.Fatalf("retryAfter = %v after a burst of %v, want about %v", retry, elapsed, interval)
				}
				time.Sleep(retry)
				if ok, _ := allow(t, l, "k", limit, window); !ok {
					t.Fatalf("refused after waiting retryAfter (%v)", retry)
				}
				if ok, retry := allow(t, l, "k", limit, window); ok {
					t.Fatalf("a second hit right after the refill was allowed: refill is one hit per %v", interval)
				} else if retry > interval+time.Millisecond || retry < interval/2 {
					t.Fatalf("retryAfter = %v after a single refill, want about %v", retry, interval)
				}
			})
			t.Run("KeysAreIndependent", func(t *testing.T) {
				l := impl.open(t)
				if n := burst(t, l, "a", limit+5, limit, window); n != limit {
					t.Fatalf("key a: %d allowed, want %d", n, limit)
				}
				if n := burst(t, l, "b", limit+5, limit, window); n != limit {
					t.Fatalf("key b after key a was exhausted: %d allowed, want %d", n, limit)
				}
			})
			t.Run("Unlimited", func(t *testing.T) {
				l := impl.open(t)
				for _, c := range []struct {
					limit  int
					window time.Duration
				}{{0, window}, {-1, window}, {limit, 0}, {limit, -time.Second}} {
					if n := burst(t, l, "u", 100, c.limit, c.window); n != 100 {
						t.Fatalf("limit %d window %v: %d of 100 allowed, want all", c.limit, c.window, n)
					}
				}
			})
			t.Run("Concurrent", func(t *testing.T) {
				// 50 goroutines × 20 hits against 100 a minute: exactly 100
				// pass, unless the whole thing took longer than a refill
				// (600 ms), which would let one more through per refill.
				const workers, hits, lim, win = 50, 20, 100, time.Minute
				l := impl.open(t)
				var allowed atomic.Int64
				var wg sync.WaitGroup
				start := time.Now()
				for range workers {
					wg.Go(func() {
						for range hits {
							ok, _, err := l.Allow(context.Background(), "shared", lim, win)
							if err != nil {
								t.Error(err)
								return
							}
							if ok {
								allowed.Add(1)
							}
						}
					})
				}
				wg.Wait()
				elapsed := time.Since(start)
				extra := int64(elapsed / (win / lim))
				if n := allowed.Load(); n < lim || n > lim+extra {
					t.Fatalf("%d of %d concurrent hits allowed in %v, want %d", n, workers*hits, elapsed, lim)
				}
			})
		})
	}
}

// fakeClock is a settable clock for Memory.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestMemorySmoothRefill checks GCRA to the nanosecond on a fake clock.
func TestMemorySmoothRefill(t *testing.T) {
	const limit, window, interval = 10, time.Second, 100 * time.Millisecond
	clk := newFakeClock()
	m := NewMemory(clk.Now)

	if n := burst(t, m, "k", limit, limit, window); n != limit {
		t.Fatalf("burst: %d allowed, want %d", n, limit)
	}
	if ok, retry := allow(t, m, "k", limit, window); ok || retry != interval {
		t.Fatalf("after the burst: ok=%v retryAfter=%v, want refused, %v", ok, retry, interval)
	}
	clk.Advance(interval - time.Millisecond)
	if ok, retry := allow(t, m, "k", limit, window); ok || retry != time.Millisecond {
		t.Fatalf("1ms before the refill: ok=%v retryAfter=%v, want refused, 1ms", ok, retry)
	}
	clk.Advance(time.Millisecond - time.Nanosecond)
	if ok, retry := allow(t, m, "k", limit, window); ok || retry != time.Millisecond {
		t.Fatalf("1ns before the refill: ok=%v retryAfter=%v, want refused, 1ms (the floor)", ok, retry)
	}
	clk.Advance(time.Nanosecond)
	if ok, _ := allow(t, m, "k", limit, window); !ok {
		t.Fatal("refused exactly at the refill")
	}
	if ok, retry := allow(t, m, "k", limit, window); ok || retry != interval {
		t.Fatalf("right after the refill: ok=%v retryAfter=%v, want refused, %v", ok, retry, interval)
	}

	// No double burst at what would be a fixed window's edge: 10 ms on,
	// nothing; half a window on, exactly half the limit.
	clk.Advance(10 * time.Millisecond)
	if ok, _ := allow(t, m, "k", limit, window); ok {
		t.Fatal("allowed 10ms after the last token was spent")
	}
	clk.Advance(window/2 - 10*time.Millisecond)
	if n := burst(t, m, "k", limit, limit, window); n != limit/2 {
		t.Fatalf("after half a window: %d allowed, want %d", n, limit/2)
	}

	// Idle for a whole window: the full burst is back, not more.
	clk.Advance(window)
	if n := burst(t, m, "k", 2*limit, limit, window); n != limit {
		t.Fatalf("after an idle window: %d allowed, want %d", n, limit)
	}
}

// TestMemorySweep: a million distinct keys whose TAT has passed are
// forgotten, and the map never exceeds its bound.
func TestMemorySweep(t *testing.T) {
	if testing.Short() {
		t.Skip("a million keys")
	}
	const n = 1_000_000
	clk := newFakeClock()
	m := NewMemory(clk.Now)
	for i := range n {
		if ok, _ := allow(t, m, "ip:"+strconv.Itoa(i), 10, time.Second); !ok {
			t.Fatalf("first hit on key %d refused", i)
		}
	}
	if s := m.size(); s > MaxMemoryKeys || s < n/2 {
		t.Fatalf("%d keys remembered after %d distinct live ones, want at most %d (and most of them)", s, n, MaxMemoryKeys)
	}

	// Their TATs passed a second later; sweeps run at most every sweepEvery.
	clk.Advance(time.Second + sweepEvery)
	const fresh = 1000
	for i := range fresh {
		allow(t, m, "new:"+strconv.Itoa(i), 10, time.Second)
	}
	if s := m.size(); s != fresh {
		t.Fatalf("%d keys remembered after the old ones expired and %d new ones hit, want %d", s, fresh, fresh)
	}
}

// TestMemoryBound: live keys beyond the bound are forgotten, and a
// forgotten key is only ever let through more, never refused wrongly.
func TestMemoryBound(t *testing.T) {
	const maxKeys = 64 * shardCount
	clk := newFakeClock()
	m := newMemory(clk.Now, maxKeys)
	for i := range 100 * maxKeys {
		if ok, _ := allow(t, m, "ip:"+strconv.Itoa(i), 1, time.Hour); !ok {
			t.Fatalf("first hit on key %d refused", i)
		}
		if i%1000 == 0 {
			if s := m.size(); s > maxKeys {
				t.Fatalf("%d keys remembered, bound %d", s, maxKeys)
			}
		}
	}
	if s := m.size(); s > maxKeys || s < maxKeys/2 {
		t.Fatalf("%d keys remembered, want at most %d (and most of them)", s, maxKeys)
	}
}

// TestRedisKeys documents where the state lives: one key per limited key,
// "rate:"+prefix+key, expiring with its TAT.
func TestRedisKeys(t *testing.T) {
	c := redisClient(t)
	prefix := "test:" + randomHex(6) + ":"
	l := NewRedis(c, prefix)
	allow(t, l, "api:ip:192.0.2.1", 10, time.Second)
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*"+prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := "rate:" + prefix + "api:ip:192.0.2.1"
	if len(keys) != 1 || keys[0] != want {
		t.Fatalf("keys in Redis = %q, want [%q]", keys, want)
	}
	if ttl, err := c.TTL(ctx, want).Result(); err != nil || ttl <= 0 || ttl > 2*time.Second {
		t.Fatalf("TTL of %s = %v, %v; want about the window", want, ttl, err)
	}
}

// TestRedisUnreachable: a Redis that is not there is ErrUnavailable (the
// API's 503), at once, and the error does not show the password.
func TestRedisUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()

	const password = "s3cret-pass-Wd"
	c := redis.NewClient(&redis.Options{
		Addr:               addr,
		Password:           password,
		DialTimeout:        500 * time.Millisecond,
		DialerRetries:      1,
		DialerRetryTimeout: time.Millisecond,
		MaxRetries:         -1, // go-redis: -1, not 0, disables retries
	})
	t.Cleanup(func() { _ = c.Close() })
	l := NewRedis(c, "test:")

	start := time.Now()
	ok, _, err := l.Allow(context.Background(), "k", 10, time.Second)
	elapsed := time.Since(start)
	if ok || err == nil {
		t.Fatalf("Allow on a closed port: ok=%v err=%v, want an error", ok, err)
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("error %q does not wrap store.ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), password) {
		t.Fatalf("error %q shows the password", err)
	}
	if elapsed > 2*time.Second {
		t.Fatalf("took %v to fail, want well under a second", elapsed)
	}
	t.Logf("error: %v (after %v)", err, elapsed)

	// A client that has gone away is its own error, not an outage.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := l.Allow(ctx, "k", 10, time.Second); !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("cancelled context: err = %v, want context.Canceled and not ErrUnavailable", err)
	}
}

// BenchmarkMemoryAllow: parallel hits spread over many keys, most of them
// allowed, some refused.
func BenchmarkMemoryAllow(b *testing.B) {
	const nkeys = 100_000
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = "api:ip:10." + strconv.Itoa(i>>16&255) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255)
	}
	m := NewMemory(nil)
	var next atomic.Uint64
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1) * 7919 // each goroutine starts elsewhere in the keys
		for pb.Next() {
			i++
			_, _, _ = m.Allow(ctx, keys[i%nkeys], 100, time.Minute)
		}
	})
}
