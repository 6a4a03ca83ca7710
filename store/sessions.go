package store

import (
	"context"
	"errors"
	"time"
)

// ErrWrongKind is returned (wrapped) when a key holding one kind of value
// is used as another: Get on a set, SAdd on a string, Incr on a value that
// is not an integer.
var ErrWrongKind = errors.New("key holds another kind of value")

// Sessions is the short-lived shared state: refresh-token sessions,
// per-user session sets ("log out everywhere"), counters for rate limits.
// It behaves like the subset of Redis it is modelled on: every key holds
// one value (bytes, a counter or a set of strings) and may expire.
//
// A TTL <= 0 means "no expiry". Expired keys are gone for every method.
// Backend outages come back wrapping ErrUnavailable.
type Sessions interface {
	// Set stores value under key, replacing whatever the key held.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Get returns the value stored by Set (or a counter's decimal text);
	// ErrNotFound when the key does not exist.
	Get(ctx context.Context, key string) ([]byte, error)
	// Delete removes the keys; missing ones are not an error.
	Delete(ctx context.Context, keys ...string) error
	// Incr adds one to the counter at key, creating it at 1, and returns
	// the new value. When the counter has no expiry yet (it was just
	// created) and ttl > 0, it expires after ttl: a fixed window for rate
	// limits that starts at the first hit.
	Incr(ctx context.Context, key string, ttl time.Duration) (int64, error)
	// SAdd adds members to the set at key, creating it.
	SAdd(ctx context.Context, key string, members ...string) error
	// SRem removes members from the set; a set left empty disappears.
	SRem(ctx context.Context, key string, members ...string) error
	// SMembers returns the set's members sorted; an empty slice (not an
	// error) for a missing key.
	SMembers(ctx context.Context, key string) ([]string, error)
	// Expire sets the key's TTL (ttl <= 0 removes it); ErrNotFound when the
	// key does not exist.
	Expire(ctx context.Context, key string, ttl time.Duration) error

	// Ping checks that the backend answers (for /readyz).
	Ping(ctx context.Context) error
	Close() error
}
