// Package ratelimit limits how often a key (a client IP, an account) may
// hit the API, with the generic cell rate algorithm (GCRA).
//
// Why GCRA rather than counting hits in fixed windows: a fixed window lets
// a client send its whole limit at the end of one window and again at the
// start of the next, twice the limit within moments. GCRA is a smooth
// token bucket kept as a single number per key, the "theoretical arrival
// time" (TAT): every hit pushes it window/limit further into the future,
// and a hit is refused while that would put it more than one window ahead
// of now. So a client idle for a whole window may send `limit` hits at
// once (burst = limit), then one every window/limit, never more; and a key
// whose TAT has passed needs no state at all.
//
// Both limiters have the method set of api.Limiter:
//
//	Allow(ctx, key, limit, window) (ok bool, retryAfter time.Duration, err error)
//
// limit hits per window; limit <= 0 or window <= 0 means unlimited. When a
// hit is refused, retryAfter is how long until the next one would be
// allowed, at least 1 ms.
//
// Memory keeps the state in process (the default: one streamd process).
// Redis keeps it in Redis through github.com/go-redis/redis_rate, whose Lua
// script makes each hit atomic, so that a limit holds across every
// streamd process sharing that Redis.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/streamd/streamd/store"
)

const (
	// MaxMemoryKeys bounds how many keys a Memory remembers. Only keys
	// that hit within the last window need state, so this is only reached
	// under a flood of distinct keys (spoofed IPs): the limiter then
	// forgets arbitrary keys, which can only let more through (a forgotten
	// key gets its full burst back), never refuse wrongly. At roughly
	// 100 bytes a key it caps the memory at about 100 MB.
	MaxMemoryKeys = 1_000_000

	// shardCount spreads the keys over independently locked maps so that
	// concurrent requests rarely wait on each other.
	shardCount = 32

	// sweepEvery is how often a shard forgets the keys whose TAT has
	// passed. Sweeping costs one pass over the shard, so doing it at most
	// this often keeps it negligible per hit, while stale keys stay no
	// longer than their window plus this.
	sweepEvery = 10 * time.Second
)

// Memory is an in-process GCRA limiter, safe for concurrent use. It keeps
// one TAT per key that hit within its window, at most MaxMemoryKeys.
type Memory struct {
	now         func() time.Time
	base        time.Time // TATs are offsets from base: 8 bytes a key, and monotonic when now() is
	seed        maphash.Seed
	maxPerShard int
	shards      [shardCount]shard
}

type shard struct {
	mu        sync.Mutex
	tat       map[string]time.Duration
	nextSweep time.Duration
	_         [40]byte // own cache line: the shards' locks are hit from every core
}

// NewMemory returns an in-process limiter that reads the time from now
// (nil: time.Now).
func NewMemory(now func() time.Time) *Memory {
	return newMemory(now, MaxMemoryKeys)
}

// newMemory lets tests use a small bound.
func newMemory(now func() time.Time, maxKeys int) *Memory {
	if now == nil {
		now = time.Now
	}
	m := &Memory{
		now:         now,
		base:        now(),
		seed:        maphash.MakeSeed(),
		maxPerShard: max(maxKeys/shardCount, 1),
	}
	for i := range m.shards {
		m.shards[i].tat = make(map[string]time.Duration)
	}
	return m
}

// Allow counts a hit on key and reports whether it is within limit hits
// per window (burst limit); when it is not, the hit is not counted and
// retryAfter is how long until one would be allowed.
func (m *Memory) Allow(_ context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	if limit <= 0 || window <= 0 {
		return true, 0, nil
	}
	interval := max(window/time.Duration(limit), 1) // one hit's worth of time
	burst := interval * time.Duration(limit)        // how far ahead the TAT may run: window, bar rounding
	now := m.now().Sub(m.base)

	s := &m.shards[maphash.String(m.seed, key)%shardCount]
	s.mu.Lock()
	defer s.mu.Unlock()
	tat, known := s.tat[key]
	if now >= s.nextSweep || (!known && len(s.tat) >= m.maxPerShard) {
		s.sweep(now, m.maxPerShard)
	}
	if !known || tat < now {
		tat = now // idle long enough: the full burst is back
	}
	next := tat + interval
	if wait := next - burst - now; wait > 0 {
		return false, max(wait, time.Millisecond), nil
	}
	s.tat[key] = next
	return true, 0, nil
}

