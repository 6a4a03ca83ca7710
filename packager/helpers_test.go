package packager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/live"
	"github.com/streamd/streamd/media"
	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/fsstore"
)

// clip is a demuxed test clip: the tracks and units an ingest server would
// publish, in the order the transport stream carried them.
type clip struct {
	tracks []*media.Track
	units  []*media.Unit
}

// demux remuxes a testdata clip to MPEG-TS with ffmpeg (stream copy, so
// the real encoder's bitstream) and reads it back with mediacommon's
// demuxer into media units. extra are ffmpeg output options (-an, -vn).
func demux(t testing.TB, name string, extra ...string) clip {
	t.Helper()
	ff := testenv.FFmpeg(t)
	args := append([]string{"-hide_banner", "-loglevel", "error", "-i", testenv.Testdata(name), "-c", "copy"}, extra...)
	args = append(args, "-f", "mpegts", "-")
	out, err := exec.Command(ff, args...).Output()
	if err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	r := &mpegts.Reader{R: bytes.NewReader(out)}
	if err := r.Initialize(); err != nil {
		t.Fatal(err)
	}
	var c clip
	var base int64
	haveBase := false
	ts := func(v int64) time.Duration {
		if !haveBase {
			base, haveBase = v, true
		}
		return time.Duration(v-base) * time.Second / 90000
	}
	add := func(mt *media.Track, pts, dts time.Duration, ra bool, payload [][]byte) {
		c.units = append(c.units, &media.Unit{Track: mt, PTS: pts, DTS: dts, RandomAccess: ra, Payload: payload})
	}
	for _, tr := range r.Tracks() {
		switch codec := tr.Codec.(type) {
		case *mpegts.CodecH264:
			mt := &media.Track{ID: len(c.tracks), Codec: &media.H264{}}
			c.tracks = append(c.tracks, mt)
			r.OnDataH264(tr, func(pts, dts int64, au [][]byte) error {
				p := mt.Codec.(*media.H264)
				for _, n := range au {
					switch h264.NALUType(n[0] & 0x1f) {
					case h264.NALUTypeSPS:
						if p.SPS == nil {
							p.SPS = clone(n)
						}
					case h264.NALUTypePPS:
						if p.PPS == nil {
							p.PPS = clone(n)
						}
					}
				}
				d := ts(dts)
				add(mt, d+time.Duration(pts-dts)*time.Second/90000, d, h264.IsRandomAccess(au), au)
				return nil
			})
		case *mpegts.CodecH265:
			mt := &media.Track{ID: len(c.tracks), Codec: &media.H265{}}
			c.tracks = append(c.tracks, mt)
			r.OnDataH265(tr, func(pts, dts int64, au [][]byte) error {
				p := mt.Codec.(*media.H265)
				for _, n := range au {
					switch h265.NALUType((n[0] >> 1) & 0x3f) {
					case h265.NALUType_VPS_NUT:
						if p.VPS == nil {
							p.VPS = clone(n)
						}
					case h265.NALUType_SPS_NUT:
						if p.SPS == nil {
							p.SPS = clone(n)
						}
					case h265.NALUType_PPS_NUT:
						if p.PPS == nil {
							p.PPS = clone(n)
						}
					}
				}
				d := ts(dts)
				add(mt, d+time.Duration(pts-dts)*time.Second/90000, d, h265.IsRandomAccess(au), au)
				return nil
			})
		case *mpegts.CodecMPEG4Audio:
			cfg, err := codec.Config.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			mt := &media.Track{ID: len(c.tracks), Codec: &media.AAC{Config: cfg, SampleRate: codec.Config.SampleRate, Channels: int(codec.Config.ChannelConfig)}}
			c.tracks = append(c.tracks, mt)
			sr := int64(codec.Config.SampleRate)
			r.OnDataMPEG4Audio(tr, func(pts int64, aus [][]byte) error {
				for i, au := range aus {
					d := ts(pts) + time.Duration(int64(i)*mpeg4audio.SamplesPerAccessUnit)*time.Second/time.Duration(sr)
					add(mt, d, d, true, [][]byte{au})
				}
				return nil
			})
		case *mpegts.CodecOpus:
			mt := &media.Track{ID: len(c.tracks), Codec: &media.Opus{Channels: 2}}
			c.tracks = append(c.tracks, mt)
			r.OnDataOpus(tr, func(pts int64, pkts [][]byte) error {
				d := ts(pts)
				for _, pkt := range pkts {
					add(mt, d, d, true, [][]byte{pkt})
					d += time.Duration(opus.PacketDuration2(pkt)) * time.Second / 48000
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

// env is one packager over a folder store, fed through a real hub.
type env struct {
	t     *testing.T
	dir   string
	store *fsstore.Store
	objs  store.Objects // what the packager writes to; store unless an option wraps it
	reg   prometheus.Registerer
	hub   *live.Hub
	p     *Packager
}

const testChannel = "main"

func newEnv(t *testing.T, cfg Config, opts ...func(*env)) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := fsstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, store: st, objs: st}
	for _, o := range opts {
		o(e)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e.hub = live.NewHub(log, []live.Channel{{Name: testChannel, StreamKey: "key"}})
	e.p = New(cfg, e.objs, log, e.reg)
	e.hub.AddListener(e.p)
	t.Cleanup(e.p.Close)
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// publish sends the clip's units as fast as possible and closes the
// publication.
func (e *env) publish(c clip) {
	e.t.Helper()
	s, err := e.hub.Publish("key", "test", "127.0.0.1", c.tracks)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, u := range c.units {
		u.Received = time.Now()
		s.WriteUnit(u)
	}
	s.Close(nil)
}

func (e *env) read(key string) []byte {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, filepath.FromSlash(key)))
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *env) keys() []string {
	infos, err := e.store.List(context.Background(), "")
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, i := range infos {
		out = append(out, i.Key)
	}
	sort.Strings(out)
	return out
}

func (e *env) media() (*playlist.Media, string) {
	e.t.Helper()
	raw := e.read("live/" + testChannel + "/source/index.m3u8")
	pl, err := playlist.Unmarshal(raw)
	if err != nil {
		e.t.Fatalf("media playlist: %v\n%s", err, raw)
	}
	m, ok := pl.(*playlist.Media)
	if !ok {
		e.t.Fatalf("not a media playlist:\n%s", raw)
	}
	return m, string(raw)
}

func (e *env) master() (*playlist.Multivariant, string) {
	e.t.Helper()
	raw := e.read("live/" + testChannel + "/index.m3u8")
	pl, err := playlist.Unmarshal(raw)
	if err != nil {
		e.t.Fatalf("master playlist: %v\n%s", err, raw)
	}
	m, ok := pl.(*playlist.Multivariant)
	if !ok || len(m.Variants) != 1 {
		e.t.Fatalf("not a one-variant master:\n%s", raw)
	}
	return m, string(raw)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type probeStream struct {
	CodecType    string `json:"codec_type"`
	CodecName    string `json:"codec_name"`
	NbReadFrames string `json:"nb_read_frames"`
	Duration     string `json:"duration"`
	Profile      string `json:"profile"`
	Level        int    `json:"level"`
	Width        int    `json:"width"`
	Height       int    `json:"height"`
}

type probeResult struct {
	Streams []probeStream `json:"streams"`
	Format  struct {
		Duration string `json:"duration"`
	} `json:"format"`
}

// probe runs ffprobe, counting frames by decoding them.
func probe(t *testing.T, file string) probeResult {
	t.Helper()
	out, err := exec.Command(testenv.FFprobe(t), "-v", "error", "-count_frames",
		"-show_entries", "stream=codec_type,codec_name,nb_read_frames,duration,profile,level,width,height:format=duration",
		"-of", "json", file).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("ffprobe %s: %v: %s", file, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var r probeResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// concat writes the init segment and the playlist's segments, in order,
// into one file a player-less decoder can read.
func (e *env) concat(m *playlist.Media) string {
	e.t.Helper()
	var buf bytes.Buffer
	buf.Write(e.read("live/" + testChannel + "/source/" + m.Map.URI))
	for _, s := range m.Segments {
		buf.Write(e.read("live/" + testChannel + "/source/" + s.URI))
	}
	p := filepath.Join(e.t.TempDir(), "all.mp4")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}
