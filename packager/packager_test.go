package packager

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/media"
	"github.com/streamd/streamd/store"
)

func parseFloat(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return f
}

func TestH264AAC720p(t *testing.T) {
	c := demux(t, "h264_aac_720p.mp4")
	e := newEnv(t, Config{})
	e.publish(c)
	e.p.Close()

	// The expected codec string comes from what ffprobe says of the source.
	src := probe(t, testenv.Testdata("h264_aac_720p.mp4"))
	var srcVideo probeStream
	for _, s := range src.Streams {
		if s.CodecType == "video" {
			srcVideo = s
		}
	}
	if srcVideo.Profile != "High" || srcVideo.Level != 31 {
		t.Fatalf("source is %s@%d, test expects High@3.1", srcVideo.Profile, srcVideo.Level)
	}

	mv, rawMaster := e.master()
	v := mv.Variants[0]
	if got := strings.Join(v.Codecs, ","); got != "avc1.64001f,mp4a.40.2" {
		t.Errorf("CODECS = %s", got)
	}
	if v.Resolution != "1280x720" {
		t.Errorf("RESOLUTION = %s", v.Resolution)
	}
	if v.FrameRate == nil || *v.FrameRate != 30 || !strings.Contains(rawMaster, "FRAME-RATE=30.000") {
		t.Errorf("FRAME-RATE wrong:\n%s", rawMaster)
	}
	if v.URI != "source/index.m3u8" || v.AverageBandwidth == nil || v.Bandwidth < *v.AverageBandwidth || v.Bandwidth < 300_000 {
		t.Errorf("variant: %+v\n%s", v, rawMaster)
	}
	for _, tag := range []string{"#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"} {
		if !strings.Contains(rawMaster, tag) {
			t.Errorf("master lacks %s", tag)
		}
	}

	m, raw := e.media()
	t.Logf("media playlist:\n%s", raw)
	if !m.Endlist || m.Version != 7 || m.TargetDuration != 2 || m.MediaSequence != 0 || m.Map == nil {
		t.Fatalf("playlist header wrong:\n%s", raw)
	}
	if len(m.Segments) != 3 {
		t.Fatalf("%d segments, want 3", len(m.Segments))
	}
	var prev time.Time
	for i, s := range m.Segments {
		if s.Duration < 1990*time.Millisecond || s.Duration > 2010*time.Millisecond {
			t.Errorf("segment %d lasts %v", i, s.Duration)
		}
		if s.DateTime == nil {
			t.Fatalf("segment %d has no PROGRAM-DATE-TIME", i)
		}
		if i > 0 && s.DateTime.Sub(prev) != m.Segments[i-1].Duration {
			t.Errorf("PROGRAM-DATE-TIME step %v != previous EXTINF %v", s.DateTime.Sub(prev), m.Segments[i-1].Duration)
		}
		prev = *s.DateTime
		// Every segment opens with a keyframe on the video track.
		var parts fmp4.Parts
		if err := parts.Unmarshal(e.read("live/main/source/" + s.URI)); err != nil {
			t.Fatal(err)
		}
		if len(parts) != 1 || len(parts[0].Tracks) != 2 {
			t.Fatalf("segment %d: want one fragment with 2 trafs", i)
		}
		if parts[0].Tracks[0].Samples[0].IsNonSyncSample {
			t.Errorf("segment %d does not start with a keyframe", i)
		}
	}

	res := probe(t, e.concat(m))
	var sawAudio bool
	for _, s := range res.Streams {
		switch s.CodecType {
		case "video":
			if s.NbReadFrames != "180" {
				t.Errorf("decoded %s video frames, want 180", s.NbReadFrames)
			}
		case "audio":
			sawAudio = true
			if n, _ := strconv.Atoi(s.NbReadFrames); n < 275 {
				t.Errorf("decoded %d audio frames", n)
			}
		}
	}
	if !sawAudio {
		t.Error("no audio stream in the segments")
	}
	// Without edit lists the streams keep their decode delay and AAC
	// priming, so compare lengths, not end times.
	for _, st := range res.Streams {
		d := parseFloat(t, st.Duration)
		switch st.CodecType {
		case "video":
			if math.Abs(d-6) > 1.0/30 {
				t.Errorf("video lasts %.3f s, source 6 s", d)
			}
		case "audio":
			if math.Abs(d-6) > 0.1 {
				t.Errorf("audio ends at %.3f s, source 6 s", d)
			}
		}
	}

	st, _ := e.p.Stats(testChannel)
	if st.SegmentsWritten != 3 || st.Errors != 0 || st.DroppedUnits != 0 || !st.Ended {
		t.Errorf("stats %+v", st)
	}
}

