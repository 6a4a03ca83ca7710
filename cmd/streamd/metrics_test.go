package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func scrape(t *testing.T, u, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("401 without WWW-Authenticate")
	}
	return resp.StatusCode, string(b)
}

// TestMetricsToken: with metrics.token, /metrics answers only a scraper
// with the bearer token.
func TestMetricsToken(t *testing.T) {
	const tok = "metrics-token-0123456789"
	m := inProcess(t, map[string]string{"STREAMD_METRICS_TOKEN": tok}, nil)
	u := "http://" + m.HTTPAddr.String() + "/metrics"
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong-token-0123456789", "Basic " + tok, "Bearer " + tok + "x", "Bearer " + tok[:len(tok)-1]} {
		if code, body := scrape(t, u, auth); code != 401 || strings.Contains(body, "go_goroutines") {
			t.Errorf("Authorization %q: %d", auth, code)
		}
	}
	for _, auth := range []string{"Bearer " + tok, "bearer " + tok} {
		if code, body := scrape(t, u, auth); code != 200 || !strings.Contains(body, "go_goroutines") {
			t.Errorf("Authorization %q: %d %.80s", auth, code, body)
		}
	}
	if m.MetricsAddr != nil {
		t.Errorf("own metrics listener %v without metrics.addr", m.MetricsAddr)
	}
}

// TestMetricsOwnAddr: with metrics.addr, /metrics is served there and no
// longer on http.addr; a token applies there too.
func TestMetricsOwnAddr(t *testing.T) {
	for _, tok := range []string{"", "metrics-token-0123456789"} {
		env := map[string]string{"STREAMD_METRICS_ADDR": "127.0.0.1:0", "STREAMD_METRICS_TOKEN": tok}
		m := inProcess(t, env, nil)
		if m.MetricsAddr == nil {
			t.Fatal("no metrics listener")
		}
		if code, body := scrape(t, "http://"+m.HTTPAddr.String()+"/metrics", "Bearer "+tok); code == 200 || strings.Contains(body, "go_goroutines") {
			t.Errorf("token %q: /metrics still on http.addr: %d", tok, code)
		}
		own := "http://" + m.MetricsAddr.String() + "/metrics"
		if code, body := scrape(t, own, "Bearer "+tok); code != 200 || !strings.Contains(body, "go_goroutines") {
			t.Errorf("token %q: metrics.addr: %d", tok, code)
		}
		if tok != "" {
			if code, _ := scrape(t, own, ""); code != 401 {
				t.Errorf("metrics.addr without the token: %d", code)
			}
		}
	}
}
