package live

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamd/streamd/media"
)

type recorder struct {
	mu     sync.Mutex
	units  int
	closed int
}

func (r *recorder) WriteUnit(*media.Unit) { r.mu.Lock(); r.units++; r.mu.Unlock() }
func (r *recorder) Close()                { r.mu.Lock(); r.closed++; r.mu.Unlock() }

type attach struct{ r *recorder }

func (a attach) OnPublish(s *Stream) { s.AddReader(a.r) }

var tracks = []*media.Track{{ID: 0, Codec: &media.H264{}}, {ID: 1, Codec: &media.AAC{SampleRate: 48000, Channels: 2}}}

func TestPublishLifecycle(t *testing.T) {
	var logs bytes.Buffer
	h := NewHub(slog.New(slog.NewTextHandler(&logs, nil)), []Channel{{Name: "a", StreamKey: "key-a-123"}, {Name: "b", StreamKey: "key-b-456"}})
	rec := &recorder{}
	h.AddListener(attach{rec})

	if _, err := h.Publish("wrong-key", "rtmp", "1.2.3.4:5", tracks); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := h.Publish("", "rtmp", "1.2.3.4:5", tracks); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("empty key: %v", err)
	}
	s, err := h.Publish("key-b-456", "rtmp", "1.2.3.4:5", tracks)
	if err != nil || s.Channel != "b" {
		t.Fatalf("publish: %v", err)
	}
	_, err = h.Publish("key-b-456", "rtsp", "6.7.8.9:10", tracks)
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Channel != "b" || busy.Protocol != "rtmp" {
		t.Fatalf("busy: %v", err)
	}
	st := h.Status()
	if len(st) != 2 || st[0].Name != "b" || !st[0].Live || st[1].Live || strings.Join(st[0].Codecs, ",") != "h264,aac" {
		t.Fatalf("status: %+v", st)
	}
	for range 10 {
		s.WriteUnit(&media.Unit{Track: tracks[0]})
	}
	s.Close(nil)
	s.Close(errors.New("again")) // idempotent
	s.WriteUnit(&media.Unit{Track: tracks[0]})
	if rec.units != 10 || rec.closed != 1 {
		t.Fatalf("reader got %d units, %d closes", rec.units, rec.closed)
	}
	if h.Status()[0].Live || h.Status()[1].Live {
		t.Fatal("still live after close")
	}
	if _, err := h.Publish("key-b-456", "rtsp", "6.7.8.9:10", tracks); err != nil {
		t.Fatalf("republish: %v", err)
	}
	if strings.Contains(logs.String(), "key-b-456") || strings.Contains(logs.String(), "wrong-key") {
		t.Fatalf("a key was logged:\n%s", logs.String())
	}
}

func TestReaderAddedAfterCloseIsClosed(t *testing.T) {
	h := NewHub(slog.New(slog.DiscardHandler), []Channel{{Name: "a", StreamKey: "key-a-123"}})
	s, _ := h.Publish("key-a-123", "rtmp", "x", tracks)
	s.Close(nil)
	r := &recorder{}
	s.AddReader(r)
	if r.closed != 1 {
		t.Fatal("late reader not closed")
	}
}

func TestConcurrentPublishersOneWins(t *testing.T) {
	h := NewHub(slog.New(slog.DiscardHandler), []Channel{{Name: "a", StreamKey: "key-a-123"}})
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.Publish("key-a-123", "rtmp", "x", tracks); err == nil {
				mu.Lock()
				won++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d publishers won", won)
	}
}

// fakeKeys is a KeyResolver and ChannelLister over a map, that can fail.
type fakeKeys struct {
	mu     sync.Mutex
	keys   map[string]string // key → channel
	names  []string
	err    error
	listed int
}

func (f *fakeKeys) ChannelByKey(_ context.Context, key string) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", false, f.err
	}
	name, ok := f.keys[key]
	return name, ok, nil
}

