package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/streamd/streamd/configs"
)

// startMetrics serves /metrics (Prometheus): on mux, or, when
// metrics.addr is set, on a listener of its own and not on mux, so that
// an operator can keep it on a private interface. With metrics.token,
// scrapers must send it as a bearer token.
func (m *Main) startMetrics(cfg configs.Config, mux *http.ServeMux) error {
	var h http.Handler = promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
	if cfg.Metrics.Token != "" {
		h = requireBearer(h, cfg.Metrics.Token)
	}
	if cfg.Metrics.Addr == "" {
		mux.Handle("/metrics", h)
		return nil
	}
	ln, err := net.Listen("tcp", cfg.Metrics.Addr)
	if err != nil {
		return fmt.Errorf("metrics.addr %s: %w", cfg.Metrics.Addr, unwrapListen(err))
	}
	m.MetricsAddr = ln.Addr()
	own := http.NewServeMux()
	own.Handle("GET /metrics", h)
	// Scrapes are small GETs: every timeout can be short.
	m.metrics = &http.Server{
		Handler:           own,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(m.Log.With("component", "metrics").Handler(), slog.LevelWarn),
	}
	m.metricsDone = make(chan error, 1)
	go func() { m.metricsDone <- m.metrics.Serve(ln) }()
	m.Log.Info("metrics on their own listener", "addr", m.MetricsAddr.String(), "token", cfg.Metrics.Token != "")
	return nil
}

// requireBearer lets through only requests with "Authorization: Bearer
// token". Both sides are hashed first so that the comparison takes the
// same time whatever is sent, its length included.
func requireBearer(next http.Handler, token string) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		sum := sha256.Sum256([]byte(got))
		if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="streamd metrics"`)
			http.Error(w, "metrics need Authorization: Bearer <metrics.token>", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// closeMetrics stops the metrics listener, if it has one of its own.
func (m *Main) closeMetrics() error {
	if m.metrics == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := m.metrics.Shutdown(ctx)
	if e := <-m.metricsDone; e != nil && !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	m.metrics = nil
	return err
}
