package transcode

import (
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/media"
)

// testLadder is cheap enough for two shared cores.
func testLadder() Ladder {
	r := func(name string, h int, br string) Rung {
		return Rung{Name: name, Width: h * 16 / 9, Height: h, VideoBitrate: br, Profile: "main", Preset: "ultrafast"}
	}
	return Ladder{Name: "test", Rungs: []Rung{r("480p", 480, "400k"), r("360p", 360, "250k"), r("240p", 240, "150k")},
		Audio: Audio{Bitrate: "64k", SampleRate: 48000, Channels: 2}}
}

func newWorker(t *testing.T, c clip, plan []PlannedRung, tweak func(*LiveConfig)) (*LiveWorker, []*recSink) {
	t.Helper()
	n := len(Encoded(plan))
	recs := make([]*recSink, n)
	sinks := make([]Sink, n)
	for i := range recs {
		recs[i] = &recSink{}
		sinks[i] = recs[i]
	}
	cfg := LiveConfig{
		FFmpegPath: testenv.FFmpeg(t), Tracks: c.tracks, Plan: plan, Audio: testLadder().Audio,
		SegmentDuration: 2 * time.Second, Sinks: sinks, Log: testLog(t),
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, KillGrace: 2 * time.Second,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	w, err := NewLiveWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(); w.Wait() })
	return w, recs
}

