package api

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// BodyLimits bound how long a request body may take to arrive. Without
// them a client that sends its body one byte every few seconds holds a
// connection (and a handler goroutine) for as long as it likes:
// http.Server's ReadHeaderTimeout covers only the headers.
type BodyLimits struct {
	// Timeout is the longest an ordinary body (JSON to the API) may take
	// to arrive; 0: no deadline. Uploads are exempt: see Upload.
	Timeout time.Duration
	// MinRate is the slowest a body may arrive, in bytes per second
	// averaged over each Window; 0: no floor. It is what bounds uploads,
	// which may rightly take hours but must keep moving.
	MinRate int64
	// Window is the period MinRate is averaged over (default 30s): long
	// enough for a mobile link's stalls, short enough that a trickling
	// client is dropped soon.
	Window time.Duration
	// Upload reports the requests that get only the rate floor, not
	// Timeout (tus PATCHes of masters, say). Nil: none.
	Upload func(*http.Request) bool
	Logger *slog.Logger
}

// LimitBodies enforces l on every request with a body. Wrap the server's
// handler with it directly: it needs the connection's ResponseWriter to
// set read deadlines (http.ResponseController).
//
// A body too slow gets its connection's read deadline moved to now, so
// the pending read fails at once, the handler sees an error for which
// errors.Is(err, os.ErrDeadlineExceeded) holds (the API answers 408) and
// net/http closes the connection rather than wait for the rest.
func LimitBodies(next http.Handler, l BodyLimits) http.Handler {
	if l.Window <= 0 {
		l.Window = 30 * time.Second
	}
	if l.Logger == nil {
		l.Logger = logDiscard
	}
	log := l.Logger.With("component", "http")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || (l.Timeout <= 0 && l.MinRate <= 0) {
			next.ServeHTTP(w, r)
			return
		}
		g := &guardedBody{body: r.Body, rc: http.NewResponseController(w), window: l.Window,
			need: int64(float64(l.MinRate) * l.Window.Seconds()), start: time.Now(), log: log, r: r}
		if l.Timeout > 0 && (l.Upload == nil || !l.Upload(r)) {
			g.hardEnd = g.start.Add(l.Timeout)
		}
		if !g.begin() {
			next.ServeHTTP(w, r) // no deadlines on this connection (not an http.Server's)
			return
		}
		// Stopping the watch leaves the last deadline in place: if the
		// handler did not read the whole body, net/http discards the rest
		// after it returns, and that must not wait on a trickler either.
		defer g.stop()
		r2 := new(http.Request)
		*r2 = *r
		r2.Body = g
		next.ServeHTTP(w, r2)
	})
}

// errBodyTooSlow is what a read of a too-slow body returns. It is a
// timeout like the connection's own: callers (tusd too) treat both alike.
var errBodyTooSlow error = slowBodyError{}

type slowBodyError struct{}

func (slowBodyError) Error() string        { return "request body arrived too slowly" }
func (slowBodyError) Timeout() bool        { return true }
func (slowBodyError) Temporary() bool      { return false }
func (slowBodyError) Is(target error) bool { return target == os.ErrDeadlineExceeded }

var _ net.Error = slowBodyError{}

// guardedBody counts the bytes of one body and checks them at the end of
// each window (a timer, so a client that sends nothing at all is cut as
// surely as one that trickles). The connection's read deadline follows
// the next check, so no read blocks past it; a handler that moves the
// deadline itself (tusd extends it after every read) cannot keep a slow
// body alive, since the timer cuts it regardless.
type guardedBody struct {
	body    io.ReadCloser
	rc      *http.ResponseController
	window  time.Duration
	need    int64     // bytes per window; 0: no floor
	start   time.Time // when the handler started
	hardEnd time.Time // zero: no overall deadline
	log     *slog.Logger
	r       *http.Request

	mu        sync.Mutex
	got       int64 // bytes in the current window
	total     int64
	windowEnd time.Time
	timer     *time.Timer
	cut, done bool
}

// begin sets the first deadline and starts the watch; false when the
// connection takes no deadlines.
func (g *guardedBody) begin() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.windowEnd = g.start.Add(g.window)
	next := g.nextCheck()
	if err := g.rc.SetReadDeadline(next.Add(deadlineSlack)); err != nil {
		return false
	}
	g.timer = time.AfterFunc(time.Until(next), g.check)
	return true
}

// deadlineSlack puts the connection's read deadline a little after the
// timer's check: a body that met its window's quota gets its deadline
// moved by the check before the old one can fire. The deadline is the
// backstop; the timer decides.
const deadlineSlack = time.Second

// nextCheck is the earlier of the window's end and the overall deadline.
func (g *guardedBody) nextCheck() time.Time {
	if !g.hardEnd.IsZero() && g.hardEnd.Before(g.windowEnd) {
		return g.hardEnd
	}
	return g.windowEnd
}

// check runs at a window's end or the overall deadline.
func (g *guardedBody) check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done || g.cut {
		return
	}
	now := time.Now()
	if !g.hardEnd.IsZero() && !now.Before(g.hardEnd) {
		g.cutLocked("body not complete within http.body_timeout")
		return
	}
	if now.Before(g.windowEnd) { // woken early: the deadline moved
		g.timer.Reset(time.Until(g.nextCheck()))
		return
	}
	if g.got < g.need {
		g.cutLocked("body slower than http.min_body_rate_kib")
		return
	}
	g.got = 0
	g.windowEnd = g.windowEnd.Add(g.window)
	next := g.nextCheck()
	_ = g.rc.SetReadDeadline(next.Add(deadlineSlack))
	g.timer.Reset(time.Until(next))
}

func (g *guardedBody) cutLocked(why string) {
	g.cut = true
	// A deadline in the past fails the pending read now, and every later
	// one, including net/http's discard of the rest after the handler.
	_ = g.rc.SetReadDeadline(time.Now())
	g.log.Info("request body too slow: connection closed", "why", why, "method", g.r.Method, "path", g.r.URL.Path,
		"remote", g.r.RemoteAddr, "bytes", g.total, "after", time.Since(g.start).Round(time.Millisecond))
}

func (g *guardedBody) Read(p []byte) (int, error) {
	g.mu.Lock()
	cut := g.cut
	g.mu.Unlock()
	if cut {
		return 0, errBodyTooSlow
	}
	n, err := g.body.Read(p)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.got += int64(n)
	g.total += int64(n)
	var ne net.Error
	switch {
	case g.cut:
		return n, errBodyTooSlow
	case errors.Is(err, io.EOF):
		// The whole body is in: no deadline from here on. net/http's
		// background read (it watches for the client going away while
		// the handler works) must not time out and cancel the request.
		g.done = true
		g.timer.Stop()
		_ = g.rc.SetReadDeadline(time.Time{})
	case errors.As(err, &ne) && ne.Timeout():
		// The deadline that fired was ours (the timer may not have run
		// yet): make it a cut, so no later read waits again.
		g.cutLocked("no data before the deadline")
		return n, errBodyTooSlow
	}
	return n, err
}

func (g *guardedBody) Close() error { return g.body.Close() }

// stop ends the watch when the handler returns.
func (g *guardedBody) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.done = true
	g.timer.Stop()
}
