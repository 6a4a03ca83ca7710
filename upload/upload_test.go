package upload

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/fsstore"
	"github.com/streamd/streamd/store/s3store"
)

const base = "/api/uploads/"

var users = map[string]Identity{
	"tok-pub":    {UserID: "u-pub", Role: "publisher"},
	"tok-pub2":   {UserID: "u-pub2", Role: "publisher"},
	"tok-admin":  {UserID: "u-admin", Role: "admin"},
	"tok-viewer": {UserID: "u-viewer", Role: "viewer"},
}

var fakeAuth = AuthenticatorFunc(func(ctx context.Context, tok string) (Identity, error) {
	if tok == "tok-down" {
		return Identity{}, fmt.Errorf("sessions: %w", store.ErrUnavailable)
	}
	id, ok := users[tok]
	if !ok {
		return Identity{}, errors.New("bad token")
	}
	return id, nil
})

type env struct {
	srv     *httptest.Server
	h       *Handler
	objects store.Objects
	tmp     string
	logs    *logBuffer

	mu        sync.Mutex
	completed []Upload
	failNext  int // OnComplete fails this many times
}

func (e *env) calls() []Upload {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Upload(nil), e.completed...)
}

func newEnv(t *testing.T, objects store.Objects, s3 *S3Config) *env {
	t.Helper()
	e := &env{objects: objects, tmp: t.TempDir(), logs: &logBuffer{}}
	h, err := New(Config{
		BasePath: base,
		MaxSize:  64 << 20,
		Objects:  objects,
		TempDir:  e.tmp,
		Auth:     fakeAuth,
		S3:       s3,
		Log:      slog.New(slog.NewTextHandler(e.logs, nil)),
		OnComplete: func(ctx context.Context, u Upload) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.failNext > 0 {
				e.failNext--
				return errors.New("queue down")
			}
			e.completed = append(e.completed, u)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	mux := http.NewServeMux()
	mux.Handle(base, h)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

func folderStore(t *testing.T) store.Objects {
	s, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func s3Store(t *testing.T) (store.Objects, *S3Config) {
	endpoint, access, secret, bucket := testenv.S3Bucket(t)
	cfg := s3store.Config{Endpoint: endpoint, Bucket: bucket, AccessKey: access, SecretKey: secret, Prefix: "tenant"}
	s, err := s3store.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s, &S3Config{Endpoint: endpoint, Bucket: bucket, AccessKey: access, SecretKey: secret, Prefix: "tenant"}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) do(t *testing.T, method, path, token string, hdr map[string]string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = nil
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func body(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func metadata(kv ...string) string {
	var parts []string
	for i := 0; i < len(kv); i += 2 {
		parts = append(parts, kv[i]+" "+base64.StdEncoding.EncodeToString([]byte(kv[i+1])))
	}
	return strings.Join(parts, ",")
}

// create POSTs a new upload and returns its path.
func (e *env) create(t *testing.T, token string, size int, filename string) string {
	t.Helper()
	resp := e.do(t, "POST", base, token, map[string]string{
		"Upload-Length":   strconv.Itoa(size),
		"Upload-Metadata": metadata("filename", filename, "filetype", "video/mp4"),
	}, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %s %s", resp.Status, body(resp))
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.Path, base) {
		t.Fatalf("POST: Location %q", resp.Header.Get("Location"))
	}
	return loc.Path
}

func (e *env) patch(t *testing.T, token, path string, offset int, data []byte) *http.Response {
	t.Helper()
	return e.do(t, "PATCH", path, token, map[string]string{
		"Content-Type":  "application/offset+octet-stream",
		"Upload-Offset": strconv.Itoa(offset),
	}, data)
}

func (e *env) head(t *testing.T, token, path string) (int, *http.Response) {
	t.Helper()
	resp := e.do(t, "HEAD", path, token, nil, nil)
	if resp.StatusCode != http.StatusOK {
		return -1, resp
	}
	n, err := strconv.Atoi(resp.Header.Get("Upload-Offset"))
	if err != nil {
		t.Fatalf("HEAD: Upload-Offset %q", resp.Header.Get("Upload-Offset"))
	}
	return n, resp
}

// cutPatch sends a PATCH announcing the rest of the file, writes only n
// bytes of it and closes the connection: a client whose line drops.
func (e *env) cutPatch(t *testing.T, path string, offset int, rest []byte, n int) {
	t.Helper()
	u, _ := url.Parse(e.srv.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer tok-pub\r\nTus-Resumable: 1.0.0\r\n"+
		"Content-Type: application/offset+octet-stream\r\nUpload-Offset: %d\r\nContent-Length: %d\r\n\r\n",
		path, u.Host, offset, len(rest))
	if _, err := conn.Write(rest[:n]); err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

func storedSum(t *testing.T, objects store.Objects, key string) ([32]byte, int64) {
	t.Helper()
	rc, info, err := objects.Get(context.Background(), key, nil)
	if err != nil {
		t.Fatalf("stored master %s: %v", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatal(err)
	}
	if n != info.Size {
		t.Fatalf("stored master: read %d bytes, info says %d", n, info.Size)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, n
}

// resumable runs the whole tus flow with a connection cut mid-PATCH.
func resumable(t *testing.T, e *env) {
	const size = 20 << 20
	data := randomBytes(t, size)
	path := e.create(t, "tok-pub", size, "../My Clip (final).mp4")
	id := strings.TrimPrefix(path, base)

	// First chunk, normally.
	resp := e.patch(t, "tok-pub", path, 0, data[:3<<20])
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Upload-Offset") != strconv.Itoa(3<<20) {
		t.Fatalf("PATCH 1: %s offset %q %s", resp.Status, resp.Header.Get("Upload-Offset"), body(resp))
	}

	// The line drops after 7 MiB of the remaining 17 MiB.
	start := 3 << 20
	e.cutPatch(t, path, start, data[start:], 7<<20)

	// HEAD until the server has kept what it received.
	var off int
	deadline := time.Now().Add(10 * time.Second)
	for {
		var hr *http.Response
		off, hr = e.head(t, "tok-pub", path)
		if off < 0 {
			t.Fatalf("HEAD: %s", hr.Status)
		}
		if hr.Header.Get("Upload-Length") != strconv.Itoa(size) {
			t.Fatalf("HEAD: Upload-Length %q", hr.Header.Get("Upload-Length"))
		}
		if off > start || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if off <= start || off > start+7<<20 {
		t.Fatalf("after the cut: offset %d, want in (%d, %d]", off, start, start+7<<20)
	}
	t.Logf("connection cut after %d bytes sent; server kept %d", start+7<<20, off)

	// A PATCH at a stale offset is refused.
	if resp := e.patch(t, "tok-pub", path, start, data[start:start+10]); resp.StatusCode != http.StatusConflict {
		t.Fatalf("PATCH at a stale offset: %s, want 409", resp.Status)
	}
	if len(e.calls()) != 0 {
		t.Fatal("OnComplete called before the upload finished")
	}

	// Resume in 5 MiB chunks.
	for off < size {
		end := min(off+5<<20, size)
		resp := e.patch(t, "tok-pub", path, off, data[off:end])
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("PATCH at %d: %s %s", off, resp.Status, body(resp))
		}
		got, _ := strconv.Atoi(resp.Header.Get("Upload-Offset"))
		if got != end {
			t.Fatalf("PATCH at %d: offset %d, want %d", off, got, end)
		}
		off = end
	}

	calls := e.calls()
	if len(calls) != 1 {
		t.Fatalf("OnComplete called %d times, want 1: %+v", len(calls), calls)
	}
	u := calls[0]
	wantKey := "masters/" + id + "/My_Clip__final_.mp4"
	if u.ID != id || u.Key != wantKey || u.Size != size || u.UserID != "u-pub" || u.Filename != "My_Clip__final_.mp4" || u.ContentType != "video/mp4" {
		t.Fatalf("OnComplete(%+v), want key %s size %d user u-pub", u, wantKey, size)
	}
	got, n := storedSum(t, e.objects, u.Key)
	if n != size || got != sum(data) {
		t.Fatalf("stored master: %d bytes, sha256 %x; want %d bytes, %x", n, got, size, sum(data))
	}

	// Finished: HEAD says complete, a repeated last PATCH is harmless,
	// nothing is left in the temp folder but the small record.
	if off, hr := e.head(t, "tok-pub", path); off != size {
		t.Fatalf("HEAD after finishing: %d %s", off, hr.Status)
	}
	if resp := e.patch(t, "tok-pub", path, size, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH after finishing: %s", resp.Status)
	}
	if n := len(e.calls()); n != 1 {
		t.Fatalf("OnComplete called %d times after repeats, want 1", n)
	}
	left, _ := filepath.Glob(filepath.Join(e.tmp, "*"))
	if len(left) != 1 || !strings.HasSuffix(left[0], ".done") {
		t.Fatalf("temp folder holds %v, want only the .done record", left)
	}
}

func TestResumableFolderStore(t *testing.T) {
	t.Parallel()
	resumable(t, newEnv(t, folderStore(t), nil))
}

func TestResumableS3(t *testing.T) {
	t.Parallel()
	objects, _ := s3Store(t)
	resumable(t, newEnv(t, objects, nil))
}

func TestAccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t, folderStore(t), nil)
	hdr := map[string]string{"Upload-Length": "10"}

	resp := e.do(t, "POST", base, "", hdr, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no token: %s %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	if resp := e.do(t, "POST", base, "nonsense", hdr, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad token: %s", resp.Status)
	}
	resp = e.do(t, "POST", base, "tok-viewer", hdr, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body(resp), "publisher") {
		t.Fatalf("viewer: %s", resp.Status)
	}
	if resp := e.do(t, "POST", base, "tok-down", hdr, nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("auth down: %s", resp.Status)
	}
	// Discovery and CORS preflight need no token.
	resp = e.do(t, "OPTIONS", base, "", map[string]string{"Origin": "https://app.example"}, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Tus-Version") != "1.0.0" || resp.Header.Get("Tus-Max-Size") != strconv.Itoa(64<<20) {
		t.Fatalf("OPTIONS: %s %v", resp.Status, resp.Header)
	}

	// Uploads are their owner's (and admins').
	path := e.create(t, "tok-pub", 10, "a.mp4")
	if off, resp := e.head(t, "tok-pub2", path); off >= 0 || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("another publisher's HEAD: %s", resp.Status)
	}
	if resp := e.patch(t, "tok-pub2", path, 0, []byte("0123456789")); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("another publisher's PATCH: %s", resp.Status)
	}
	if off, resp := e.head(t, "tok-admin", path); off != 0 {
		t.Fatalf("admin's HEAD: %s", resp.Status)
	}
	if resp := e.patch(t, "tok-viewer", path, 0, []byte("0123456789")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("viewer's PATCH: %s", resp.Status)
	}
	// Paths that are not upload ids never reach the file system.
	for _, p := range []string{base + "..%2f..%2fetc", base + "x/../../y", base + "ABC"} {
		if resp := e.do(t, "HEAD", p, "tok-pub", nil, nil); resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("HEAD %s: %s", p, resp.Status)
		}
	}
	// Without S3 there is no multipart route.
	if resp := e.do(t, "POST", base+"multipart", "tok-pub", nil, []byte(`{"filename":"a","size":1}`)); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("multipart on the folder store: %s", resp.Status)
	}
}

func TestTooLarge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, folderStore(t), nil)
	resp := e.do(t, "POST", base, "tok-pub", map[string]string{"Upload-Length": strconv.Itoa(64<<20 + 1)}, nil)
	b := body(resp)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(b, "upload.max_size") || resp.Header.Get("Tus-Max-Size") != strconv.Itoa(64<<20) {
		t.Fatalf("over the limit: %s %s", resp.Status, b)
	}
	// A PATCH cannot write more than the declared length either.
	path := e.create(t, "tok-pub", 4, "a.mp4")
	if resp := e.patch(t, "tok-pub", path, 0, []byte("12345")); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("PATCH past the length: %s", resp.Status)
	}
	if len(e.calls()) != 0 {
		t.Fatal("OnComplete called")
	}
}