func TestHEVCOpus(t *testing.T) {
	c := demux(t, "hevc_opus_360p.mkv")
	e := newEnv(t, Config{})
	e.publish(c)
	e.p.Close()

	mv, raw := e.master()
	codecs := mv.Variants[0].Codecs
	if len(codecs) != 2 || !strings.HasPrefix(codecs[0], "hvc1.1.") || codecs[1] != "opus" {
		t.Errorf("CODECS = %v\n%s", codecs, raw)
	}
	if mv.Variants[0].Resolution != "640x360" {
		t.Errorf("RESOLUTION = %s", mv.Variants[0].Resolution)
	}
	m, _ := e.media()
	if len(m.Segments) != 2 {
		t.Fatalf("%d segments", len(m.Segments))
	}
	res := probe(t, e.concat(m))
	var kinds []string
	for _, s := range res.Streams {
		kinds = append(kinds, s.CodecName)
		if s.CodecType == "video" && s.NbReadFrames != "120" {
			t.Errorf("decoded %s video frames, want 120", s.NbReadFrames)
		}
		if s.CodecType == "audio" {
			if n, _ := strconv.Atoi(s.NbReadFrames); n < 190 {
				t.Errorf("decoded %d opus packets", n)
			}
		}
	}
	if strings.Join(kinds, ",") != "hevc,opus" {
		t.Errorf("streams %v", kinds)
	}
}

func TestAudioOnly(t *testing.T) {
	c := demux(t, "h264_aac_360p.mp4", "-vn")
	e := newEnv(t, Config{})
	e.publish(c)
	e.p.Close()
	mv, raw := e.master()
	if v := mv.Variants[0]; strings.Join(v.Codecs, ",") != "mp4a.40.2" || v.Resolution != "" || v.FrameRate != nil {
		t.Errorf("master:\n%s", raw)
	}
	m, pl := e.media()
	// The clip's 4.04 s of audio cut on the 2 s grid, each cut at the AAC
	// frame nearest its boundary (1024 samples at 44.1 kHz: 23.2 ms).
	if len(m.Segments) != 3 {
		t.Fatalf("segments:\n%s", pl)
	}
	for i, sg := range m.Segments[:2] {
		if d := sg.Duration; d < 1988*time.Millisecond || d > 2012*time.Millisecond {
			t.Errorf("segment %d: %v", i, d)
		}
	}
	res := probe(t, e.concat(m))
	if len(res.Streams) != 1 || res.Streams[0].CodecType != "audio" {
		t.Fatalf("streams %+v", res.Streams)
	}
	if d := parseFloat(t, res.Format.Duration); math.Abs(d-4) > 0.05 {
		t.Errorf("duration %.3f", d)
	}
}

func TestVideoOnly(t *testing.T) {
	c := demux(t, "h264_aac_360p.mp4", "-an")
	e := newEnv(t, Config{})
	e.publish(c)
	e.p.Close()
	mv, raw := e.master()
	if v := mv.Variants[0]; strings.Join(v.Codecs, ",") != "avc1.4d401e" || v.Resolution != "640x360" {
		t.Errorf("master:\n%s", raw)
	}
	m, _ := e.media()
	res := probe(t, e.concat(m))
	if len(res.Streams) != 1 || res.Streams[0].NbReadFrames != "120" {
		t.Fatalf("streams %+v", res.Streams)
	}
}

