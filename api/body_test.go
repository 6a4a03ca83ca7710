package api_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/streamd/streamd/api"
	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/store"
)

// bodyEnv is the API behind LimitBodies as streamd mounts it, with short
// limits, and a stand-in upload endpoint that reads its whole body.
func bodyEnv(t *testing.T) *env {
	limits := api.BodyLimits{Timeout: time.Second, MinRate: 8 << 10, Window: time.Second,
		Upload: func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/uploads/") }}
	return newEnvWith(t, sqliteMem, api.Limits{}, auth.Config{}, func(e *env, d *api.Deps) {
		e.wrap = func(h http.Handler) http.Handler {
			mux := http.NewServeMux()
			mux.Handle("/api/", h)
			mux.HandleFunc("/api/uploads/", func(w http.ResponseWriter, r *http.Request) {
				n, err := io.Copy(io.Discard, r.Body)
				if err != nil {
					w.WriteHeader(http.StatusRequestTimeout)
					return
				}
				w.Header().Set("X-Bytes", fmt.Sprint(n))
				w.WriteHeader(http.StatusNoContent)
			})
			l := limits
			l.Logger = d.Logger
			return api.LimitBodies(mux, l)
		}
	})
}

// trickle sends head, then one byte of body every interval, and reads the
// answer until the server closes the connection. It returns how long
// that took and the answer's status line ("" when there was none). The
// client gives up after 10 s, which fails the caller's bound.
func trickle(t *testing.T, addr, head string, every time.Duration) (time.Duration, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
			// JSON whitespace: valid, never finished.
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	_ = c.SetReadDeadline(start.Add(10 * time.Second))
	br := bufio.NewReader(c)
	status, _ := br.ReadString('\n')
	_, err = io.Copy(io.Discard, br) // until the server closes
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("connection still open after 10 s (status %q)", status)
	}
	return time.Since(start), strings.TrimSpace(status)
}

func TestSlowBodiesAreCut(t *testing.T) {
	e := bodyEnv(t)
	addr := strings.TrimPrefix(e.url, "http://")
	// Timeout 1s; the watch fires at once at that instant. 1.5 s of
	// slack for a loaded machine, far from the trickler's pace.
	const bound = 2500 * time.Millisecond
	for _, c := range []struct{ name, head, status string }{
		{"JSON body", "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{", "HTTP/1.1 408 Request Timeout"},
		{"chunked JSON body", "POST /api/auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n100\r\n", "HTTP/1.1 408 Request Timeout"},
		// The handler ignores the body; net/http would wait for it
		// before answering.
		{"ignored body", "GET /api/openapi.json HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n", ""},
		// Uploads have no overall deadline but must average 8 KiB/s.
		{"upload", "PATCH /api/uploads/abc HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", ""},
	} {
		took, status := trickle(t, addr, c.head, 200*time.Millisecond)
		if took > bound {
			t.Errorf("%s: connection held %s, want at most %s", c.name, took, bound)
		}
		if c.status != "" && status != c.status {
			t.Errorf("%s: answer %q, want %q", c.name, status, c.status)
		}
	}
	if !strings.Contains(e.logs.String(), "request body too slow") {
		t.Error("cuts are not logged")
	}
}

// pacedReader yields chunk bytes every interval.
type pacedReader struct {
	left, chunk int
	every       time.Duration
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	time.Sleep(p.every)
	n := min(len(b), p.chunk, p.left)
	for i := range n {
		b[i] = 'm'
	}
	p.left -= n
	return n, nil
}

// An upload above the rate floor goes on well past the ordinary bodies'
// deadline; an ordinary body in time passes.
func TestUploadAtAGoodRateSucceeds(t *testing.T) {
	e := bodyEnv(t)
	const size = 100 << 10 // 40 KiB/s: 2.5 s, over the 1 s Timeout and 2 windows
	req, _ := http.NewRequest("PATCH", e.url+"/api/uploads/abc", &pacedReader{left: size, chunk: 4 << 10, every: 100 * time.Millisecond})
	req.ContentLength = size
	start := time.Now()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 204 || res.Header.Get("X-Bytes") != fmt.Sprint(size) {
		t.Fatalf("upload: %d, %s bytes", res.StatusCode, res.Header.Get("X-Bytes"))
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("the upload took %s: the test does not cross the deadline", took)
	}
	a := e.register(store.RoleViewer) // register and login: ordinary bodies in time
	e.want(e.do("GET", "/api/users/me", a.access, nil), 200, "me")
}
