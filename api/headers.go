package api

import (
	"net/http"
	"strings"
)

// securityHeaders are what every answer under /api carries, whichever
// handler gives it (this package's routes, uploads, the job and transcode
// endpoints streamd mounts beside them, the 404s and 405s): answers are
// JSON or nothing, never a page, so nothing may sniff them into one,
// frame them or cache them. A handler may still set its own
// Cache-Control (the OpenAPI document is public and cacheable).
var securityHeaders = [][2]string{
	{"X-Content-Type-Options", "nosniff"},
	{"Cache-Control", "no-store"},
	{"Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"},
	{"X-Frame-Options", "DENY"},
	{"Referrer-Policy", "no-referrer"},
}

func setSecurityHeaders(h http.Header) {
	for _, kv := range securityHeaders {
		h.Set(kv[0], kv[1])
	}
}

// SecureHeaders sets the API's security headers on every answer to a
// path under /api, before next runs. Wrap the server's whole handler
// with it, so that every /api route gets them however it is mounted.
func SecureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api" || strings.HasPrefix(r.URL.Path, "/api/") {
			setSecurityHeaders(w.Header())
		}
		next.ServeHTTP(w, r)
	})
}