func TestReconnectWithinGraceThenEndlist(t *testing.T) {
	c := demux(t, "h264_aac_360p.mp4")
	e := newEnv(t, Config{EndGrace: 400 * time.Millisecond})
	e.publish(c)
	e.publish(c) // back well within the grace period
	waitFor(t, "ENDLIST", 5*time.Second, func() bool {
		st, _ := e.p.Stats(testChannel)
		return st.Ended
	})
	m, raw := e.media()
	t.Logf("\n%s", raw)
	if len(m.Segments) != 4 || !m.Endlist {
		t.Fatalf("want 4 segments and ENDLIST:\n%s", raw)
	}
	if strings.Count(raw, "#EXT-X-ENDLIST") != 1 || strings.Count(raw, "#EXT-X-MAP:") != 2 || strings.Count(raw, "#EXT-X-DISCONTINUITY\n") != 1 {
		t.Fatalf("want one ENDLIST, two MAPs, one DISCONTINUITY:\n%s", raw)
	}
	if !m.Segments[2].Discontinuity || m.Segments[1].Discontinuity {
		t.Errorf("discontinuity must sit before the second publication's first segment")
	}
	run1 := strings.SplitN(m.Segments[0].URI, "-", 2)[0]
	run2 := strings.SplitN(m.Segments[2].URI, "-", 2)[0]
	if run1 == run2 {
		t.Error("second publication reused the run id")
	}
	// Object names count per run; the media sequence continues.
	for i, s := range m.Segments {
		if !strings.HasSuffix(s.URI, "-"+strconv.Itoa(i%2)+".m4s") {
			t.Errorf("segment %d is %s", i, s.URI)
		}
	}
	if m.MediaSequence != 0 {
		t.Errorf("MEDIA-SEQUENCE %d", m.MediaSequence)
	}
	// The MAP before the DISCONTINUITY names run 1's init, the one after it run 2's.
	if i1, i2 := strings.Index(raw, "init-"+run1), strings.Index(raw, "init-"+run2); i1 < 0 || i2 < 0 || i2 < strings.Index(raw, "#EXT-X-DISCONTINUITY\n") {
		t.Errorf("MAPs out of place")
	}

	// Published again after ENDLIST: the playlist continues.
	e.publish(c)
	waitFor(t, "second ENDLIST", 5*time.Second, func() bool {
		st, _ := e.p.Stats(testChannel)
		return st.Ended && st.SegmentsWritten == 6
	})
	m, raw = e.media()
	if len(m.Segments) != 6 || !m.Segments[4].Discontinuity || strings.Count(raw, "#EXT-X-ENDLIST") != 1 {
		t.Fatalf("after republish:\n%s", raw)
	}
}

func TestWindowSlidesAndOldSegmentsGo(t *testing.T) {
	c := demux(t, "h264_aac_360p.mp4")
	e := newEnv(t, Config{PlaylistSegments: 2, EndGrace: time.Minute})
	for range 4 {
		e.publish(c)
	}
	e.p.Close()
	m, raw := e.media()
	t.Logf("\n%s", raw)
	// 8 segments (0..7), window of 2: 6..7. Discontinuities were before
	// segments 2, 4 and 6; 2 and 4 left the window.
	if m.MediaSequence != 6 || len(m.Segments) != 2 || m.DiscontinuitySequence == nil || *m.DiscontinuitySequence != 2 {
		t.Fatalf("window wrong:\n%s", raw)
	}
	if !m.Segments[0].Discontinuity {
		t.Error("the window's first segment lost its DISCONTINUITY tag")
	}
	var segs, inits []string
	for _, k := range e.keys() {
		switch {
		case strings.HasSuffix(k, ".m4s"):
			segs = append(segs, k[strings.LastIndex(k, "/")+1:])
		case strings.Contains(k, "/init-"):
			inits = append(inits, k)
		}
	}
	// Another window's worth (4, 5: the third publication's) is kept for
	// slow players; 0..3 are gone, and with them the inits of the first two
	// publications.
	if len(segs) != 4 || !strings.HasPrefix(segs[2], strings.SplitN(m.Segments[0].URI, "-", 2)[0]) {
		t.Errorf("stored segments: %v (want the last two publications' segments)", segs)
	}
	if len(inits) != 2 {
		t.Errorf("stored inits: %v", inits)
	}
}

func TestCleansUpEarlierProcess(t *testing.T) {
	old := []string{"live/main/source/init-old.mp4", "live/main/source/old-7.m4s", "live/main/stale.txt"}
	other := "live/mainly/source/old-1.m4s"
	e := newEnv(t, Config{}, func(e *env) {
		for _, k := range append(old, other) {
			if err := e.store.Put(context.Background(), k, bytes.NewReader([]byte("x")), 1, ""); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(e.dir, filepath.FromSlash(k))
			an := time.Now().Add(-time.Hour)
			if err := os.Chtimes(p, an, an); err != nil {
				t.Fatal(err)
			}
		}
	})
	e.publish(demux(t, "h264_aac_360p.mp4"))
	e.p.Close()
	keys := strings.Join(e.keys(), " ")
	for _, k := range old {
		if strings.Contains(keys, k) {
			t.Errorf("%s of an earlier run survived", k)
		}
	}
	if !strings.Contains(keys, other) {
		t.Error("another channel's object was deleted")
	}
}