// TestCompleteHookRetried: when OnComplete fails, the last PATCH answers
// 500 and the client's HEAD retries it; the master is stored once.
func TestCompleteHookRetried(t *testing.T) {
	t.Parallel()
	objects := folderStore(t)
	e := newEnv(t, objects, nil)
	e.failNext = 1
	data := randomBytes(t, 1000)
	path := e.create(t, "tok-pub", len(data), "x.mov")
	if resp := e.patch(t, "tok-pub", path, 0, data); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("PATCH with the hook failing: %s", resp.Status)
	}
	if off, resp := e.head(t, "tok-pub", path); off != len(data) {
		t.Fatalf("HEAD: %d %s", off, resp.Status)
	}
	calls := e.calls()
	if len(calls) != 1 {
		t.Fatalf("OnComplete succeeded %d times, want 1", len(calls))
	}
	if got, _ := storedSum(t, objects, calls[0].Key); got != sum(data) {
		t.Fatal("stored master differs")
	}
}

func TestEmptyUpload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, folderStore(t), nil)
	e.create(t, "tok-pub", 0, "")
	calls := e.calls()
	if len(calls) != 1 || calls[0].Size != 0 || !strings.HasSuffix(calls[0].Key, "/master") {
		t.Fatalf("OnComplete: %+v", calls)
	}
}

