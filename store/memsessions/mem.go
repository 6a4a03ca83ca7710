// Package memsessions is the in-process store.Sessions: the default when no
// Redis is configured. State lives in one map behind a mutex and is lost on
// restart; expired keys are dropped when touched and by a janitor goroutine
// that does a bounded amount of work per tick.
package memsessions

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/streamd/streamd/store"
)

var _ store.Sessions = (*Store)(nil)

// Options tune a Store; the zero value is fine.
type Options struct {
	// JanitorInterval is how often expired keys are swept (default 1 min).
	JanitorInterval time.Duration
	// JanitorBatch is how many keys one sweep looks at, at most (default
	// 10000), so one sweep never holds the lock for long.
	JanitorBatch int
	Logger       *slog.Logger
	// Now is the clock (default time.Now); tests may stub it.
	Now func() time.Time
}

type kind uint8

const (
	kindBytes kind = iota
	kindSet
)

type entry struct {
	kind    kind
	bytes   []byte
	set     map[string]struct{}
	expires time.Time // zero: never
}

// Store is an in-process store.Sessions, safe for concurrent use.
type Store struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	m      map[string]*entry
	closed bool

	stop chan struct{}
	done chan struct{}
}

var errClosed = fmt.Errorf("memsessions: %w: store closed", store.ErrUnavailable)

// New returns a Store and starts its janitor; Close stops it.
func New(opts Options) *Store {
	if opts.JanitorInterval <= 0 {
		opts.JanitorInterval = time.Minute
	}
	if opts.JanitorBatch <= 0 {
		opts.JanitorBatch = 10000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		opts: opts,
		log:  log.With("component", "memsessions"),
		m:    make(map[string]*entry),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go s.janitor()
	return s
}

func (s *Store) janitor() {
	defer close(s.done)
	t := time.NewTicker(s.opts.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if n := s.sweep(); n > 0 {
				s.log.Debug("expired keys removed", "count", n)
			}
		}
	}
}

// sweep removes expired keys among at most JanitorBatch of them. Go's map
// iteration starts at a random place, so successive sweeps cover the map.
func (s *Store) sweep() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	seen, removed := 0, 0
	for k, e := range s.m {
		if seen >= s.opts.JanitorBatch {
			break
		}
		seen++
		if e.expired(now) {
			delete(s.m, k)
			removed++
		}
	}
	return removed
}

// Len returns the number of keys held, expired or not (for tests and metrics).
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (e *entry) expired(now time.Time) bool {
	return !e.expires.IsZero() && !now.Before(e.expires)
}

// lock takes the mutex after checking ctx and Close; callers unlock.
func (s *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	return nil
}

// get returns the live entry at key, dropping it when expired. Locked.
func (s *Store) get(key string) *entry {
	e := s.m[key]
	if e != nil && e.expired(s.opts.Now()) {
		delete(s.m, key)
		return nil
	}
	return e
}

func (s *Store) deadline(ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return s.opts.Now().Add(ttl)
}

func wrongKind(op, key string) error {
	return fmt.Errorf("memsessions: %s %q: %w", op, key, store.ErrWrongKind)
}

// Set implements store.Sessions.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.m[key] = &entry{kind: kindBytes, bytes: slices.Clone(value), expires: s.deadline(ttl)}
	return nil
}

// Get implements store.Sessions.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	e := s.get(key)
	switch {
	case e == nil:
		return nil, fmt.Errorf("memsessions: get %q: %w", key, store.ErrNotFound)
	case e.kind != kindBytes:
		return nil, wrongKind("get", key)
	}
	// Never nil for a stored empty value, like Redis' "" vs nil.
	return append([]byte{}, e.bytes...), nil
}

// Delete implements store.Sessions.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.m, k)
	}
	return nil
}

// Incr implements store.Sessions.
func (s *Store) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	e := s.get(key)
	if e == nil {
		e = &entry{kind: kindBytes, bytes: []byte("0")}
		s.m[key] = e
	}
	if e.kind != kindBytes {
		return 0, wrongKind("incr", key)
	}
	n, err := strconv.ParseInt(string(e.bytes), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("memsessions: incr %q: value is not an integer: %w", key, store.ErrWrongKind)
	}
	if n == 1<<63-1 {
		return 0, fmt.Errorf("memsessions: incr %q: overflow: %w", key, store.ErrInvalid)
	}
	n++
	e.bytes = strconv.AppendInt(e.bytes[:0], n, 10)
	if e.expires.IsZero() {
		e.expires = s.deadline(ttl)
	}
	return n, nil
}

// SAdd implements store.Sessions.
func (s *Store) SAdd(ctx context.Context, key string, members ...string) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	e := s.get(key)
	if e == nil {
		if len(members) == 0 {
			return nil
		}
		e = &entry{kind: kindSet, set: make(map[string]struct{}, len(members))}
		s.m[key] = e
	}
	if e.kind != kindSet {
		return wrongKind("sadd", key)
	}
	for _, m := range members {
		e.set[m] = struct{}{}
	}
	return nil
}

// SRem implements store.Sessions.
func (s *Store) SRem(ctx context.Context, key string, members ...string) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	e := s.get(key)
	if e == nil {
		return nil
	}
	if e.kind != kindSet {
		return wrongKind("srem", key)
	}
	for _, m := range members {
		delete(e.set, m)
	}
	if len(e.set) == 0 {
		delete(s.m, key)
	}
	return nil
}

// SMembers implements store.Sessions.
func (s *Store) SMembers(ctx context.Context, key string) ([]string, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	e := s.get(key)
	if e == nil {
		return []string{}, nil
	}
	if e.kind != kindSet {
		return nil, wrongKind("smembers", key)
	}
	out := make([]string, 0, len(e.set))
	for m := range e.set {
		out = append(out, m)
	}
	slices.Sort(out)
	return out, nil
}

// Expire implements store.Sessions.
func (s *Store) Expire(ctx context.Context, key string, ttl time.Duration) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	e := s.get(key)
	if e == nil {
		return fmt.Errorf("memsessions: expire %q: %w", key, store.ErrNotFound)
	}
	e.expires = s.deadline(ttl)
	return nil
}

// Ping implements store.Sessions.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	s.mu.Unlock()
	return nil
}

// Close stops the janitor and drops everything; later calls fail.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.m = nil
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	return nil
}
