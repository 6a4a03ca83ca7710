package auth

import (
	"errors"
	"fmt"
	"time"
)

// Code is a stable, machine-readable error kind. The HTTP edge maps each
// to one status; nothing inside auth knows about HTTP.
type Code string

// Codes.
const (
	CodeInvalidArgument  Code = "invalid_argument"
	CodeUnauthenticated  Code = "unauthenticated"
	CodePermissionDenied Code = "permission_denied"
	CodeNotFound         Code = "not_found"
	CodeConflict         Code = "conflict"
	CodeRateLimited      Code = "rate_limited"
	CodeUnavailable      Code = "unavailable"
	CodeInternal         Code = "internal"
)

// Error is an error meant for the client: its Message is safe to show
// (it never holds a password, token or secret). Err, when set, is the
// cause, for logs only.
type Error struct {
	Code       Code
	Message    string
	RetryAfter time.Duration // for CodeRateLimited
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns err's code: the Code of an *Error in its chain,
// CodeInternal for anything else (nil: "").
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// errUnauthenticated is the one answer to every failed login, whatever
// failed (unknown login, wrong password): telling them apart would let
// anyone probe which accounts exist.
func errBadLogin() *Error {
	return errorf(CodeUnauthenticated, "wrong login or password")
}
