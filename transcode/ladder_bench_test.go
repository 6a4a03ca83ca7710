package transcode

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/media"
	"github.com/streamd/streamd/packager"
	"github.com/streamd/streamd/store/fsstore"
)

// BenchmarkLiveLadder measures streamd's own CPU on the live ladder path
// (MPEG-TS to ffmpeg, demuxing its three renditions, CMAF packaging into a
// folder store); ffmpeg's CPU is not counted. The 6 s clip is looped to a
// minute and fed as fast as the worker takes it. Profile with
//
//	go test -run XXX -bench LiveLadder -benchtime 1x -cpuprofile cpu.out ./transcode/
//	go tool pprof -top transcode.test cpu.out
//
// The reported own-ms/media-s is the process's user+sys CPU per second of
// media (the README's "streamd's own" share, without RTMP ingest), and
// ffmpeg-ms/media-s its ffmpeg's. BENCH_PRESET overrides the rungs' x264
// preset (ultrafast); BENCH_FEED_BATCH the feeder's batching (feedBatch).
func BenchmarkLiveLadder(b *testing.B) { benchLiveLadder(b, 10, false) }

// BenchmarkLiveLadderPaced feeds 30 s of media at the publisher's pace
// (real time), so the profile includes the wake-ups of a live run.
func BenchmarkLiveLadderPaced(b *testing.B) { benchLiveLadder(b, 5, true) }

func benchLiveLadder(b *testing.B, loops int, paced bool) {
	c := demuxFile(b, testenv.Testdata("h264_aac_720p.mp4"))
	src, err := SourceInfoFromTracks(c.tracks)
	if err != nil {
		b.Fatal(err)
	}
	if v := os.Getenv("BENCH_FEED_BATCH"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		defer func(old time.Duration) { feedBatch = old }(feedBatch)
		feedBatch = d
	}
	ladder := testLadder()
	if p := os.Getenv("BENCH_PRESET"); p != "" {
		for i := range ladder.Rungs {
			ladder.Rungs[i].Preset = p
		}
	}
	plan := Plan(ladder, src)
	rungs := Encoded(plan)

	// Loop the clip: each pass shifted by the clip's length (plus a frame).
	var period time.Duration
	for _, u := range c.units {
		period = max(period, u.DTS, u.PTS)
	}
	period += 40 * time.Millisecond
	units := make([]*media.Unit, 0, loops*len(c.units))
	for k := range loops {
		off := time.Duration(k) * period
		for _, u := range c.units {
			v := *u
			v.PTS += off
			v.DTS += off
			units = append(units, &v)
		}
	}
	mediaDur := time.Duration(loops) * period

	b.ResetTimer()
	var cpu, ffcpu time.Duration
	for range b.N {
		st, err := fsstore.New(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		p := packager.New(packager.Config{}, st, nil, nil)
		sinks := make([]Sink, len(rungs))
		for i, r := range rungs {
			sinks[i] = p.Rendition("main", r.Name)
		}
		c0, f0 := ownCPU(), childCPU()
		w, err := NewLiveWorker(LiveConfig{
			FFmpegPath: testenv.FFmpeg(b), Tracks: c.tracks, Plan: plan, Audio: testLadder().Audio,
			SegmentDuration: 2 * time.Second, Sinks: sinks, QueueSize: len(units) + 1,
		})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		for _, u := range units {
			if paced {
				time.Sleep(time.Until(t0.Add(u.DTS)))
			}
			w.WriteUnit(u)
		}
		w.Close()
		w.Wait()
		p.Close()
		cpu += ownCPU() - c0
		ffcpu += childCPU() - f0
		if d := w.Stats().Dropped; d > 0 {
			b.Fatalf("%d units dropped", d)
		}
	}
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N)/mediaDur.Seconds(), "own-ms/media-s")
	b.ReportMetric(float64(ffcpu.Milliseconds())/float64(b.N)/mediaDur.Seconds(), "ffmpeg-ms/media-s")
}

// childCPU is the user+sys CPU of the reaped children (ffmpeg).
func childCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ownCPU is this process's user+sys CPU (reaped children excluded).
func ownCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
