package api

import (
	_ "embed"
	"net/http"
)

// openapiDoc is hand-written: it says what the handlers do, checked by a
// test against the route table.
//
//go:embed openapi.json
var openapiDoc []byte

func (a *API) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openapiDoc)
}
