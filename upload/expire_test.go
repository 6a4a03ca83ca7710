package upload

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// logBuffer collects the handler's log lines; safe for the handler's
// goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the logged lines containing s.
func (l *logBuffer) lines(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

const expiredMsg = `msg="abandoned upload expired"`

// wantExpired checks the one log line of an expired upload.
func wantExpired(t *testing.T, e *env, id string, bytes int, age string) {
	t.Helper()
	var found []string
	for _, l := range e.logs.lines(expiredMsg) {
		if strings.Contains(l, "id="+id) {
			found = append(found, l)
		}
	}
	if len(found) != 1 || !strings.Contains(found[0], " bytes="+strconv.Itoa(bytes)+" ") || !strings.Contains(found[0], " age="+age) {
		t.Errorf("log lines for expired upload %s: %q, want one with bytes=%d age=%s…", id, found, bytes, age)
	}
}

// later moves the sweeper's clock forward by d.
func later(e *env, d time.Duration) { e.h.now = func() time.Time { return time.Now().Add(d) } }

func TestSweepInterval(t *testing.T) {
	for _, c := range []struct{ expire, want time.Duration }{
		{24 * time.Hour, time.Hour},
		{2 * time.Hour, 30 * time.Minute},
		{200 * time.Millisecond, 50 * time.Millisecond},
	} {
		if got := sweepInterval(c.expire); got != c.want {
			t.Errorf("sweepInterval(%s) = %s, want %s", c.expire, got, c.want)
		}
	}
}

// An upload left half-way is removed from the temp folder once nothing
// was written to it for expire_after; one still being written, a finished
// one, and one whose bytes all arrived are kept.
func TestExpireAbandonedTusUpload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, folderStore(t), nil)
	ctx := context.Background()
	idle := e.create(t, "tok-pub", 1<<20, "idle.mp4")
	if resp := e.patch(t, "tok-pub", idle, 0, randomBytes(t, 300000)); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH: %s", resp.Status)
	}
	active := e.create(t, "tok-pub", 1<<20, "active.mp4")
	e.patch(t, "tok-pub", active, 0, randomBytes(t, 10))
	finished := e.create(t, "tok-pub", 1000, "done.mp4")
	e.patch(t, "tok-pub", finished, 0, randomBytes(t, 1000))
	// All bytes here, storing never ran (the process stopped first).
	whole := e.create(t, "tok-pub", 500, "whole.mp4")
	if err := os.WriteFile(filepath.Join(e.tmp, strings.TrimPrefix(whole, base)), randomBytes(t, 500), 0o640); err != nil {
		t.Fatal(err)
	}

	// Nothing is a day old yet.
	if err := e.h.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if off, resp := e.head(t, "tok-pub", idle); off != 300000 {
		t.Fatalf("HEAD before expiry: %d %s", off, resp.Status)
	}

	// 25 hours on; the active upload was written an hour ago.
	later(e, 25*time.Hour)
	recent := time.Now().Add(24 * time.Hour)
	for _, f := range []string{"", ".info"} {
		os.Chtimes(filepath.Join(e.tmp, strings.TrimPrefix(active, base)+f), recent, recent)
	}
	if err := e.h.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(idle, base)
	if _, resp := e.head(t, "tok-pub", idle); resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD of the expired upload: %s, want 404", resp.Status)
	}
	for _, f := range []string{id, id + ".info"} {
		if _, err := os.Stat(filepath.Join(e.tmp, f)); !os.IsNotExist(err) {
			t.Errorf("%s still in the temp folder: %v", f, err)
		}
	}
	wantExpired(t, e, id, 300000, "25h")
	if n := len(e.logs.lines(expiredMsg)); n != 1 {
		t.Errorf("%d uploads expired, want 1", n)
	}
	if off, resp := e.head(t, "tok-pub", active); off != 10 {
		t.Errorf("HEAD of the active upload: %d %s", off, resp.Status)
	}
	if off, resp := e.head(t, "tok-pub", finished); off != 1000 {
		t.Errorf("HEAD of the finished upload: %d %s", off, resp.Status)
	}
	// The whole one is finished by its client's HEAD, not thrown away.
	if off, resp := e.head(t, "tok-pub", whole); off != 500 {
		t.Errorf("HEAD of the whole, unstored upload: %d %s", off, resp.Status)
	}
	if n := len(e.calls()); n != 2 {
		t.Errorf("%d masters stored, want 2 (done.mp4, whole.mp4)", n)
	}
}

// The sweeper that the service runs: with a tiny expire_after it removes
// an idle upload by itself, and stops with its context.
func TestSweeperRunsUntilCancelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, folderStore(t), nil)
	e.h.cfg.ExpireAfter = 300 * time.Millisecond
	idle := e.create(t, "tok-pub", 1000, "idle.mp4")
	e.patch(t, "tok-pub", idle, 0, randomBytes(t, 10))

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { e.h.RunSweeper(ctx); close(stopped) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(e.logs.lines(expiredMsg)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sweeper did not expire the idle upload")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("RunSweeper did not return after its context was cancelled")
	}
	if _, resp := e.head(t, "tok-pub", idle); resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD of the expired upload: %s, want 404", resp.Status)
	}
	wantExpired(t, e, strings.TrimPrefix(idle, base), 10, "")
}

// startMultipart starts a presigned multipart upload and PUTs its first
// part.
func startMultipart(t *testing.T, e *env, size int64) StartResponse {
	t.Helper()
	resp := e.do(t, "POST", base+"multipart", "tok-pub", nil, []byte(fmt.Sprintf(`{"filename":"film.mp4","size":%d,"part_size":%d}`, size, 5<<20)))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("start: %s %s", resp.Status, body(resp))
	}
	var st StartResponse
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("PUT", st.Parts[0].URL, bytes.NewReader(randomBytes(t, int(st.Parts[0].Size))))
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Fatalf("PUT part 1: %s", r.Status)
	}
	return st
}

// A presigned multipart upload nobody finishes is aborted in the bucket
// (its parts freed) and its state removed, on real MinIO.
func TestExpireAbandonedMultipartS3(t *testing.T) {
	t.Parallel()
	objects, s3 := s3Store(t)
	e := newEnv(t, objects, s3)
	ctx := context.Background()
	st := startMultipart(t, e, 12<<20)
	var s3id string
	{
		ms, err := e.h.mp.readState(ctx, st.ID)
		if err != nil {
			t.Fatal(err)
		}
		s3id = ms.S3ID
	}
	object := e.h.mp.prefix + st.Key
	parts := func() (int, string) {
		res, err := e.h.mp.core.ListObjectParts(ctx, e.h.mp.bucket, object, s3id, 0, 100)
		return len(res.ObjectParts), minio.ToErrorResponse(err).Code
	}

	if err := e.h.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n, code := parts(); n != 1 || code != "" {
		t.Fatalf("before expiry: %d parts, error %q; want the part kept", n, code)
	}

	later(e, 25*time.Hour)
	if err := e.h.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, code := parts(); code != "NoSuchUpload" {
		t.Errorf("after expiry: ListObjectParts error %q, want NoSuchUpload (aborted)", code)
	}
	if infos, err := objects.List(ctx, multipartStatePrefix); err != nil || len(infos) != 0 {
		t.Errorf("state left behind: %v %v", infos, err)
	}
	if resp := e.do(t, "POST", st.CompleteURL, "tok-pub", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("complete after expiry: %s, want 404", resp.Status)
	}
	wantExpired(t, e, st.ID, 5<<20, "25h")
}
