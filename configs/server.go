package configs

import (
	"fmt"
	"time"
)

// validateServer checks the HTTP server's own limits (the keys that
// protect the server rather than configure what it serves).
func validateServer(c *Config) []Problem {
	var ps []Problem
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	h := c.HTTP
	// Below 1s a phone on a poor link could not send a login; above 10m
	// a trickling client holds a connection for as long again.
	if d := time.Duration(h.BodyTimeout); d < time.Second || d > 10*time.Minute {
		add("http.body_timeout", "%s is outside 1s..10m", d)
	}
	if h.MinBodyRateKiB < 0 {
		add("http.min_body_rate_kib", "%d must be 0 (no floor) or more", h.MinBodyRateKiB)
	}
	if d := time.Duration(h.BodyRateWindow); d < time.Second || d > 10*time.Minute {
		add("http.body_rate_window", "%s is outside 1s..10m", d)
	}
	return ps
}
