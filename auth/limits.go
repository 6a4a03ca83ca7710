package auth

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/streamd/streamd/store"
)

// RateLimiter counts hits in fixed windows in the sessions store: in
// process by default, in Redis when several streamd processes share it,
// so that a limit holds across all of them. A fixed window lets through
// at most twice the limit around a window's edge; that is fine for abuse
// limits and costs one INCR per hit.
type RateLimiter struct {
	Sessions store.Sessions
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Allow counts a hit on key and reports whether it is within limit hits
// per window; when it is not, retryAfter is the time left in the window.
func (l RateLimiter) Allow(ctx context.Context, key string, limit int, window time.Duration) (ok bool, retryAfter time.Duration, err error) {
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	t := now()
	w := window.Milliseconds()
	if w <= 0 || limit <= 0 {
		return true, 0, nil
	}
	idx := t.UnixMilli() / w
	n, err := l.Sessions.Incr(ctx, "ratelimit:"+key+":"+strconv.FormatInt(idx, 10), window+time.Second)
	if err != nil {
		return false, 0, err
	}
	if n <= int64(limit) {
		return true, 0, nil
	}
	end := time.UnixMilli((idx + 1) * w)
	return false, max(end.Sub(t), time.Second), nil
}

// LockoutConfig is the login lockout: after MaxFailures wrong passwords
// within Window, logins to that account are refused for Duration.
type LockoutConfig struct {
	MaxFailures int           // default 5
	Window      time.Duration // default 15 min
	Duration    time.Duration // default 15 min
}

func (c *LockoutConfig) defaults() {
	if c.MaxFailures <= 0 {
		c.MaxFailures = 5
	}
	if c.Window <= 0 {
		c.Window = 15 * time.Minute
	}
	if c.Duration <= 0 {
		c.Duration = 15 * time.Minute
	}
}

// locked returns how long the account under key stays locked (0: not).
func (s *Service) locked(ctx context.Context, key string) (time.Duration, error) {
	b, err := s.sessions.Get(ctx, "auth:lock:"+key)
	if err != nil {
		if isNotFound(err) {
			return 0, nil
		}
		return 0, s.storeErr(err)
	}
	until, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return s.cfg.Lockout.Duration, nil
	}
	left := time.UnixMilli(until).Sub(s.now())
	if left <= 0 {
		return 0, nil
	}
	return time.Duration(math.Ceil(left.Seconds())) * time.Second, nil
}

// failed counts a failed login and locks the account at MaxFailures.
func (s *Service) failed(ctx context.Context, key string) error {
	n, err := s.sessions.Incr(ctx, "auth:fail:"+key, s.cfg.Lockout.Window)
	if err != nil {
		return s.storeErr(err)
	}
	if n < int64(s.cfg.Lockout.MaxFailures) {
		return nil
	}
	until := s.now().Add(s.cfg.Lockout.Duration).UnixMilli()
	if err := s.sessions.Set(ctx, "auth:lock:"+key, []byte(strconv.FormatInt(until, 10)), s.cfg.Lockout.Duration); err != nil {
		return s.storeErr(err)
	}
	s.log.Warn("login locked after repeated failures", "account", key, "failures", n, "for", s.cfg.Lockout.Duration)
	return s.storeErr(s.sessions.Delete(ctx, "auth:fail:"+key))
}
