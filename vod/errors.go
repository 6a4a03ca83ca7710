package vod

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error kind. The API maps each to an
// HTTP status and a content item's `failed` reason; the CLI prints the
// message. Nothing in this package knows about HTTP.
type Code string

// Codes. The input codes are the user's to fix (re-upload, re-export); the
// others are the operator's.
const (
	CodeEmptyInput  Code = "empty_input"       // zero bytes
	CodeNotMedia    Code = "not_media"         // no demuxer recognises it
	CodeTruncated   Code = "truncated"         // cut short: no index, no duration, or shorter than it says
	CodeNoStreams   Code = "no_streams"        // neither video nor audio
	CodeUnsupported Code = "unsupported_codec" // a stream this ffmpeg cannot decode
	CodeInvalidJob  Code = "invalid_job"       // the job file or ladder is wrong
	CodeTranscode   Code = "transcode_failed"  // ffmpeg failed on an input that probed fine
	CodeQA          Code = "qa_failed"         // outputs exist but do not match the source
	CodeInternal    Code = "internal"          // missing tools, I/O errors
)

// Error is a failure with a Code and a one-line Message a person can act
// on; Err is the cause, kept for logs.
type Error struct {
	Code    Code
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Message, e.Err)
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(code Code, format string, a ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, a...)}
}

// ErrorCode returns the Code of the *Error in err's chain, CodeInternal
// for any other error, "" for nil.
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

// Reason is the one line to show a user for err: the Message of its
// *Error (without the cause, which may be long ffmpeg output), or
// err.Error() for anything else.
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	if err == nil {
		return ""
	}
	return err.Error()
}
