package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/streamd/streamd/configs"
	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/transcode"
)

func TestShippedLadderIsTheTranscoderDefault(t *testing.T) {
	ls, ps := ladders(configs.Defaults())
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	if !reflect.DeepEqual(ls["default"], transcode.DefaultLadder()) {
		t.Fatalf("configs default ladder %+v\n!= transcode.DefaultLadder %+v", ls["default"], transcode.DefaultLadder())
	}
}

func TestLadderProblemsNameTheirKey(t *testing.T) {
	cfg := configs.Defaults()
	cfg.Ladders[0].Rungs[1].VideoBitrate = "fast"
	cfg.Channels[0].Ladder = "default"
	cfg.Transcode.FFmpegPath = "/nonexistent/ffmpeg"
	ps := checkTranscode(cfg)
	keys := map[string]bool{}
	for _, p := range ps {
		keys[p.Key] = true
	}
	if !keys["ladders[0].rungs[1].video_bitrate"] || !keys["transcode.ffmpeg_path"] {
		t.Fatalf("problems: %v", ps)
	}
}

// abrEnv is the ladder the end-to-end tests use: the source passed
// through plus two cheap encodes, so two cores keep up under -race.
const abrLadder = `[{name: abr, rungs: [{name: source, source: true},` +
	` {name: 480p, height: 480, video_bitrate: 400k, preset: ultrafast},` +
	` {name: 360p, height: 360, video_bitrate: 250k, preset: ultrafast}],` +
	` audio: {bitrate: 128k, sample_rate: 48000, channels: 2}}]`

func abrServer(t *testing.T) *server {
	testenv.FFmpeg(t)
	return startServer(t,
		"STREAMD_LADDERS="+abrLadder,
		"STREAMD_CHANNELS=[{name: main, stream_key: "+testKey+", ladder: abr}]",
		"STREAMD_TRANSCODE_MAX_LIVE_WORKERS=2",
	)
}

// ffmpegChildren lists the pids of ffmpeg processes whose parent is pid.
func ffmpegChildren(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		if err != nil {
			continue
		}
		s := string(b)
		name := s[strings.IndexByte(s, '(')+1 : strings.LastIndexByte(s, ')')]
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if ppid, _ := strconv.Atoi(f[1]); ppid == pid && name == "ffmpeg" {
			out = append(out, n)
		}
	}
	return out
}

type probeInfo struct {
	Width, Height int
	Bitrate       float64 // video bits per second over the file
}

func probeVideo(t *testing.T, file string) probeInfo {
	t.Helper()
	out, err := exec.Command(testenv.FFprobe(t), "-v", "error", "-select_streams", "v:0", "-show_entries",
		"stream=width,height:format=duration,size", "-of", "json", file).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", file, err, out)
	}
	var r struct {
		Streams []struct{ Width, Height int }
		Format  struct{ Duration, Size string }
	}
	json.Unmarshal(out, &r)
	if len(r.Streams) == 0 {
		t.Fatalf("%s has no video", file)
	}
	d, _ := strconv.ParseFloat(r.Format.Duration, 64)
	sz, _ := strconv.ParseFloat(r.Format.Size, 64)
	return probeInfo{Width: r.Streams[0].Width, Height: r.Streams[0].Height, Bitrate: sz * 8 / d}
}

