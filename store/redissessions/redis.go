// Package redissessions is the store.Sessions on Redis (go-redis/v9): the
// production choice, shared by every streamd process of a deployment.
package redissessions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/internal/neterr"
)

var _ store.Sessions = (*Store)(nil)

// Options tune Open; the zero value is fine.
type Options struct {
	// Prefix is put before every key, so that several deployments (or
	// tests) can share one Redis database.
	Prefix string
	// OpenTimeout bounds the first PING (default 5 s).
	OpenTimeout time.Duration
	Logger      *slog.Logger
}

// Store is a store.Sessions on Redis, safe for concurrent use.
type Store struct {
	c      *redis.Client
	prefix string
	where  string // "redis at host:port", for errors
	log    *slog.Logger
}

// Open connects to the Redis at url (redis://[user:password@]host:port/db,
// rediss:// for TLS) and checks that it answers. Its error is one line that
// names the server and what to check; it never contains the password.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: invalid URL (want redis://[user:password@]host:port/db): %s", strings.TrimPrefix(err.Error(), "redis: "))
	}
	// go-redis' defaults (3 command retries × 5 dial attempts) make every
	// call take ~2 s while Redis is down, which is the wrong way round for
	// an HTTP edge that should answer 503 at once. One retry still covers
	// the usual case: a pooled connection the server closed (restart,
	// idle timeout). max_retries in the URL overrides it.
	if o.MaxRetries == 0 {
		o.MaxRetries = 1
	}
	if o.DialerRetries == 0 {
		o.DialerRetries = 2
		o.DialerRetryTimeout = 50 * time.Millisecond
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		c:      redis.NewClient(o),
		prefix: opts.Prefix,
		where:  "redis at " + o.Addr,
		log:    log.With("component", "redissessions", "addr", o.Addr),
	}
	pctx, cancel := context.WithTimeout(ctx, opts.OpenTimeout)
	defer cancel()
	if err := s.c.Ping(pctx).Err(); err != nil {
		_ = s.c.Close()
		return nil, neterr.Line(s.where+": "+openReason(err), store.ErrUnavailable)
	}
	s.log.Debug("connected", "db", o.DB)
	return s, nil
}

// openReason says in a few words why the first PING failed.
func openReason(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "NOAUTH"),
		strings.Contains(msg, "invalid password"), strings.Contains(msg, "invalid username-password"),
		strings.Contains(msg, "without any password configured"):
		return "authentication failed (check the user and password in the URL)"
	case strings.Contains(msg, "DB index is out of range"):
		return "no such database number (check the /db part of the URL)"
	}
	if r, ok := neterr.Reason(err); ok {
		return r
	}
	return firstLine(msg)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// wrap maps go-redis errors onto the store's: a reply error is the
// caller's (wrong kind of key...), anything else — refused, reset, timed
// out, pool exhausted, server loading — means Redis is not there.
func (s *Store) wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("redis: %s %q: %w", op, key, store.ErrNotFound)
	}
	var re redis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		switch {
		case strings.Contains(msg, "WRONGTYPE"), strings.Contains(msg, "not an integer"):
			return fmt.Errorf("redis: %s %q: %w", op, key, store.ErrWrongKind)
		case strings.Contains(msg, "overflow"):
			return fmt.Errorf("redis: %s %q: %w", op, key, store.ErrInvalid)
		case strings.HasPrefix(msg, "LOADING"), strings.HasPrefix(msg, "MASTERDOWN"),
			strings.HasPrefix(msg, "READONLY"), strings.HasPrefix(msg, "BUSY"),
			strings.HasPrefix(msg, "TRYAGAIN"), strings.HasPrefix(msg, "CLUSTERDOWN"),
			strings.HasPrefix(msg, "NOAUTH"), strings.HasPrefix(msg, "WRONGPASS"):
			return fmt.Errorf("%s: %s %q: %w: %s", s.where, op, key, store.ErrUnavailable, firstLine(msg))
		}
		return fmt.Errorf("%s: %s %q: %w", s.where, op, key, err)
	}
	reason := firstLine(err.Error())
	if r, ok := neterr.Reason(err); ok {
		reason = r
	}
	return fmt.Errorf("%s: %s %q: %w: %s", s.where, op, key, store.ErrUnavailable, reason)
}

