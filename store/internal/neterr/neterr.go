// Package neterr turns network errors into the few words an operator needs
// ("connection refused", "timed out") so that backends can report an
// unreachable server on one line.
package neterr

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// Reason returns a short description of why a connection failed, and
// whether err is a network-level failure at all.
func Reason(err error) (string, bool) {
	var dnsErr *net.DNSError
	switch {
	case err == nil:
		return "", false
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (is the server running, is the port right?)", true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset by the server", true
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable (check the host in the URL and the network)", true
	case errors.As(err, &dnsErr):
		return "host name not found (check the host in the URL)", true
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timed out (is the host right, does a firewall drop the packets?)", true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "connection closed by the server", true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		if ne.Timeout() {
			return "timed out", true
		}
		return "network error", true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return "network error", true
	}
	return "", false
}

// lineError is a one-line message that still matches a sentinel with
// errors.Is, without the sentinel's text appended to the line.
type lineError struct {
	msg  string
	kind error
}

func (e *lineError) Error() string { return e.msg }
func (e *lineError) Unwrap() error { return e.kind }

// Line returns an error whose text is msg and that wraps kind (may be nil).
func Line(msg string, kind error) error { return &lineError{msg: msg, kind: kind} }