func checkNoFFmpegLeft(t *testing.T) {
	t.Helper()
	// Poll briefly: the reaper goroutine may still be finishing.
	var live, zombies []int
	deadline := time.Now().Add(2 * time.Second)
	for {
		live, zombies = ffmpegChildren(t)
		if len(live)+len(zombies) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(live) > 0 || len(zombies) > 0 {
		t.Fatalf("after Close: ffmpeg children %v, zombies %v", live, zombies)
	}
}

func TestLiveWorkerLadder(t *testing.T) {
	c := demuxFile(t, testenv.Testdata("h264_aac_720p.mp4"))
	src, err := SourceInfoFromTracks(c.tracks)
	if err != nil {
		t.Fatal(err)
	}
	if src.Width != 1280 || src.Height != 720 || src.FPS != 30 {
		t.Fatalf("source info %+v", src)
	}
	plan := Plan(testLadder(), src)
	var reports atomic.Int64
	var last atomic.Value
	w, recs := newWorker(t, c, plan, func(cfg *LiveConfig) {
		cfg.OnProgress = func(p Progress) { reports.Add(1); last.Store(p) }
		// All 6 s of input arrive at once; Close lets ffmpeg drain for
		// KillGrace, and three encodes on a loaded 2-core machine take
		// longer than the default 2 s (it then exits 255, cut short).
		cfg.KillGrace = 20 * time.Second
	})
	for _, u := range c.units {
		u.Received = time.Now()
		w.WriteUnit(u)
	}
	w.Close()
	w.Wait()
	checkNoFFmpegLeft(t)

	if st := w.Stats(); st.Dropped != 0 || st.Restarts != 0 || st.LastError != "" {
		t.Errorf("stats %+v: want no drops and no restarts", st)
	}
	// -progress reached us, ending with progress=end after ~6 s of output.
	if p, _ := last.Load().(Progress); reports.Load() == 0 || !p.End || p.Frame < 170 || p.OutTime < 5*time.Second {
		t.Errorf("%d progress reports, last %+v", reports.Load(), p)
	}
	want := [][2]int{{854, 480}, {640, 360}, {426, 240}}
	var keys0 []time.Duration
	for i, s := range recs {
		if len(s.starts) != 1 || s.starts[0] {
			t.Fatalf("rendition %d: starts %v, want one fresh start", i, s.starts)
		}
		if !s.closed || s.closeCnt != 1 {
			t.Errorf("rendition %d: closed %v (%d times)", i, s.closed, s.closeCnt)
		}
		tracks := s.tracks[0]
		if len(tracks) != 2 || tracks[1].Codec.Name() != "aac" {
			t.Fatalf("rendition %d tracks: %v", i, tracks)
		}
		if a := tracks[1].Codec.(*media.AAC); a.SampleRate != 48000 || a.Channels != 2 {
			t.Errorf("rendition %d audio %+v", i, a)
		}
		if w, h := spsSize(t, tracks[0]); w != want[i][0] || h != want[i][1] {
			t.Errorf("rendition %d: %dx%d, want %dx%d", i, w, h, want[i][0], want[i][1])
		}
		// 6 s at 30 fps; ffmpeg may duplicate a frame or two at the edges.
		if v := s.count(0, true); v < 170 || v > 185 {
			t.Errorf("rendition %d: %d pictures, want ~180", i, v)
		}
		if a := s.count(0, false); a < 250 {
			t.Errorf("rendition %d: %d AAC frames, want ~280", i, a)
		}
		keys := s.keyframes(0)
		t.Logf("rendition %d keyframes %v", i, keys)
		if i == 0 {
			keys0 = keys
			// Forced every 2 s from the first picture: 0, 2, 4 s (6 s
			// is the end of the clip).
			if len(keys) < 3 {
				t.Fatalf("keyframes %v: want one every 2 s", keys)
			}
			for k := 1; k < len(keys); k++ {
				if d := keys[k] - keys[k-1]; d < 1990*time.Millisecond || d > 2010*time.Millisecond {
					t.Errorf("keyframes %v not 2 s apart", keys)
				}
			}
			// On the publication's timeline: the first keyframe is the
			// source's first picture.
			if first := c.units[0].PTS; keys[0]-first > 50*time.Millisecond || first-keys[0] > 50*time.Millisecond {
				t.Errorf("first keyframe at %v, source starts at %v", keys[0], first)
			}
		} else if !slices.Equal(keys, keys0) {
			t.Errorf("rendition %d keyframes %v != rendition 0's %v", i, keys, keys0)
		}
		// PTS ordering of video by DTS, and audio monotonic.
		var lastA time.Duration = -1
		for _, u := range s.units {
			if !u.Track.Codec.IsVideo() {
				if u.PTS <= lastA {
					t.Fatalf("rendition %d: audio PTS goes back %v → %v", i, lastA, u.PTS)
				}
				lastA = u.PTS
			}
		}
	}
}

// loopUnits yields the clip's units forever (timestamps shifted by the
// clip's length each loop), paced at speed × real time, until stop.
func loopUnits(c clip, speed float64, stop <-chan struct{}, fn func(*media.Unit)) {
	length := 6 * time.Second
	start := time.Now()
	for loop := 0; ; loop++ {
		for _, u := range c.units {
			v := *u
			off := time.Duration(loop) * length
			v.PTS += off
			v.DTS += off
			at := start.Add(time.Duration(float64(v.DTS) / speed))
			select {
			case <-stop:
				return
			case <-time.After(time.Until(at)):
			}
			v.Received = time.Now()
			fn(&v)
		}
	}
}

func TestLiveWorkerRestartsAfterKill(t *testing.T) {
	c := demuxFile(t, testenv.Testdata("h264_aac_720p.mp4"))
	src, _ := SourceInfoFromTracks(c.tracks)
	plan := Plan(testLadder(), src)
	w, recs := newWorker(t, c, plan, nil)
	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		loopUnits(c, 2, stop, w.WriteUnit)
	}()
	defer func() { close(stop); <-fed }()

	waitFor(t, "units from the first run", 30*time.Second, func() bool {
		for _, s := range recs {
			if s.count(0, true) < 30 {
				return false
			}
		}
		return true
	})
	pid := w.Pid()
	if pid == 0 {
		t.Fatal("no ffmpeg running")
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "units after the restart", 30*time.Second, func() bool {
		for _, s := range recs {
			if s.numStarts() < 2 || s.count(1, true) < 30 || s.count(1, false) < 30 {
				return false
			}
		}
		return true
	})
	for i, s := range recs {
		s.mu.Lock()
		starts := slices.Clone(s.starts)
		s.mu.Unlock()
		if starts[0] || !starts[1] {
			t.Errorf("rendition %d: restarted flags %v, want [false true …]", i, starts)
		}
		// The new run continues the publication's timeline, after the old.
		k0, k1 := s.keyframes(0), s.keyframes(1)
		if len(k1) == 0 || k1[0] <= k0[len(k0)-1] {
			t.Errorf("rendition %d: run 2 keyframes %v do not follow run 1's %v", i, k1, k0)
		}
		// Still aligned across renditions (compare what both have so far).
		if r0 := recs[0].keyframes(1); i > 0 {
			n := min(len(k1), len(r0))
			if !slices.Equal(k1[:n], r0[:n]) {
				t.Errorf("rendition %d: run 2 keyframes %v not aligned with rendition 0's %v", i, k1, r0)
			}
		}
	}
	st := w.Stats()
	if st.Restarts < 1 || !strings.Contains(st.LastError, "signal killed") {
		t.Errorf("stats %+v: want a restart after a kill", st)
	}
	if newPid := w.Pid(); newPid == pid || newPid == 0 {
		t.Errorf("pid %d after restart (was %d)", newPid, pid)
	}
	w.Close()
	w.Wait()
	checkNoFFmpegLeft(t)
	for i, s := range recs {
		if !s.closed {
			t.Errorf("rendition %d not closed", i)
		}
	}
}

