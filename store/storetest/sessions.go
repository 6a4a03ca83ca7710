// Package storetest holds the contract test suites every backend of a
// store interface must pass. A backend's test calls them with a function
// that opens a fresh, empty instance:
//
//	func TestContract(t *testing.T) {
//		storetest.TestSessions(t, func(t *testing.T) store.Sessions { ... })
//	}
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamd/streamd/store"
)

// metachars is a value that breaks any query built by concatenation.
const metachars = `'; DROP TABLE users; -- " \ % _ $1 ? :name ` + "`x` \t\n\r ünï 字 🎥"

// big returns a 1 MB string of all byte values but NUL, valid UTF-8.
func big() string {
	var b strings.Builder
	for b.Len() < 1<<20 {
		b.WriteString(metachars)
		b.WriteString("0123456789abcdef")
	}
	return b.String()[:1<<20-len("end")] + "end"
}

// eventually polls cond every 20 ms until it holds or 5 s pass: short TTLs
// are checked without long fixed sleeps.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustIs(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one matching %q", what, err, target)
	}
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// TestSessions runs the store.Sessions contract. open returns a fresh,
// empty store and arranges its Close (and clean-up) with t.Cleanup.
func TestSessions(t *testing.T, open func(t *testing.T) store.Sessions) {
	ctx := context.Background()

	t.Run("SetGetDelete", func(t *testing.T) {
		s := open(t)
		_, err := s.Get(ctx, "missing")
		mustIs(t, err, store.ErrNotFound, "get missing")
		must(t, s.Set(ctx, "a", []byte("one"), 0), "set")
		must(t, s.Set(ctx, "a", []byte("two"), 0), "overwrite")
		got, err := s.Get(ctx, "a")
		must(t, err, "get")
		if string(got) != "two" {
			t.Fatalf("get = %q, want two", got)
		}
		must(t, s.Set(ctx, "empty", nil, 0), "set empty")
		got, err = s.Get(ctx, "empty")
		must(t, err, "get empty")
		if got == nil || len(got) != 0 {
			t.Fatalf("get empty = %#v, want non-nil empty", got)
		}
		must(t, s.Delete(ctx, "a", "empty", "never-was"), "delete")
		_, err = s.Get(ctx, "a")
		mustIs(t, err, store.ErrNotFound, "get deleted")
		must(t, s.Delete(ctx), "delete nothing")
	})

	t.Run("Verbatim", func(t *testing.T) {
		s := open(t)
		bin := []byte{0, 1, 2, 0xff, 0xfe, '\r', '\n', 0}
		large := []byte(big())
		for key, val := range map[string][]byte{
			metachars:    []byte(metachars),
			"bin":        bin,
			"large":      large,
			"k:with:sep": []byte("v"),
		} {
			must(t, s.Set(ctx, key, val, time.Hour), "set "+key)
			got, err := s.Get(ctx, key)
			must(t, err, "get "+key)
			if !bytes.Equal(got, val) {
				t.Fatalf("key %q: got %d bytes, want %d verbatim", key, len(got), len(val))
			}
		}
		must(t, s.SAdd(ctx, "set", metachars, string(large), ""), "sadd odd members")
		m, err := s.SMembers(ctx, "set")
		must(t, err, "smembers")
		want := []string{"", metachars, string(large)}
		slices.Sort(want)
		if !slices.Equal(m, want) {
			t.Fatalf("smembers: %d members, not the three stored verbatim", len(m))
		}
	})

	t.Run("TTL", func(t *testing.T) {
		s := open(t)
		must(t, s.Set(ctx, "short", []byte("x"), 150*time.Millisecond), "set short")
		must(t, s.Set(ctx, "forever", []byte("y"), 0), "set forever")
		must(t, s.Set(ctx, "persisted", []byte("z"), 150*time.Millisecond), "set persisted")
		must(t, s.Expire(ctx, "persisted", 0), "expire 0 (persist)")
		must(t, s.Set(ctx, "shortened", []byte("w"), time.Hour), "set shortened")
		must(t, s.Expire(ctx, "shortened", 100*time.Millisecond), "expire shorter")
		if _, err := s.Get(ctx, "short"); err != nil {
			t.Fatalf("get before expiry: %v", err)
		}
		eventually(t, "short-TTL key still there", func() bool {
			_, err := s.Get(ctx, "short")
			return errors.Is(err, store.ErrNotFound)
		})
		eventually(t, "expired key still there", func() bool {
			_, err := s.Get(ctx, "shortened")
			return errors.Is(err, store.ErrNotFound)
		})
		for _, k := range []string{"forever", "persisted"} {
			if _, err := s.Get(ctx, k); err != nil {
				t.Fatalf("%s: %v (should not expire)", k, err)
			}
		}
		mustIs(t, s.Expire(ctx, "short", time.Second), store.ErrNotFound, "expire an expired key")
		mustIs(t, s.Expire(ctx, "never-was", 0), store.ErrNotFound, "persist a missing key")
		// Set replaces the TTL too.
		must(t, s.Set(ctx, "forever", []byte("y2"), 100*time.Millisecond), "set with ttl")
		eventually(t, "re-set key with TTL never expires", func() bool {
			_, err := s.Get(ctx, "forever")
			return errors.Is(err, store.ErrNotFound)
		})
	})

	t.Run("Counters", func(t *testing.T) {
		s := open(t)
		for want := int64(1); want <= 3; want++ {
			n, err := s.Incr(ctx, "c", 0)
			must(t, err, "incr")
			if n != want {
				t.Fatalf("incr = %d, want %d", n, want)
			}
		}
		got, err := s.Get(ctx, "c")
		must(t, err, "get counter")
		if string(got) != "3" {
			t.Fatalf("counter reads %q, want \"3\"", got)
		}
		// The window starts at the first hit; later hits do not extend it.
		n, err := s.Incr(ctx, "window", 200*time.Millisecond)
		must(t, err, "incr window")
		if n != 1 {
			t.Fatalf("first incr = %d", n)
		}
		start := time.Now()
		if n, err = s.Incr(ctx, "window", time.Hour); err != nil || n != 2 {
			t.Fatalf("second incr = %d, %v", n, err)
		}
		eventually(t, "counter window never resets", func() bool {
			_, err := s.Get(ctx, "window")
			return errors.Is(err, store.ErrNotFound)
		})
		if time.Since(start) > 3*time.Second {
			t.Fatalf("window lasted %v: the second Incr's TTL replaced the first", time.Since(start))
		}
		if n, err = s.Incr(ctx, "window", 200*time.Millisecond); err != nil || n != 1 {
			t.Fatalf("incr after window = %d, %v; want 1", n, err)
		}
		must(t, s.Set(ctx, "text", []byte("abc"), 0), "set text")
		_, err = s.Incr(ctx, "text", 0)
		mustIs(t, err, store.ErrWrongKind, "incr on text")
		must(t, s.Set(ctx, "num", []byte("41"), 0), "set number")
		if n, err = s.Incr(ctx, "num", 0); err != nil || n != 42 {
			t.Fatalf("incr on \"41\" = %d, %v", n, err)
		}
		must(t, s.SAdd(ctx, "set", "m"), "sadd")
		_, err = s.Incr(ctx, "set", 0)
		mustIs(t, err, store.ErrWrongKind, "incr on set")
	})

	t.Run("Sets", func(t *testing.T) {
		s := open(t)
		m, err := s.SMembers(ctx, "missing")
		must(t, err, "smembers missing")
		if m == nil || len(m) != 0 {
			t.Fatalf("smembers missing = %#v, want empty non-nil", m)
		}
		must(t, s.SAdd(ctx, "u:1", "c", "a", "b"), "sadd")
		must(t, s.SAdd(ctx, "u:1", "b"), "sadd duplicate")
		must(t, s.SAdd(ctx, "u:1"), "sadd nothing")
		m, err = s.SMembers(ctx, "u:1")
		must(t, err, "smembers")
		if !slices.Equal(m, []string{"a", "b", "c"}) {
			t.Fatalf("smembers = %q", m)
		}
		must(t, s.SRem(ctx, "u:1", "b", "zz"), "srem")
		m, _ = s.SMembers(ctx, "u:1")
		if !slices.Equal(m, []string{"a", "c"}) {
			t.Fatalf("after srem = %q", m)
		}
		must(t, s.SRem(ctx, "u:1", "a", "c"), "srem all")
		mustIs(t, s.Expire(ctx, "u:1", time.Minute), store.ErrNotFound, "empty set is gone")
		must(t, s.SRem(ctx, "never-was", "x"), "srem missing")

		_, err = s.Get(ctx, "set-kind")
		mustIs(t, err, store.ErrNotFound, "get missing")
		must(t, s.SAdd(ctx, "set-kind", "x"), "sadd")
		_, err = s.Get(ctx, "set-kind")
		mustIs(t, err, store.ErrWrongKind, "get on set")
		must(t, s.Set(ctx, "str", []byte("v"), 0), "set")
		mustIs(t, s.SAdd(ctx, "str", "x"), store.ErrWrongKind, "sadd on string")
		_, err = s.SMembers(ctx, "str")
		mustIs(t, err, store.ErrWrongKind, "smembers on string")
		must(t, s.Set(ctx, "set-kind", []byte("now a string"), 0), "set replaces a set")

		must(t, s.SAdd(ctx, "ttl-set", "x"), "sadd")
		must(t, s.Expire(ctx, "ttl-set", 100*time.Millisecond), "expire set")
		eventually(t, "set with TTL never expires", func() bool {
			m, err := s.SMembers(ctx, "ttl-set")
			return err == nil && len(m) == 0
		})
	})

	t.Run("Concurrent", func(t *testing.T) {
		s := open(t)
		const workers, each = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					if _, err := s.Incr(ctx, "hits", time.Minute); err != nil {
						errs <- err
					}
					if err := s.SAdd(ctx, "members", fmt.Sprintf("w%d-%d", w, i)); err != nil {
						errs <- err
					}
					key := fmt.Sprintf("k%d", i%5)
					if err := s.Set(ctx, key, []byte(key), time.Minute); err != nil {
						errs <- err
					}
					if v, err := s.Get(ctx, key); err != nil || string(v) != key {
						errs <- fmt.Errorf("get %s = %q, %v", key, v, err)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		v, err := s.Get(ctx, "hits")
		must(t, err, "get hits")
		if string(v) != fmt.Sprint(workers*each) {
			t.Fatalf("hits = %s, want %d (lost increments)", v, workers*each)
		}
		m, err := s.SMembers(ctx, "members")
		must(t, err, "smembers")
		if len(m) != workers*each {
			t.Fatalf("set has %d members, want %d", len(m), workers*each)
		}
	})

	t.Run("CanceledContext", func(t *testing.T) {
		s := open(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.Set(cctx, "k", []byte("v"), 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("set with a canceled context: %v, want context.Canceled", err)
		}
		must(t, s.Ping(ctx), "ping")
	})
}
