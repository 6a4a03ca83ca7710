package configs

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// Metrics configures /metrics (Prometheus).
type Metrics struct {
	// Addr, when set, serves /metrics on a listener of its own (say a
	// private interface) and no longer on http.addr; empty: on http.addr.
	Addr string `yaml:"addr"`
	// Token, when set, is the bearer token a scraper must send
	// (Authorization: Bearer <token>); empty: /metrics is open.
	Token string `yaml:"token"`
}

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
	if a := c.Metrics.Addr; a != "" {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			add("metrics.addr", "%q is not host:port (e.g. \"127.0.0.1:9100\"), or empty to serve /metrics on http.addr", a)
		} else if a == h.Addr && port != "0" {
			add("metrics.addr", "%q is http.addr; leave metrics.addr empty to serve /metrics there", a)
		}
	}
	if tok := c.Metrics.Token; tok != "" && (len(tok) < 16 || strings.ContainsAny(tok, " \t\r\n")) {
		// The token is a secret: never echoed.
		add("metrics.token", "must be at least 16 characters without spaces (e.g. `openssl rand -hex 32`), or empty for an open /metrics")
	}
	return ps
}
