package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/streamd/streamd/live"
	"github.com/streamd/streamd/media"
	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/sqlitemeta"
)

func openTestMeta(t *testing.T) *sqlitemeta.DB {
	t.Helper()
	db, err := sqlitemeta.Open(context.Background(), filepath.Join(t.TempDir(), "meta.db"), sqlitemeta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestSyncChannels(t *testing.T) {
	ctx := context.Background()
	db := openTestMeta(t)
	var logs lockedBuf
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := []live.Channel{{Name: "main", StreamKey: "config-key-main-0123"}, {Name: "news", StreamKey: "config-key-news-0123"}}
	if err := syncChannels(ctx, db, cfg, nil, log); err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg {
		ch, err := db.ChannelByStreamKey(ctx, c.StreamKey)
		if err != nil || ch.Name != c.Name || !ch.FromConfig || ch.OwnerID != "" {
			t.Fatalf("%s after sync: %+v %v", c.Name, ch, err)
		}
	}
	// An API channel coexists and is left alone.
	if _, err := db.CreateChannel(ctx, store.Channel{Name: "mine", OwnerID: "u1"}, "api-key-mine-0123"); err != nil {
		t.Fatal(err)
	}
	// A key changed in the store is set back to the config's; a second
	// sync with nothing to do changes nothing.
	if _, err := db.RotateStreamKey(ctx, "main", "rotated-elsewhere-0123"); err != nil {
		t.Fatal(err)
	}
	before, _ := db.GetChannel(ctx, "news")
	if err := syncChannels(ctx, db, cfg, nil, log); err != nil {
		t.Fatal(err)
	}
	if ch, err := db.ChannelByStreamKey(ctx, "config-key-main-0123"); err != nil || ch.Name != "main" {
		t.Fatalf("config key not restored: %v", err)
	}
	if _, err := db.ChannelByStreamKey(ctx, "rotated-elsewhere-0123"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("store-rotated key still works: %v", err)
	}
	if after, _ := db.GetChannel(ctx, "news"); !after.KeyRotatedAt.Equal(before.KeyRotatedAt) {
		t.Fatal("an unchanged key was rotated")
	}
	// protected: in the config sets the channel's visibility, both ways.
	for _, prot := range []bool{true, false} {
		if err := syncChannels(ctx, db, cfg, map[string]bool{"main": prot}, log); err != nil {
			t.Fatal(err)
		}
		want := store.VisibilityPublic
		if prot {
			want = store.VisibilityProtected
		}
		if ch, _ := db.GetChannel(ctx, "main"); ch.Visibility != want {
			t.Fatalf("protected: %v gave visibility %q", prot, ch.Visibility)
		}
		if ch, _ := db.GetChannel(ctx, "news"); ch.Visibility != store.VisibilityPublic {
			t.Fatalf("an unprotected channel became %q", ch.Visibility)
		}
	}
	// The config drops news and takes over mine (an API channel of that name).
	cfg2 := []live.Channel{{Name: "main", StreamKey: "config-key-main-0123"}, {Name: "mine", StreamKey: "config-key-mine-0123"}}
	if err := syncChannels(ctx, db, cfg2, nil, log); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetChannel(ctx, "news"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("channel dropped from the config still stored: %v", err)
	}
	mine, err := db.ChannelByStreamKey(ctx, "config-key-mine-0123")
	if err != nil || mine.Name != "mine" || !mine.FromConfig {
		t.Fatalf("taken-over channel: %+v %v", mine, err)
	}
	if _, err := db.ChannelByStreamKey(ctx, "api-key-mine-0123"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("the API key of a taken-over channel still works")
	}
	if !strings.Contains(logs.String(), "now managed by the config") {
		t.Fatalf("take-over not logged:\n%s", logs.String())
	}
	// A configured key that another channel uses is a start-up error.
	if _, err := db.CreateChannel(ctx, store.Channel{Name: "other", OwnerID: "u2"}, "taken-key-0123456"); err != nil {
		t.Fatal(err)
	}
	err = syncChannels(ctx, db, []live.Channel{{Name: "main", StreamKey: "taken-key-0123456"}}, nil, log)
	if err == nil || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("key clash: %v", err)
	}
	for _, k := range []string{"config-key-main-0123", "config-key-news-0123", "config-key-mine-0123", "api-key-mine-0123", "taken-key-0123456", "rotated-elsewhere"} {
		if strings.Contains(logs.String(), k) || strings.Contains(err.Error(), k) {
			t.Fatalf("key %q in the logs or the error", k)
		}
	}
}

var testTracks = []*media.Track{{ID: 0, Codec: &media.H264{}}}

// The hub over the store: keys are checked there at each publish, and the
// configured channels stand in while it is unreachable.
func TestHubOverStore(t *testing.T) {
	ctx := context.Background()
	db := openTestMeta(t)
	var logs lockedBuf
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := []live.Channel{{Name: "main", StreamKey: "config-key-main-0123"}}
	if err := syncChannels(ctx, db, cfg, nil, log); err != nil {
		t.Fatal(err)
	}
	hub := live.NewHub(log, cfg)
	hub.SetKeyResolver(storeKeys{meta: db})

	if _, err := db.CreateChannel(ctx, store.Channel{Name: "news", OwnerID: "u1"}, "api-key-news-0123"); err != nil {
		t.Fatal(err)
	}
	s, err := hub.Publish("api-key-news-0123", "rtmp", "1.2.3.4:5", testTracks)
	if err != nil || s.Channel != "news" {
		t.Fatalf("publish with an API channel's key: %v", err)
	}
	if st := hub.Status(); len(st) != 2 || st[0].Name != "news" || !st[0].Live || st[1].Name != "main" {
		t.Fatalf("status: %+v", st)
	}
	if _, err := db.RotateStreamKey(ctx, "news", "api-key-news-rotated"); err != nil {
		t.Fatal(err)
	}
	s.Close(nil)
	if _, err := hub.Publish("api-key-news-0123", "rtmp", "x", testTracks); !errors.Is(err, live.ErrUnknownKey) {
		t.Fatalf("old key after rotation: %v", err)
	}
	if _, ok := hub.Lookup("api-key-news-rotated"); !ok {
		t.Fatal("new key refused")
	}
	if _, ok := hub.Lookup("config-key-main-0123"); !ok {
		t.Fatal("config key refused")
	}
	if _, ok := hub.Lookup("' OR '1'='1"); ok {
		t.Fatal("injection opened a channel")
	}

	db.Close() // the store is gone: config channels only
	if ch, ok := hub.Lookup("config-key-main-0123"); !ok || ch.Name != "main" {
		t.Fatal("config key refused while the store is down")
	}
	if _, ok := hub.Lookup("api-key-news-rotated"); ok {
		t.Fatal("an API key worked while the store is down")
	}
	if !strings.Contains(logs.String(), "stream key store unreachable") {
		t.Fatalf("fallback not logged:\n%s", logs.String())
	}
	for _, k := range []string{"config-key-main-0123", "api-key-news"} {
		if strings.Contains(logs.String(), k) {
			t.Fatalf("key %q logged", k)
		}
	}
}