func TestMultipartS3(t *testing.T) {
	t.Parallel()
	objects, s3 := s3Store(t)
	e := newEnv(t, objects, s3)
	const size = 12<<20 + 12345
	data := randomBytes(t, size)

	resp := e.do(t, "POST", base+"multipart", "tok-viewer", nil, []byte(`{}`))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("viewer: %s", resp.Status)
	}
	resp = e.do(t, "POST", base+"multipart", "tok-pub", nil, []byte(fmt.Sprintf(`{"filename":"big.mp4","size":%d}`, 64<<20+1)))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("too large: %s", resp.Status)
	}
	resp = e.do(t, "POST", base+"multipart", "tok-pub", nil, []byte(fmt.Sprintf(`{"filename":"film.mp4","size":%d,"part_size":%d}`, size, 5<<20)))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("start: %s %s", resp.Status, body(resp))
	}
	var start StartResponse
	if err := json.NewDecoder(resp.Body).Decode(&start); err != nil {
		t.Fatal(err)
	}
	if len(start.Parts) != 3 || start.PartSize != 5<<20 || start.Key != "masters/"+start.ID+"/film.mp4" {
		t.Fatalf("start: %+v", start)
	}
	put := func(p Part) {
		off := int64(p.Number-1) * start.PartSize
		req, _ := http.NewRequest("PUT", p.URL, bytes.NewReader(data[off:off+p.Size]))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT part %d: %s %s", p.Number, resp.Status, body(resp))
		}
	}
	complete := base + "multipart/" + start.ID + "/complete"
	if start.CompleteURL != complete {
		t.Fatalf("complete_url %q", start.CompleteURL)
	}
	// Parts in any order; completing early names what is missing.
	put(start.Parts[2])
	put(start.Parts[0])
	if resp := e.do(t, "POST", complete, "tok-pub", nil, nil); resp.StatusCode != http.StatusConflict {
		t.Fatalf("complete with a part missing: %s", resp.Status)
	}
	put(start.Parts[1])
	if resp := e.do(t, "POST", complete, "tok-pub2", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("another user's complete: %s", resp.Status)
	}
	resp = e.do(t, "POST", complete, "tok-pub", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("complete: %s %s", resp.Status, body(resp))
	}
	calls := e.calls()
	if len(calls) != 1 || calls[0].Key != start.Key || calls[0].Size != size || calls[0].UserID != "u-pub" {
		t.Fatalf("OnComplete: %+v", calls)
	}
	if got, n := storedSum(t, objects, start.Key); n != size || got != sum(data) {
		t.Fatal("stored master differs")
	}
	if infos, err := objects.List(context.Background(), "uploads/"); err != nil || len(infos) != 0 {
		t.Fatalf("state left behind: %v %v", infos, err)
	}
	if resp := e.do(t, "POST", complete, "tok-pub", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("second complete: %s", resp.Status)
	}

	// Abort.
	resp = e.do(t, "POST", base+"multipart", "tok-pub", nil, []byte(`{"filename":"x","size":100}`))
	var s2 StartResponse
	json.NewDecoder(resp.Body).Decode(&s2)
	if resp := e.do(t, "DELETE", base+"multipart/"+s2.ID, "tok-pub", nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("abort: %s", resp.Status)
	}
	if resp := e.do(t, "POST", base+"multipart/"+s2.ID+"/complete", "tok-pub", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("complete after abort: %s", resp.Status)
	}
}