func (s *Store) k(key string) string { return s.prefix + key }

// px turns a TTL into what Redis takes: 0 for none, at least 1 ms.
func px(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		return 0
	}
	return max(ttl, time.Millisecond)
}

// Set implements store.Sessions.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return s.wrap("set", key, s.c.Set(ctx, s.k(key), value, px(ttl)).Err())
}

// Get implements store.Sessions.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := s.c.Get(ctx, s.k(key)).Bytes()
	if err != nil {
		return nil, s.wrap("get", key, err)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// Delete implements store.Sessions.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = s.k(k)
	}
	return s.wrap("delete", keys[0], s.c.Del(ctx, full...).Err())
}

// incrScript increments and, when the counter has no expiry (it was just
// created), sets one — atomically, so a crash between the two cannot leave
// a rate-limit counter that never resets. PTTL -1 rather than "value == 1"
// also repairs a counter that lost its TTL.
var incrScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
local ttl = tonumber(ARGV[1])
if ttl > 0 and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return n
`)

// Incr implements store.Sessions.
func (s *Store) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	n, err := incrScript.Run(ctx, s.c, []string{s.k(key)}, px(ttl).Milliseconds()).Int64()
	if err != nil {
		return 0, s.wrap("incr", key, err)
	}
	return n, nil
}

// SAdd implements store.Sessions.
func (s *Store) SAdd(ctx context.Context, key string, members ...string) error {
	if len(members) == 0 {
		return nil
	}
	return s.wrap("sadd", key, s.c.SAdd(ctx, s.k(key), anys(members)...).Err())
}

// SRem implements store.Sessions.
func (s *Store) SRem(ctx context.Context, key string, members ...string) error {
	if len(members) == 0 {
		return nil
	}
	return s.wrap("srem", key, s.c.SRem(ctx, s.k(key), anys(members)...).Err())
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// SMembers implements store.Sessions.
func (s *Store) SMembers(ctx context.Context, key string) ([]string, error) {
	m, err := s.c.SMembers(ctx, s.k(key)).Result()
	if err != nil {
		return nil, s.wrap("smembers", key, err)
	}
	if m == nil {
		m = []string{}
	}
	slices.Sort(m)
	return m, nil
}

// Expire implements store.Sessions.
func (s *Store) Expire(ctx context.Context, key string, ttl time.Duration) error {
	var ok bool
	if ttl > 0 {
		r, err := s.c.PExpire(ctx, s.k(key), px(ttl)).Result()
		if err != nil {
			return s.wrap("expire", key, err)
		}
		ok = r
	} else {
		// PERSIST answers 0 both for "missing" and "had no TTL": ask EXISTS
		// in the same transaction.
		var exists *redis.IntCmd
		_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			exists = p.Exists(ctx, s.k(key))
			p.Persist(ctx, s.k(key))
			return nil
		})
		if err != nil {
			return s.wrap("expire", key, err)
		}
		ok = exists.Val() == 1
	}
	if !ok {
		return fmt.Errorf("redis: expire %q: %w", key, store.ErrNotFound)
	}
	return nil
}

// Ping implements store.Sessions.
func (s *Store) Ping(ctx context.Context) error {
	return s.wrap("ping", "", s.c.Ping(ctx).Err())
}

// Close closes the connection pool.
func (s *Store) Close() error { return s.c.Close() }

// Client is the underlying go-redis client, for other features (rate limits) that share the connection.
func (s *Store) Client() *redis.Client { return s.c }