func TestLiveLadderOverRTMP(t *testing.T) {
	s := abrServer(t)
	ff := publish(t, "h264_aac_720p.mp4", "-f", "flv", "rtmp://"+s.rtmp+"/live/"+testKey)
	if err := ff.Wait(); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	// Every rendition ends; then the master lists all three.
	want := map[string]struct{ w, h, kbps int }{"source": {1280, 720, 0}, "480p": {854, 480, 400}, "360p": {640, 360, 250}}
	durations := map[string][]time.Duration{}
	for name := range want {
		var mp *playlist.Media
		waitFor(t, 60*time.Second, name+" ENDLIST", func() bool {
			resp, _ := s.get(t, "/live/main/"+name+"/index.m3u8")
			if resp.StatusCode != 200 {
				return false
			}
			mp = mediaPlaylist(t, s, "/live/main/"+name+"/index.m3u8")
			return mp.Endlist
		})
		dir := t.TempDir()
		var all []byte
		_, initB := s.get(t, path.Join("/live/main", name, mp.Map.URI))
		all = append(all, initB...)
		for _, seg := range mp.Segments {
			durations[name] = append(durations[name], seg.Duration)
			_, b := s.get(t, path.Join("/live/main", name, seg.URI))
			all = append(all, b...)
		}
		f := filepath.Join(dir, name+".mp4")
		os.WriteFile(f, all, 0o644)
		pi := probeVideo(t, f)
		w := want[name]
		if pi.Width != w.w || pi.Height != w.h {
			t.Errorf("%s decodes at %dx%d, want %dx%d", name, pi.Width, pi.Height, w.w, w.h)
		}
		// x264 at ultrafast with a bitrate target lands within ±40 % over a
		// few seconds of this synthetic clip (audio included in the figure).
		if w.kbps > 0 && (pi.Bitrate < 0.6*float64(w.kbps)*1000 || pi.Bitrate > 1.4*float64(w.kbps+128)*1000) {
			t.Errorf("%s averages %.0f kb/s, target %d kb/s", name, pi.Bitrate/1000, w.kbps)
		}
		if d, frames := ffprobeDecode(t, f); frames == 0 || math.Abs(d-6) > 0.3 {
			t.Errorf("%s: %d frames, %.2f s", name, frames, d)
		}
		if out, _ := exec.Command(testenv.FFprobe(t), "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv", f).CombinedOutput(); strings.Contains(string(out), "audio") {
			t.Errorf("%s carries audio; it belongs in the shared audio rendition", name)
		}
	}
	// Segment boundaries are identical across renditions. At the very end
	// the encoder may emit one extra frame after the last boundary (a
	// segment of a frame or two), which players treat as the tail.
	for name, ds := range durations {
		if n := len(durations["source"]); len(ds) == n+1 && ds[n] <= 100*time.Millisecond {
			ds = ds[:n]
		}
		if len(ds) != len(durations["source"]) {
			t.Errorf("%s has %d segments %v, source %d %v", name, len(ds), ds, len(durations["source"]), durations["source"])
			continue
		}
		for i := range ds {
			if (ds[i] - durations["source"][i]).Abs() > 2*time.Millisecond {
				t.Errorf("%s segment %d lasts %s, source %s", name, i, ds[i], durations["source"][i])
			}
		}
	}
	mv := master(t, s, "main")
	// One shared audio rendition: an EXT-X-MEDIA entry every variant uses.
	if len(mv.Renditions) != 1 || mv.Renditions[0].URI == nil || *mv.Renditions[0].URI != "audio/index.m3u8" {
		t.Fatalf("want one audio rendition in the master, got %+v", mv.Renditions)
	}
	for _, v := range mv.Variants {
		if v.Audio != "audio" {
			t.Errorf("variant %s does not use the audio group", v.URI)
		}
	}
	ap := mediaPlaylist(t, s, "/live/main/audio/index.m3u8")
	var audio []byte
	_, initA := s.get(t, path.Join("/live/main/audio", ap.Map.URI))
	audio = append(audio, initA...)
	var audioDur time.Duration
	for _, seg := range ap.Segments {
		_, b := s.get(t, path.Join("/live/main/audio", seg.URI))
		audio = append(audio, b...)
		audioDur += seg.Duration
	}
	af := filepath.Join(t.TempDir(), "audio.mp4")
	os.WriteFile(af, audio, 0o644)
	out, err := exec.Command(testenv.FFprobe(t), "-v", "error", "-show_entries", "stream=codec_type,codec_name,sample_rate,channels", "-of", "compact", af).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "codec_name=aac") || !strings.Contains(string(out), "sample_rate=48000") ||
		!strings.Contains(string(out), "channels=2") || strings.Contains(string(out), "codec_type=video") {
		t.Errorf("audio rendition: %v %s", err, out)
	}
	if math.Abs(audioDur.Seconds()-6) > 0.3 {
		t.Errorf("audio rendition lasts %s", audioDur)
	}
	var got []string
	for _, v := range mv.Variants {
		got = append(got, v.URI+"@"+v.Resolution)
		if v.AverageBandwidth == nil || v.FrameRate == nil || len(v.Codecs) != 2 {
			t.Errorf("variant %s lacks AVERAGE-BANDWIDTH, FRAME-RATE or CODECS", v.URI)
		}
	}
	if strings.Join(got, " ") != "source/index.m3u8@1280x720 480p/index.m3u8@854x480 360p/index.m3u8@640x360" {
		t.Errorf("master variants (highest first): %v", got)
	}
	waitFor(t, 10*time.Second, "no ffmpeg left", func() bool { return len(ffmpegChildren(s.cmd.Process.Pid)) == 0 })
	_, b := s.get(t, "/api/transcode")
	if !strings.Contains(string(b), `"mode":"transcode"`) {
		t.Errorf("/api/transcode: %s", b)
	}
	if _, b := s.get(t, "/metrics"); !strings.Contains(string(b), `streamd_transcode_speed{channel="main"}`) {
		t.Error("no transcode metrics")
	}
}

