package auth

import (
	"context"
	"math"
	"strconv"
	"time"
)

// LockoutConfig is the login lockout: after MaxFailures wrong passwords
// or second-factor codes (together) within Window, logins to that
// account are refused for Duration.
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

// userLockKey is the lockout key of a known account: wrong passwords and
// wrong MFA codes count under it together.
func userLockKey(uid string) string { return "user:" + uid }

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
