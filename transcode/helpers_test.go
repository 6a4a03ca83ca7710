package transcode

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"

	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/media"
)

// clip is a demuxed clip: what an ingest server would publish.
type clip struct {
	tracks []*media.Track
	units  []*media.Unit
}

// demuxTS reads H.264/AAC MPEG-TS into media units, the way
// packager/helpers_test.go does.
func demuxTS(t testing.TB, ts []byte) clip {
	t.Helper()
	r := &mpegts.Reader{R: bytes.NewReader(ts)}
	if err := r.Initialize(); err != nil {
		t.Fatal(err)
	}
	var c clip
	var base int64
	haveBase := false
	conv := func(v int64) time.Duration {
		if !haveBase {
			base, haveBase = v, true
		}
		return time.Duration(v-base) * time.Second / 90000
	}
	for _, tr := range r.Tracks() {
		switch codec := tr.Codec.(type) {
		case *mpegts.CodecH264:
			p := &media.H264{}
			mt := &media.Track{ID: len(c.tracks), Codec: p}
			c.tracks = append(c.tracks, mt)
			r.OnDataH264(tr, func(pts, dts int64, au [][]byte) error {
				for _, n := range au {
					switch h264.NALUType(n[0] & 0x1f) {
					case h264.NALUTypeSPS:
						if p.SPS == nil {
							p.SPS = append([]byte(nil), n...)
						}
					case h264.NALUTypePPS:
						if p.PPS == nil {
							p.PPS = append([]byte(nil), n...)
						}
					}
				}
				d := conv(dts)
				c.units = append(c.units, &media.Unit{Track: mt, PTS: d + time.Duration(pts-dts)*time.Second/90000, DTS: d,
					RandomAccess: h264.IsRandomAccess(au), Payload: au})
				return nil
			})
		case *mpegts.CodecMPEG4Audio:
			cfg, err := codec.Config.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			mt := &media.Track{ID: len(c.tracks), Codec: &media.AAC{Config: cfg, SampleRate: codec.Config.SampleRate, Channels: codec.Config.ChannelCount}}
			c.tracks = append(c.tracks, mt)
			sr := time.Duration(codec.Config.SampleRate)
			r.OnDataMPEG4Audio(tr, func(pts int64, aus [][]byte) error {
				for i, au := range aus {
					d := conv(pts) + time.Duration(i*mpeg4audio.SamplesPerAccessUnit)*time.Second/sr
					c.units = append(c.units, &media.Unit{Track: mt, PTS: d, DTS: d, RandomAccess: true, Payload: [][]byte{au}})
				}
				return nil
			})
		}
	}
	for {
		if err := r.Read(); err != nil {
			if errors.Is(err, io.EOF) || strings.Contains(err.Error(), "EOF") {
				break
			}
			t.Fatal(err)
		}
	}
	if len(c.units) == 0 {
		t.Fatal("no units demuxed")
	}
	return c
}

// demuxFile remuxes a clip to MPEG-TS with ffmpeg (stream copy) and demuxes it.
func demuxFile(t testing.TB, path string) clip {
	t.Helper()
	out, err := exec.Command(testenv.FFmpeg(t), "-hide_banner", "-loglevel", "error", "-i", path,
		"-c", "copy", "-f", "mpegts", "-").Output()
	if err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	return demuxTS(t, out)
}

// recSink records what a LiveWorker delivers.
type recSink struct {
	mu       sync.Mutex
	starts   []bool // restarted flag of every Start
	tracks   [][]*media.Track
	units    []*media.Unit
	runOf    []int // index into starts for each unit
	closed   bool
	closeCnt int
}

func (s *recSink) Start(tracks []*media.Track, restarted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.starts = append(s.starts, restarted)
	s.tracks = append(s.tracks, tracks)
}

func (s *recSink) WriteUnit(u *media.Unit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.units = append(s.units, u)
	s.runOf = append(s.runOf, len(s.starts)-1)
}

func (s *recSink) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.closeCnt++
}

// count returns the units of run (or every run when run < 0) on video
// (true) or audio (false).
func (s *recSink) count(run int, video bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i, u := range s.units {
		if (run < 0 || s.runOf[i] == run) && u.Track.Codec.IsVideo() == video {
			n++
		}
	}
	return n
}

func (s *recSink) numStarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.starts)
}

// keyframes returns the PTS of the run's video keyframes.
func (s *recSink) keyframes(run int) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Duration
	for i, u := range s.units {
		if s.runOf[i] == run && u.Track.Codec.IsVideo() && u.RandomAccess {
			out = append(out, u.PTS)
		}
	}
	return out
}

func spsSize(t *testing.T, tr *media.Track) (int, int) {
	t.Helper()
	c, ok := tr.Codec.(*media.H264)
	if !ok {
		t.Fatalf("rendition video is %s, want h264", tr.Codec.Name())
	}
	var sps h264.SPS
	if err := sps.Unmarshal(c.SPS); err != nil {
		t.Fatal(err)
	}
	return sps.Width(), sps.Height()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ffmpegChildren lists live (non-zombie) processes whose parent is this
// test process and whose command is ffmpeg, plus zombies of any kind.
func ffmpegChildren(t *testing.T) (live []int, zombies []int) {
	t.Helper()
	me := os.Getpid()
	ents, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range ents {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < 0 {
			continue
		}
		comm := s[open+1 : close]
		fields := strings.Fields(s[close+1:])
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		if ppid != me {
			continue
		}
		pid, _ := strconv.Atoi(strings.Fields(s)[0])
		if fields[0] == "Z" {
			zombies = append(zombies, pid)
		} else if comm == "ffmpeg" {
			live = append(live, pid)
		}
	}
	return live, zombies
}