func TestKilledTranscoderRecovers(t *testing.T) {
	s := abrServer(t)
	publishLoop(t, "h264_aac_720p.mp4", "-f", "flv", "rtmp://"+s.rtmp+"/live/"+testKey)
	var pids []int
	waitFor(t, 30*time.Second, "480p playlist and an ffmpeg worker", func() bool {
		resp, _ := s.get(t, "/live/main/480p/index.m3u8")
		pids = ffmpegChildren(s.cmd.Process.Pid)
		return resp.StatusCode == 200 && len(pids) == 1
	})
	// Kill the worker's whole process group, as a crash or the OOM killer would.
	if err := syscall.Kill(-pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a discontinuity and new segments in 480p", func() bool {
		mp := mediaPlaylist(t, s, "/live/main/480p/index.m3u8")
		for i, seg := range mp.Segments {
			if seg.Discontinuity && i < len(mp.Segments)-1 {
				return true
			}
		}
		return false
	})
	if now := ffmpegChildren(s.cmd.Process.Pid); len(now) != 1 || now[0] == pids[0] {
		t.Errorf("ffmpeg workers after the kill: %v (killed %d)", now, pids[0])
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pids[0])); err == nil {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pids[0]))
		t.Errorf("killed ffmpeg still exists (zombie?): %s", b)
	}
	_, b := s.get(t, "/api/transcode")
	if !strings.Contains(string(b), `"restarts":1`) {
		t.Errorf("/api/transcode does not count the restart: %s", b)
	}
	// Stopping the server leaves no ffmpeg behind.
	pid := s.cmd.Process.Pid
	s.cmd.Process.Signal(os.Interrupt)
	<-s.exited
	for _, p := range ffmpegChildren(1) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		if strings.Contains(string(b), "pipe:0") {
			t.Errorf("orphan ffmpeg %d after streamd %d stopped: %s", p, pid, b)
		}
	}
}

// TestOverCapacity: with one live worker, a second laddered channel falls
// back to passthrough (and says so), or is refused when configured so.
func TestOverCapacity(t *testing.T) {
	for _, mode := range []string{"passthrough", "refuse"} {
		t.Run(mode, func(t *testing.T) {
			testenv.FFmpeg(t)
			s := startServer(t,
				"STREAMD_LADDERS="+abrLadder,
				"STREAMD_CHANNELS=[{name: main, stream_key: "+testKey+", ladder: abr}, {name: second, stream_key: second-key-123, ladder: abr}]",
				"STREAMD_TRANSCODE_MAX_LIVE_WORKERS=1",
				"STREAMD_TRANSCODE_OVER_CAPACITY="+mode,
			)
			publishLoop(t, "h264_aac_720p.mp4", "-f", "flv", "rtmp://"+s.rtmp+"/live/"+testKey)
			waitFor(t, 30*time.Second, "main transcoding", func() bool {
				_, b := s.get(t, "/api/transcode")
				return strings.Contains(string(b), `"mode":"transcode"`)
			})
			second := publishLoop(t, "h264_aac_360p.mp4", "-f", "flv", "rtmp://"+s.rtmp+"/live/second-key-123")
			if mode == "refuse" {
				done := make(chan error, 1)
				go func() { done <- second.Wait() }()
				select {
				case err := <-done:
					if err == nil {
						t.Fatal("second publisher accepted over capacity")
					}
				case <-time.After(20 * time.Second):
					t.Fatal("second publisher still running: not refused")
				}
				if !strings.Contains(s.Logs(), "every live transcoder is busy") {
					t.Error("refusal not logged")
				}
				return
			}
			waitFor(t, 30*time.Second, "second channel's source playlist", func() bool {
				resp, _ := s.get(t, "/live/second/index.m3u8")
				return resp.StatusCode == 200
			})
			_, b := s.get(t, "/api/transcode")
			if !strings.Contains(string(b), `"channel":"second","mode":"fallback"`) || !strings.Contains(string(b), "max_live_workers") {
				t.Errorf("/api/transcode does not explain the fallback: %s", b)
			}
			if mv := master(t, s, "second"); len(mv.Variants) != 1 {
				t.Errorf("fallback channel lists %d variants", len(mv.Variants))
			}
		})
	}
}
