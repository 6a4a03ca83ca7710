package live

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

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
