package api

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/store"
)

// status is the one place where error codes become HTTP statuses.
var status = map[auth.Code]int{
	auth.CodeInvalidArgument:  http.StatusBadRequest,
	auth.CodeUnauthenticated:  http.StatusUnauthorized,
	auth.CodePermissionDenied: http.StatusForbidden,
	auth.CodeNotFound:         http.StatusNotFound,
	auth.CodeConflict:         http.StatusConflict,
	auth.CodeRateLimited:      http.StatusTooManyRequests,
	auth.CodeUnavailable:      http.StatusServiceUnavailable,
	auth.CodeInternal:         http.StatusInternalServerError,
	codeMethodNotAllowed:      http.StatusMethodNotAllowed,
	codeTooLarge:              http.StatusRequestEntityTooLarge,
	codeUnsupportedMedia:      http.StatusUnsupportedMediaType,
	codeBodyTimeout:           http.StatusRequestTimeout,
}

// Codes the HTTP layer adds to auth's.
const (
	codeMethodNotAllowed auth.Code = "method_not_allowed"
	codeTooLarge         auth.Code = "too_large"
	codeUnsupportedMedia auth.Code = "unsupported_media_type"
	codeBodyTimeout      auth.Code = "request_timeout"
)

type errorBody struct {
	Error struct {
		Code    auth.Code `json:"code"`
		Message string    `json:"message"`
	} `json:"error"`
}

func apiError(code auth.Code, msg string) *auth.Error { return &auth.Error{Code: code, Message: msg} }

// writeError answers err in the one error shape. Only internal errors are
// logged with their cause: the rest are the client's doing. Messages of
// internal errors never reach the client.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *auth.Error
	switch {
	case errors.As(err, &e):
	case errors.Is(err, store.ErrUnavailable):
		e = &auth.Error{Code: auth.CodeUnavailable, Message: "storage is unavailable; try again later", Err: err}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		e = &auth.Error{Code: auth.CodeUnavailable, Message: "request canceled or timed out", Err: err}
	default:
		e = &auth.Error{Code: auth.CodeInternal, Message: "internal error", Err: err}
	}
	st, ok := status[e.Code]
	if !ok {
		st = http.StatusInternalServerError
	}
	msg := e.Message
	switch {
	case st == http.StatusInternalServerError:
		a.log.ErrorContext(r.Context(), "internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error"
	case st == http.StatusServiceUnavailable:
		a.log.WarnContext(r.Context(), "backend unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "5")
	case st == http.StatusTooManyRequests:
		secs := max(1, int(math.Ceil(e.RetryAfter.Seconds())))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	case st == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="streamd"`)
	case st == http.StatusRequestTimeout:
		// The rest of the body is still on the wire: it must not be
		// read as the next request.
		w.Header().Set("Connection", "close")
	}
	var body errorBody
	body.Error.Code, body.Error.Message = e.Code, msg
	writeJSON(w, st, body)
}

// logDiscard is the logger when Deps has none.
var logDiscard = slog.New(slog.DiscardHandler)