func TestCleanFilename(t *testing.T) {
	for in, want := range map[string]string{
		"":                    "master",
		"film.mp4":            "film.mp4",
		"../../etc/passwd":    "passwd",
		`C:\Users\me\a b.mov`: "a_b.mov",
		"..":                  "master",
		".hidden":             "hidden",
		"été 2024.mkv":        "été_2024.mkv",
		"a\x00b\nc":           "a_b_c",
	} {
		if got := cleanFilename(in); got != want {
			t.Errorf("cleanFilename(%q) = %q, want %q", in, got, want)
		}
		if _, err := store.CleanKey("masters/x/" + cleanFilename(in)); err != nil {
			t.Errorf("cleanFilename(%q): %v", in, err)
		}
	}
	if n := len(cleanFilename(strings.Repeat("a", 1000))); n > 150 {
		t.Errorf("long name: %d bytes", n)
	}
}

// TestUploadVisibility: the visibility given at creation reaches the
// finished upload; an unknown one is refused before any byte is sent.
func TestUploadVisibility(t *testing.T) {
	t.Parallel()
	e := newEnv(t, folderStore(t), nil)
	resp := e.do(t, "POST", base, "tok-pub", map[string]string{
		"Upload-Length":   "0",
		"Upload-Metadata": metadata("filename", "a.mp4", "visibility", "protected"),
	}, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %s %s", resp.Status, body(resp))
	}
	if calls := e.calls(); len(calls) != 1 || calls[0].Visibility != "protected" {
		t.Fatalf("OnComplete: %+v", calls)
	}
	resp = e.do(t, "POST", base, "tok-pub", map[string]string{
		"Upload-Length":   "10",
		"Upload-Metadata": metadata("filename", "b.mp4", "visibility", "secret"),
	}, nil)
	if b := body(resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(b, "visibility") {
		t.Fatalf("unknown visibility: %s %s", resp.Status, b)
	}
}
