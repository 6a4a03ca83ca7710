package main

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// loginAs logs an inProcess account in and returns its access token.
func loginAs(t *testing.T, base, user string) string {
	t.Helper()
	resp, err := http.Post(base+"/api/auth/login", "application/json", strings.NewReader(`{"username":"`+user+`","password":"`+testPassword+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("login %s: %d %v", user, resp.StatusCode, err)
	}
	return tok.AccessToken
}

// apiCall is one request of TestEveryAPIAnswerHasSecurityHeaders.
type apiCall struct {
	method, path string
	header       map[string]string
}

// TestEveryAPIAnswerHasSecurityHeaders: every route under /api — package
// api's (from its OpenAPI document, which a test keeps equal to its route
// table), and the ones mounted beside it (/api/transcode, uploads, job
// cancel, the page's /api/channels) and the fallbacks — answers with the
// API's security headers, anonymous and as an admin, whatever the status.
func TestEveryAPIAnswerHasSecurityHeaders(t *testing.T) {
	m := inProcess(t, nil, nil, [2]string{"boss", "admin"})
	base := "http://" + m.HTTPAddr.String()
	admin := loginAs(t, base, "boss")

	resp, err := http.Get(base + "/api/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	var calls []apiCall
	for p, ops := range doc.Paths {
		for op := range ops {
			calls = append(calls, apiCall{method: strings.ToUpper(op), path: param.ReplaceAllString(p, "x")})
		}
	}
	tus := map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": "3", "Upload-Offset": "0",
		"Upload-Metadata": "filename " + base64.StdEncoding.EncodeToString([]byte("m.mp4")), "Content-Type": "application/offset+octet-stream"}
	upload := "/api/uploads/0123456789abcdef0123456789abcdef"
	calls = append(calls,
		apiCall{method: "GET", path: "/api/transcode"},
		apiCall{method: "GET", path: "/api/channels"},
		apiCall{method: "DELETE", path: "/api/content/x/job"},
		apiCall{method: "OPTIONS", path: "/api/uploads/", header: map[string]string{"Origin": "https://a.example", "Access-Control-Request-Method": "POST"}},
		apiCall{method: "POST", path: "/api/uploads/", header: tus},
		apiCall{method: "HEAD", path: upload, header: tus},
		apiCall{method: "PATCH", path: upload, header: tus},
		apiCall{method: "DELETE", path: upload, header: tus},
		apiCall{method: "POST", path: "/api/uploads/multipart"},
		apiCall{method: "GET", path: "/api/nope"},
		apiCall{method: "GET", path: "/api/./users"},
	)
	// Logging out ends the admin's session: those go last, so the other
	// calls run as the admin, not as a 401.
	slices.SortStableFunc(calls, func(a, b apiCall) int {
		return cmp.Compare(strings.Count(a.path, "/logout"), strings.Count(b.path, "/logout"))
	})
	for _, c := range calls {
		for _, tok := range []string{"", admin} {
			checkSecurityHeaders(t, base, c, tok)
		}
	}
}

func checkSecurityHeaders(t *testing.T, base string, c apiCall, tok string) {
	t.Helper()
	var body io.Reader
	if c.method == "POST" || c.method == "PUT" || c.method == "PATCH" {
		body = strings.NewReader("{}")
	}
	req, _ := http.NewRequest(c.method, base+c.path, body)
	if c.header["Content-Type"] == "" && body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for k, v := range map[string]string{
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s %s (token %v): %d with %s %q, want %q", c.method, c.path, tok != "", resp.StatusCode, k, got, v)
		}
	}
	if resp.Header.Get("Cache-Control") == "" {
		t.Errorf("%s %s: %d without Cache-Control", c.method, c.path, resp.StatusCode)
	}
}
