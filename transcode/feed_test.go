package transcode

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/streamd/streamd/media"
)

// chanWriter reports every write to ffmpeg's input.
type chanWriter chan int

func (c chanWriter) Write(p []byte) (int, error) { c <- len(p); return len(p), nil }

// startFeeder runs a worker's feeder against a muxer writing to the
// returned channel, without ffmpeg.
func startFeeder(t *testing.T, batch time.Duration) (*LiveWorker, chanWriter, chan struct{}) {
	t.Helper()
	old := feedBatch
	feedBatch = batch
	video := &media.Track{Codec: &media.H264{}}
	out := make(chanWriter, 100)
	mux, err := newTSMuxer(out, video, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &LiveWorker{log: slog.New(slog.DiscardHandler), video: video, queue: make(chan *media.Unit, 16)}
	w.cur = &run{mux: mux}
	done := make(chan struct{})
	go func() { defer close(done); w.feed(context.Background()) }()
	t.Cleanup(func() {
		<-done
		feedBatch = old
	})
	return w, out, done
}

func feedUnit(w *LiveWorker, pts time.Duration, key bool) {
	nalu := []byte{0x41, 1, 2, 3}
	if key {
		nalu = []byte{0x65, 1, 2, 3}
	}
	w.queue <- &media.Unit{Track: w.video, PTS: pts, DTS: pts, RandomAccess: key, Payload: [][]byte{nalu}}
}

func expectWrite(t *testing.T, out chanWriter, what string) {
	t.Helper()
	select {
	case <-out:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: nothing written to ffmpeg", what)
	}
}

func expectNoWrite(t *testing.T, out chanWriter, what string) {
	t.Helper()
	select {
	case n := <-out:
		t.Fatalf("%s: %d bytes written to ffmpeg before the batch ended", what, n)
	case <-time.After(100 * time.Millisecond):
	}
}

// Keyframes go to ffmpeg at once, pictures between them wait for the
// batch, and the end of the input writes what is left.
func TestFeedBatchesBetweenKeyframes(t *testing.T) {
	w, out, done := startFeeder(t, time.Hour)
	feedUnit(w, 0, true)
	expectWrite(t, out, "first keyframe")
	feedUnit(w, 33*time.Millisecond, false)
	feedUnit(w, 66*time.Millisecond, false)
	expectNoWrite(t, out, "pictures after the keyframe")
	feedUnit(w, 100*time.Millisecond, true)
	expectWrite(t, out, "next keyframe")
	feedUnit(w, 133*time.Millisecond, false)
	expectNoWrite(t, out, "picture after the second keyframe")
	close(w.queue)
	expectWrite(t, out, "end of input")
	<-done
}

// Pictures between keyframes wait at most feedBatch.
func TestFeedBatchTimeout(t *testing.T) {
	w, out, _ := startFeeder(t, 50*time.Millisecond)
	feedUnit(w, 0, true)
	expectWrite(t, out, "first keyframe")
	feedUnit(w, 33*time.Millisecond, false)
	expectWrite(t, out, "picture after the batch time")
	close(w.queue)
}

// With no batching every unit is written as it comes.
func TestFeedUnbatched(t *testing.T) {
	w, out, _ := startFeeder(t, 0)
	feedUnit(w, 0, true)
	expectWrite(t, out, "keyframe")
	feedUnit(w, 33*time.Millisecond, false)
	expectWrite(t, out, "picture")
	close(w.queue)
}