// sweep forgets the keys whose TAT has passed: for them, no state and a
// TAT of now mean the same. If the shard is still full of live keys, it
// forgets arbitrary ones down to 7/8 of the bound, so that the next full
// pass is an eighth of the bound of new keys away (amortised O(1) a hit).
func (s *shard) sweep(now time.Duration, maxKeys int) {
	for k, t := range s.tat {
		if t <= now {
			delete(s.tat, k)
		}
	}
	s.nextSweep = now + sweepEvery
	if len(s.tat) < maxKeys {
		return
	}
	drop := len(s.tat) - maxKeys*7/8
	for k := range s.tat { // map order is unspecified: as good as random here
		if drop <= 0 {
			break
		}
		delete(s.tat, k)
		drop--
	}
}

// size is the number of keys remembered (for tests).
func (m *Memory) size() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.tat)
		s.mu.Unlock()
	}
	return n
}

// Redis is a GCRA limiter in Redis (redis_rate), shared by every process
// using the same Redis and prefix. Safe for concurrent use.
type Redis struct {
	l      *redis_rate.Limiter
	prefix string
}

// NewRedis returns a limiter on c, typically the sessions store's client
// (redissessions.Store.Client). prefix is put before every key, like the
// sessions store's Options.Prefix; redis_rate itself puts "rate:" in front
// of that, so the keys in Redis are "rate:"+prefix+key.
func NewRedis(c redis.UniversalClient, prefix string) *Redis {
	return &Redis{l: redis_rate.NewLimiter(c), prefix: prefix}
}

// Allow counts a hit on key and reports whether it is within limit hits
// per window (burst limit); when it is not, the hit is not counted and
// retryAfter is how long until one would be allowed. When Redis cannot be
// reached the error wraps store.ErrUnavailable.
func (r *Redis) Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	if limit <= 0 || window <= 0 {
		return true, 0, nil
	}
	res, err := r.l.Allow(ctx, r.prefix+key, redis_rate.Limit{Rate: limit, Burst: limit, Period: window})
	if err != nil {
		return false, 0, redisErr(err)
	}
	if res.Allowed > 0 {
		return true, 0, nil
	}
	return false, max(res.RetryAfter, time.Millisecond), nil
}

// redisErr sorts go-redis errors the way store/redissessions does: Redis
// not being there (refused, reset, timed out, pool exhausted, loading,
// read-only replica...) wraps store.ErrUnavailable so the API answers 503;
// other errors are bugs (500). The text is go-redis' first line, which
// names the address but never the password.
func redisErr(err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("redis rate limit: %w", err) // the client went away: not an outage
	}
	if unavailable(err) {
		msg, _, _ := strings.Cut(err.Error(), "\n")
		return fmt.Errorf("redis rate limit: %w: %s", store.ErrUnavailable, msg)
	}
	return fmt.Errorf("redis rate limit: %w", err)
}

func unavailable(err error) bool {
	var re redis.Error
	if errors.As(err, &re) { // a reply from the server
		return redis.IsLoadingError(err) || redis.IsReadOnlyError(err) ||
			redis.IsMasterDownError(err) || redis.IsClusterDownError(err) ||
			redis.IsTryAgainError(err) || redis.IsMaxClientsError(err) ||
			redis.IsAuthError(err) || redis.HasErrorPrefix(err, "BUSY")
	}
	var ne net.Error // includes *net.OpError: refused, reset, unreachable, DNS, timeouts
	return errors.As(err, &ne) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted) ||
		errors.Is(err, redis.ErrClosed)
}
