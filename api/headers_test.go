package api_test

import (
	"cmp"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/streamd/streamd/api"
	"github.com/streamd/streamd/store"
)

// wantSecurityHeaders are the headers every /api answer carries.
var wantSecurityHeaders = map[string]string{
	"X-Content-Type-Options":  "nosniff",
	"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
	"X-Frame-Options":         "DENY",
	"Referrer-Policy":         "no-referrer",
}

var pathParam = regexp.MustCompile(`\{[^}]+\}`)

// Every operation of the API (the OpenAPI document lists exactly the
// routes, TestOpenAPICoversRoutes), anonymous and as an admin, plus the
// 404 and 405 fallbacks, answers with the security headers, whatever its
// status.
func TestEveryAnswerHasSecurityHeaders(t *testing.T) {
	e := newEnv(t, sqliteMem, api.Limits{})
	admin := e.register(store.RoleAdmin)
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(e.want(e.do("GET", "/api/openapi.json", "", nil), 200, "openapi").body, &doc); err != nil {
		t.Fatal(err)
	}
	type call struct{ method, path string }
	calls := []call{{"GET", "/api/nope"}, {"DELETE", "/api/users/me"}, {"GET", "/api/openapi.json"}}
	for p, ops := range doc.Paths {
		for m := range ops {
			calls = append(calls, call{strings.ToUpper(m), pathParam.ReplaceAllString(p, "x")})
		}
	}
	if len(calls) < 40 {
		t.Fatalf("only %d operations: is the document complete?", len(calls))
	}
	// Logging out ends the admin's session: those go last, so the other
	// calls run as the admin, not as a 401.
	slices.SortStableFunc(calls, func(a, b call) int {
		return cmp.Compare(strings.Count(a.path, "/logout"), strings.Count(b.path, "/logout"))
	})
	for _, c := range calls {
		for _, tok := range []string{"", admin.access} {
			var body any
			if c.method == "POST" || c.method == "PUT" {
				body = "{}"
			}
			r := e.do(c.method, c.path, tok, body)
			for k, v := range wantSecurityHeaders {
				if got := r.header.Get(k); got != v {
					t.Errorf("%s %s (token %v): %d with %s %q, want %q", c.method, c.path, tok != "", r.status, k, got, v)
				}
			}
			if cc := r.header.Get("Cache-Control"); cc == "" {
				t.Errorf("%s %s: no Cache-Control", c.method, c.path)
			}
		}
	}
}

// SecureHeaders gives handlers mounted beside the API the same headers,
// and leaves other paths alone.
func TestSecureHeadersMiddleware(t *testing.T) {
	plain := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	h := api.SecureHeaders(plain)
	for path, want := range map[string]bool{"/api/transcode": true, "/api/uploads/abc": true, "/api": true, "/live/main/index.m3u8": false, "/apix": false} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if got := w.Header().Get("X-Content-Type-Options") == "nosniff"; got != want {
			t.Errorf("%s: nosniff %v, want %v", path, got, want)
		}
	}
}