// flakyStore is the real folder store with the first failures Puts of
// keys ending in failSuffix failing: fault injection for the error path.
type flakyStore struct {
	store.Objects
	failSuffix string
	mu         sync.Mutex
	failures   int
}

func (f *flakyStore) Put(ctx context.Context, key string, r io.Reader, size int64, ct string) error {
	f.mu.Lock()
	fail := strings.HasSuffix(key, f.failSuffix) && f.failures > 0
	if fail {
		f.failures--
	}
	f.mu.Unlock()
	if fail {
		return errors.New("injected failure")
	}
	return f.Objects.Put(ctx, key, r, size, ct)
}

func TestStoreFailureLeavesSegmentOut(t *testing.T) {
	c := demux(t, "h264_aac_720p.mp4")
	e := newEnv(t, Config{}, func(e *env) {
		// The second segment can never be stored: the writer retries it
		// until Close, then gives up; the one after it is stored under
		// the same media sequence number.
		e.objs = &flakyStore{Objects: e.store, failSuffix: "-1.m4s", failures: 1 << 30}
	})
	e.publish(c)
	e.p.Close()
	m, raw := e.media()
	t.Logf("\n%s", raw)
	if len(m.Segments) != 2 || m.Segments[0].Discontinuity || !m.Segments[1].Discontinuity {
		t.Fatalf("want the failed segment left out behind a discontinuity:\n%s", raw)
	}
	if m.Segments[0].DateTime.Add(4*time.Second) != *m.Segments[1].DateTime {
		t.Errorf("the segment after the gap must keep its own time")
	}
	for _, s := range m.Segments {
		if _, err := os.Stat(filepath.Join(e.dir, "live/main/source", s.URI)); err != nil {
			t.Errorf("playlist names a missing object: %v", err)
		}
	}
	if st, _ := e.p.Stats(testChannel); st.Errors != 1 || st.SegmentsWritten != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestStoreOutageLeavesNoHole: the store refuses every write for a while
// (MinIO down); segments wait and are all stored, in order, without a
// discontinuity, once it answers again.
func TestStoreOutageLeavesNoHole(t *testing.T) {
	c := demux(t, "h264_aac_720p.mp4")
	fs := &flakyStore{failSuffix: "", failures: 7} // ~ 5 s of refusals with back-off
	e := newEnv(t, Config{}, func(e *env) {
		fs.Objects = e.store
		e.objs = fs
	})
	e.publish(c)
	waitFor(t, "ENDLIST after the outage", 30*time.Second, func() bool {
		st, _ := e.p.Stats(testChannel)
		return st.Ended
	})
	m, raw := e.media()
	if len(m.Segments) != 3 {
		t.Fatalf("want all 3 segments:\n%s", raw)
	}
	for _, s := range m.Segments {
		if s.Discontinuity {
			t.Fatalf("outage left a discontinuity:\n%s", raw)
		}
	}
	if st, _ := e.p.Stats(testChannel); st.Errors != 0 {
		t.Errorf("an outage that ended is not an error: %+v", st)
	}
}

func TestFirstPlaylistLatency(t *testing.T) {
	c := demux(t, "h264_aac_360p.mp4")
	reg := prometheus.NewRegistry()
	e := newEnv(t, Config{}, func(e *env) { e.reg = reg })

	s, err := e.hub.Publish("key", "test", "127.0.0.1", c.tracks)
	if err != nil {
		t.Fatal(err)
	}
	// Real time: each unit is sent when its DTS comes due.
	start := time.Now()
	for _, u := range c.units {
		if st, _ := e.p.Stats(testChannel); st.SegmentsWritten > 0 {
			break
		}
		if d := time.Until(start.Add(u.DTS)); d > 0 {
			time.Sleep(d)
		}
		u.Received = time.Now()
		s.WriteUnit(u)
	}
	waitFor(t, "first playlist", 3*time.Second, func() bool {
		st, _ := e.p.Stats(testChannel)
		return st.SegmentsWritten > 0
	})
	s.Close(nil)
	st, _ := e.p.Stats(testChannel)
	t.Logf("first playlist after %v, publish delay %v", st.FirstPlaylistDelay, st.LastPublishDelay)
	if st.FirstPlaylistDelay < 1900*time.Millisecond || st.FirstPlaylistDelay > 2150*time.Millisecond {
		t.Errorf("first playlist after %v, want ~2.0-2.1 s", st.FirstPlaylistDelay)
	}
	if st.LastPublishDelay > 100*time.Millisecond {
		t.Errorf("publish delay %v", st.LastPublishDelay)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, mf := range mfs {
		seen[mf.GetName()] = true
	}
	for _, n := range []string{"streamd_segment_publish_delay_seconds", "streamd_first_playlist_seconds", "streamd_segments_written_total"} {
		if !seen[n] {
			t.Errorf("metric %s not exported", n)
		}
	}
}

// gatedStore holds every Put until the gate opens: a stalled store.
type gatedStore struct {
	store.Objects
	gate chan struct{}
}

func (g *gatedStore) Put(ctx context.Context, key string, r io.Reader, size int64, ct string) error {
	<-g.gate
	return g.Objects.Put(ctx, key, r, size, ct)
}

func TestStalledStoreNeitherBlocksPublisherNorGrows(t *testing.T) {
	gs := &gatedStore{gate: make(chan struct{})}
	e := newEnv(t, Config{SegmentDuration: time.Millisecond, PlaylistSegments: 3}, func(e *env) {
		gs.Objects = e.store
		e.objs = gs
	})
	tr := &media.Track{Codec: &media.H264{SPS: testSPS, PPS: testPPS}}
	s, err := e.hub.Publish("key", "test", "127.0.0.1", []*media.Track{tr})
	if err != nil {
		t.Fatal(err)
	}
	// Every picture is a keyframe, so every unit closes a segment: far
	// more than the queue holds, all while the store does not answer.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			d := time.Duration(i) * time.Second / 30
			s.WriteUnit(&media.Unit{Track: tr, DTS: d, PTS: d, RandomAccess: true, Payload: [][]byte{{0x65, byte(i)}}, Received: time.Now()})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("WriteUnit blocked on the stalled store")
	}
	close(gs.gate)
	s.Close(nil)
	e.p.Close()
	st, _ := e.p.Stats(testChannel)
	if st.Errors < 100 || st.SegmentsWritten+st.Errors != 200 {
		t.Errorf("stats %+v: want the overflow dropped and counted", st)
	}
	m, raw := e.media()
	if !m.Endlist || !strings.Contains(raw, "#EXT-X-DISCONTINUITY") {
		t.Errorf("playlist after drops:\n%s", raw)
	}
}

// concurrencyStore counts Puts of segment objects in flight, holding each
// a little so overlaps show.
type concurrencyStore struct {
	store.Objects
	mu        sync.Mutex
	cur, peak int
}

func (c *concurrencyStore) Put(ctx context.Context, key string, r io.Reader, size int64, ct string) error {
	if strings.HasSuffix(key, ".m4s") {
		c.mu.Lock()
		c.cur++
		c.peak = max(c.peak, c.cur)
		c.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		defer func() { c.mu.Lock(); c.cur--; c.mu.Unlock() }()
	}
	return c.Objects.Put(ctx, key, r, size, ct)
}

// TestBacklogUploadsConcurrently: segments that queued up behind a stalled
// store are uploaded several at once (bounded), then listed in order.
func TestBacklogUploadsConcurrently(t *testing.T) {
	c := demux(t, "h264_aac_720p.mp4")
	gs := &gatedStore{gate: make(chan struct{})}
	cs := &concurrencyStore{}
	e := newEnv(t, Config{SegmentDuration: 500 * time.Millisecond, PlaylistSegments: 50}, func(e *env) {
		cs.Objects = e.store
		gs.Objects = cs
		e.objs = gs
	})
	e.publish(c) // the first segment's init Put holds the writer; the rest queue up
	close(gs.gate)
	waitFor(t, "ENDLIST", 20*time.Second, func() bool {
		st, _ := e.p.Stats(testChannel)
		return st.Ended
	})
	m, raw := e.media()
	if len(m.Segments) < 3 {
		t.Fatalf("segments missing:\n%s", raw)
	}
	for _, s := range m.Segments {
		if s.Discontinuity {
			t.Fatalf("unexpected discontinuity:\n%s", raw)
		}
	}
	if cs.peak < 2 || cs.peak > uploadBatch {
		t.Errorf("peak concurrent segment uploads %d, want 2..%d", cs.peak, uploadBatch)
	}
}
