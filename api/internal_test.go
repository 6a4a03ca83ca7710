package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The OpenAPI document is valid JSON, says 3.1, and describes exactly the
// routes the handler serves.
func TestOpenAPICoversRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	n := 0
	for _, rt := range routes {
		if _, ok := doc.Paths[rt.path][strings.ToLower(rt.method)]; !ok {
			t.Errorf("%s %s is not in openapi.json", rt.method, rt.path)
		}
		if rt.who != "" {
			if _, ok := doc.Paths[rt.path][strings.ToLower(rt.method)]["security"]; !ok {
				t.Errorf("%s %s: no security in openapi.json", rt.method, rt.path)
			}
		}
	}
	for _, ops := range doc.Paths {
		n += len(ops)
	}
	if n != len(routes) {
		t.Errorf("openapi.json has %d operations, the handler %d", n, len(routes))
	}
	h := New(Deps{Limits: Limits{Auth: -1, API: -1}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/openapi.json", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/openapi.json: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
}

func TestBearerToken(t *testing.T) {
	for h, want := range map[string]string{
		"Bearer abc.def-_~+/==": "abc.def-_~+/==",
		"bearer abc":            "abc",
		"BEARER abc":            "abc",
		"Bearer":                "",
		"Bearer ":               "",
		"Bearer  abc":           "",
		"Bearer abc def":        "",
		"Bearer ===":            "",
		"Bearer a=b":            "",
		"Basic abc":             "",
		"Bearerabc":             "",
		"Bearer \x00":           "",
	} {
		got, ok := bearerToken(h)
		if got != want || ok != (want != "") {
			t.Errorf("bearerToken(%q) = %q, %v; want %q", h, got, ok, want)
		}
	}
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer a.b.c", "Bearer ==", "Basic x", "Bearer a b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, ok := bearerToken(h)
		if !ok {
			if tok != "" {
				t.Fatal("token without ok")
			}
			return
		}
		if tok == "" || len(tok) > 4096 || strings.ContainsAny(tok, " \t\r\n\x00,;\"") || !strings.HasSuffix(h, tok) {
			t.Fatalf("bearerToken(%q) = %q", h, tok)
		}
	})
}