func TestLiveWorkerPortrait(t *testing.T) {
	ff := testenv.FFmpeg(t)
	out, err := exec.Command(ff, "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=360x640:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "64k", "-f", "mpegts", "-").Output()
	if err != nil {
		t.Fatal(err)
	}
	c := demuxTS(t, out)
	src, err := SourceInfoFromTracks(c.tracks)
	if err != nil {
		t.Fatal(err)
	}
	plan := Plan(testLadder(), src)
	// 480p is taller than the 360-wide source: dropped, never upscaled.
	if len(plan) != 2 {
		t.Fatalf("plan %+v: want 360p and 240p", plan)
	}
	w, recs := newWorker(t, c, plan, nil)
	for _, u := range c.units {
		w.WriteUnit(u)
	}
	w.Close()
	w.Wait()
	want := [][2]int{{360, 640}, {240, 426}}
	for i, s := range recs {
		if len(s.tracks) == 0 {
			t.Fatalf("rendition %d never started", i)
		}
		if w, h := spsSize(t, s.tracks[0][0]); w != want[i][0] || h != want[i][1] {
			t.Errorf("rendition %d: %dx%d, want portrait %dx%d", i, w, h, want[i][0], want[i][1])
		}
		if s.count(0, true) < 50 {
			t.Errorf("rendition %d: %d pictures", i, s.count(0, true))
		}
	}
}

func TestLiveWorkerMissingFFmpeg(t *testing.T) {
	c := clip{tracks: []*media.Track{{Codec: &media.H264{}}}}
	plan := Plan(testLadder(), SourceInfo{Width: 1280, Height: 720, FPS: 30})
	_, err := NewLiveWorker(LiveConfig{FFmpegPath: "/nonexistent/ffmpeg", Tracks: c.tracks, Plan: plan,
		Sinks: []Sink{&recSink{}, &recSink{}, &recSink{}}})
	if err == nil || !strings.Contains(err.Error(), "ffmpeg not found: install it or set transcode.ffmpeg_path") {
		t.Fatalf("err = %v", err)
	}
}

func TestLiveWorkerNeverBlocksPublisher(t *testing.T) {
	c := demuxFile(t, testenv.Testdata("h264_aac_720p.mp4"))
	src, _ := SourceInfoFromTracks(c.tracks)
	plan := Plan(testLadder(), src)[2:] // one cheap rung
	w, _ := newWorker(t, c, plan, func(cfg *LiveConfig) { cfg.QueueSize = 8 })
	start := time.Now()
	for range 3 {
		for _, u := range c.units {
			w.WriteUnit(u)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("writing %d units took %v: the publisher was blocked", 3*len(c.units), d)
	}
	if w.Stats().Dropped == 0 {
		t.Error("a full queue dropped nothing")
	}
	w.Close()
	w.Wait()
}
