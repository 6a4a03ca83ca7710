package api

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"

	"github.com/streamd/streamd/auth"
)

// maxBody is the largest request body: 1 MiB of content plus room for
// JSON's quoting and the other fields.
const maxBody = 1<<20 + 64<<10

// decode reads one JSON object into v, refusing unknown fields, trailing
// data, other content types and bodies over maxBody.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return apiError(codeUnsupportedMedia, "Content-Type must be application/json")
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return apiError(codeTooLarge, "request body over 1 MiB")
		}
		if errors.Is(err, os.ErrDeadlineExceeded) { // LimitBodies cut it
			return apiError(codeBodyTimeout, "request body arrived too slowly")
		}
		if errors.Is(err, io.EOF) {
			return apiError(auth.CodeInvalidArgument, "request body is empty; want a JSON object")
		}
		// encoding/json's messages name the field or offset, never the
		// value, so they are safe and useful to return.
		return apiError(auth.CodeInvalidArgument, "invalid JSON: "+err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return apiError(codeTooLarge, "request body over 1 MiB")
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return apiError(codeBodyTimeout, "request body arrived too slowly")
		}
		return apiError(auth.CodeInvalidArgument, "invalid JSON: data after the object")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json") // the other headers: headers.go
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
