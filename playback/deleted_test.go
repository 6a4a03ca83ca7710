package playback_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/origin"
	"github.com/streamd/streamd/playback"
	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/fsstore"
)

// originFor is the origin as cmd/streamd mounts it: Gate in front of a
// handler guarded by the policy. The hot cache is off: what is tested is
// the policy, not the cache.
func originFor(t *testing.T, p *playback.Policy, objs store.Objects) *httptest.Server {
	t.Helper()
	signer, err := auth.NewURLSigner(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	guard, err := origin.NewPolicyGuard(signer, p.Protected, nil)
	if err != nil {
		t.Fatal(err)
	}
	og := origin.New(origin.Config{Guard: guard, CacheBytes: -1, PlaylistMaxAge: time.Second}, objs, slog.New(slog.DiscardHandler))
	mux := http.NewServeMux()
	mux.Handle("/live/", p.Gate(og))
	mux.Handle("/vod/", p.Gate(og))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func status(t *testing.T, url string) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func putObject(t *testing.T, objs store.Objects, key, body string) {
	t.Helper()
	if err := objs.Put(context.Background(), key, strings.NewReader(body), int64(len(body)), ""); err != nil {
		t.Fatal(err)
	}
}

// Names the store does not know are 404, whatever the object store
// holds: a deleted channel's or item's objects never play.
func TestGateRefusesUnknownNames(t *testing.T) {
	ctx := context.Background()
	db := openMeta(t)
	objs, err := fsstore.New(filepath.Join(t.TempDir(), "objects"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateChannel(ctx, store.Channel{Name: "free"}, "key-free-0123456789"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"live/free/index.m3u8", "live/gone/index.m3u8", "vod/gone/index.m3u8"} {
		putObject(t, objs, k, "#EXTM3U\n")
	}
	srv := originFor(t, playback.NewPolicy(db, 50*time.Millisecond, nil), objs)
	for path, want := range map[string]int{
		"/live/free/index.m3u8": 200,
		"/live/gone/index.m3u8": 404,
		"/vod/gone/index.m3u8":  404,
		"/live/free/none.m3u8":  404, // known channel, missing object: the origin's 404
	} {
		if got := status(t, srv.URL+path); got != want {
			t.Errorf("GET %s: %d, want %d", path, got, want)
		}
	}
}

// A deleted protected channel: never public in between (the memo held
// "protected"), 404 at once once its objects are removed, and nothing of
// it plays when another publisher creates the name as a public channel.
func TestDeletedProtectedChannelStaysClosed(t *testing.T) {
	ctx := context.Background()
	db := openMeta(t)
	objs, err := fsstore.New(filepath.Join(t.TempDir(), "objects"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateChannel(ctx, store.Channel{Name: "paid", OwnerID: "a", Visibility: store.VisibilityProtected}, "key-paid-0123456789"); err != nil {
		t.Fatal(err)
	}
	keys := []string{"live/paid/index.m3u8", "live/paid/source/index.m3u8", "live/paid/source/r1-00001.m4s"}
	for _, k := range keys {
		putObject(t, objs, k, "recording")
	}
	p := playback.NewPolicy(db, 300*time.Millisecond, nil)
	srv := originFor(t, p, objs)
	seg := srv.URL + "/live/paid/source/r1-00001.m4s"
	if got := status(t, seg); got != http.StatusUnauthorized {
		t.Fatalf("protected segment without a token: %d", got)
	}

	// The row goes first (as another node sees it): from then on the
	// answer is 401 while the memo lasts, then 404 — never 200.
	if err := db.DeleteChannel(ctx, "paid"); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(600 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if got := status(t, seg); got != http.StatusUnauthorized && got != http.StatusNotFound {
			t.Fatalf("deleted protected channel answered %d", got)
		}
	}
	if got := status(t, seg); got != http.StatusNotFound {
		t.Fatalf("deleted channel after the memo: %d, want 404", got)
	}

	// Removing the objects clears them all and makes this node forget at
	// once; the name taken again, as a public channel, plays nothing old.
	co := &playback.ChannelObjects{Objects: objs, Policy: p}
	if err := co.RemoveChannelObjects(ctx, "paid"); err != nil {
		t.Fatal(err)
	}
	if left, _ := objs.List(ctx, "live/paid/"); len(left) != 0 {
		t.Fatalf("objects left: %+v", left)
	}
	if _, err := db.CreateChannel(ctx, store.Channel{Name: "paid", OwnerID: "b"}, "key-paid-other-0123"); err != nil {
		t.Fatal(err)
	}
	p.ForgetChannel("paid")
	for _, k := range keys {
		if got := status(t, srv.URL+"/"+k); got != http.StatusNotFound {
			t.Errorf("old %s under the new public channel: %d, want 404", k, got)
		}
	}
}

// RemoveChannelObjects refuses a channel on air and names that are not
// one path element, and touches nothing else.
func TestRemoveChannelObjectsRefuses(t *testing.T) {
	ctx := context.Background()
	objs, err := fsstore.New(filepath.Join(t.TempDir(), "objects"))
	if err != nil {
		t.Fatal(err)
	}
	putObject(t, objs, "live/onair/index.m3u8", "x")
	putObject(t, objs, "live/onairx/index.m3u8", "x")
	co := &playback.ChannelObjects{Objects: objs, OnAir: func(name string) bool { return name == "onair" }}
	var ae *auth.Error
	if err := co.RemoveChannelObjects(ctx, "onair"); !errors.As(err, &ae) || ae.Code != auth.CodeConflict || !strings.Contains(ae.Message, "on air") {
		t.Fatalf("on air: %v", err)
	}
	for _, bad := range []string{"", "..", "a/b"} {
		if err := co.RemoveChannelObjects(ctx, bad); !errors.Is(err, playback.ErrUnsafeName) {
			t.Errorf("name %q: %v", bad, err)
		}
	}
	co.OnAir = nil
	if err := co.RemoveChannelObjects(ctx, "onair"); err != nil {
		t.Fatal(err)
	}
	if left, _ := objs.List(ctx, "live/"); len(left) != 1 || left[0].Key != "live/onairx/index.m3u8" {
		t.Fatalf("left: %+v", left)
	}
}