func (f *fakeKeys) ChannelNames(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listed++
	if f.err != nil {
		return nil, f.err
	}
	return append([]string(nil), f.names...), nil
}

func (f *fakeKeys) set(fn func(f *fakeKeys)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func TestKeyResolver(t *testing.T) {
	var logs syncBuf
	h := NewHub(slog.New(slog.NewTextHandler(&logs, nil)), []Channel{{Name: "main", StreamKey: "config-key-main"}})
	keys := &fakeKeys{keys: map[string]string{"config-key-main": "main", "api-key-news": "news"}, names: []string{"main", "news"}}
	h.SetKeyResolver(keys)

	if ch, ok := h.Lookup("api-key-news"); !ok || ch.Name != "news" || ch.StreamKey != "" {
		t.Fatalf("lookup of a store key: %+v %v", ch, ok)
	}
	if _, ok := h.Lookup(""); ok {
		t.Fatal("empty key found")
	}
	s, err := h.Publish("api-key-news", "rtmp", "1.2.3.4:5", tracks)
	if err != nil || s.Channel != "news" {
		t.Fatalf("publish with a store key: %v", err)
	}
	// Rotation in the store: the old key stops at once for new
	// publications; the running one goes on.
	keys.set(func(f *fakeKeys) { delete(f.keys, "api-key-news"); f.keys["api-key-news-2"] = "news" })
	if _, err := h.Publish("api-key-news", "rtsp", "x", tracks); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old key after rotation: %v", err)
	}
	var busy *BusyError
	if _, err := h.Publish("api-key-news-2", "rtsp", "x", tracks); !errors.As(err, &busy) {
		t.Fatalf("new key while the old publication runs: %v", err)
	}
	s.Close(nil)
	if _, err := h.Publish("api-key-news-2", "rtsp", "x", tracks); err != nil {
		t.Fatalf("new key: %v", err)
	}
	// A key the store does not know is refused even if the config has
	// it: the store is the authority while it answers.
	keys.set(func(f *fakeKeys) { delete(f.keys, "config-key-main") })
	if _, ok := h.Lookup("config-key-main"); ok {
		t.Fatal("a key the store refused was taken from the config")
	}

	st := h.Status()
	if len(st) != 2 || st[0].Name != "news" || !st[0].Live || st[1].Name != "main" {
		t.Fatalf("status from the store: %+v", st)
	}
	h.Status()
	keys.mu.Lock()
	listed := keys.listed
	keys.mu.Unlock()
	if listed != 1 {
		t.Fatalf("the list was read %d times in 2 s, want 1", listed)
	}

	// The store is down: configured channels only, logged without the key.
	keys.set(func(f *fakeKeys) { f.err = errors.New("storage backend unavailable: connection refused") })
	if ch, ok := h.Lookup("config-key-main"); !ok || ch.Name != "main" {
		t.Fatalf("fallback to the config: %+v %v", ch, ok)
	}
	if _, ok := h.Lookup("api-key-news-2"); ok {
		t.Fatal("a store-only key opened a channel while the store is down")
	}
	if !strings.Contains(logs.String(), "stream key store unreachable") {
		t.Fatalf("fallback not logged:\n%s", logs.String())
	}
	h.mu.Lock()
	h.listedAt = time.Time{} // expire the cached list
	h.mu.Unlock()
	if st := h.Status(); len(st) != 2 || st[0].Name != "news" {
		t.Fatalf("status while the store is down (last known list): %+v", st)
	}
	for _, k := range []string{"config-key-main", "api-key-news", "api-key-news-2"} {
		if strings.Contains(logs.String(), k) {
			t.Fatalf("key %q was logged:\n%s", k, logs.String())
		}
	}

	// No resolver: the configured channels again.
	h.SetKeyResolver(nil)
	if st := h.Status(); len(st) != 2 || st[0].Name != "news" || st[1].Name != "main" {
		t.Fatalf("status without resolver (live channel listed too): %+v", st)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
