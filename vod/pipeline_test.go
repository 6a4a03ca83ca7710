package vod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Eyevinn/dash-mpd/mpd"
	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/streamd/streamd/internal/testenv"
)

// smallJob keeps the matrix fast on two cores: two tiny rungs, ultrafast,
// 1 s segments (so even a 2 s clip has several).
const smallJob = `{"rungs":[
 {"name":"180p","height":180,"video_bitrate":"200k","preset":"ultrafast"},
 {"name":"120p","height":120,"video_bitrate":"120k","preset":"ultrafast"}],
 "segment_duration":"1s","audio_bitrate":"64k"}`

type outStream struct {
	CodecName  string `json:"codec_name"`
	CodecType  string `json:"codec_type"`
	Width      int    `json:"width"`
	Height     int    `json:"height"`
	RFrameRate string `json:"r_frame_rate"`
	AvgFrame   string `json:"avg_frame_rate"`
	SampleRate string `json:"sample_rate"`
	Channels   int    `json:"channels"`
}

// probeOut reads a rendition back through its HLS media playlist,
// independently of the QA step.
func probeOut(t *testing.T, ffprobe, path string) outStream {
	t.Helper()
	out, err := exec.Command(ffprobe, "-v", "error", "-show_entries",
		"stream=codec_name,codec_type,width,height,r_frame_rate,avg_frame_rate,sample_rate,channels",
		"-print_format", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var v struct{ Streams []outStream }
	if err := json.Unmarshal(out, &v); err != nil || len(v.Streams) != 1 {
		t.Fatalf("ffprobe %s: %v %s", path, err, out)
	}
	return v.Streams[0]
}

func TestTranscodeMatrix(t *testing.T) {
	ffprobe := testenv.FFprobe(t)
	testenv.FFmpeg(t)
	job, err := ParseJob([]byte(smallJob))
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		sizes     []string // "WxH" per video rendition
		langs     []string // HLS LANGUAGE per audio rendition ("" = undetermined)
		subtitles int
		check     func(t *testing.T, dir string, res *Result)
	}
	cases := []struct {
		file string
		job  *Job
		want want
	}{
		{"h264_aac_360p.mp4", nil, want{sizes: []string{"640x360"}, langs: []string{""}}},
		{"vod_portrait_rotated.mp4", &job, want{sizes: []string{"180x320", "120x214"}, langs: []string{""},
			check: func(t *testing.T, dir string, res *Result) {
				if res.Media.Video.Rotation != 270 {
					t.Errorf("rotation %d, want 270 (display matrix 90 is a quarter turn counter-clockwise)", res.Media.Video.Rotation)
				}
			}}},
		{"vod_vfr.mp4", &job, want{sizes: []string{"320x180", "214x120"}, langs: []string{""},
			check: func(t *testing.T, dir string, res *Result) {
				if !res.Media.Video.VFR {
					t.Error("the VFR clip was not detected as VFR")
				}
				s := probeOut(t, ffprobe, filepath.Join(dir, "r0/index.m3u8"))
				if s.RFrameRate != "30/1" || s.AvgFrame != "30/1" {
					t.Errorf("output frame rate r=%s avg=%s, want a constant 30/1", s.RFrameRate, s.AvgFrame)
				}
			}}},
		{"vod_interlaced_mpeg2.ts", &job, want{sizes: []string{"240x180", "160x120"}, langs: []string{""},
			check: func(t *testing.T, dir string, res *Result) {
				if !res.Plan.Video[0].Deinterlace {
					t.Error("interlaced source not deinterlaced")
				}
				out, err := exec.Command(ffprobe, "-v", "error", "-select_streams", "v", "-show_entries", "frame=interlaced_frame",
					"-of", "csv=p=0", filepath.Join(dir, "r0/index.m3u8")).Output()
				if err != nil || !bytes.Contains(out, []byte("0")) || bytes.Contains(out, []byte("1")) {
					t.Errorf("output frames still flagged interlaced (or unreadable: %v): %q", err, out)
				}
			}}},
		{"vod_audio_only.m4a", &job, want{langs: []string{""}}},
		{"vod_video_only.mp4", &job, want{sizes: []string{"320x180", "214x120"}}},
		// Other codecs and containers, through the default ladder: a
		// 360p source gets the 360p rung only (nothing upscaled).
		{"vod_hevc_aac.mp4", nil, want{sizes: []string{"640x360"}, langs: []string{""},
			check: func(t *testing.T, dir string, res *Result) {
				if res.Media.Video.Codec != "hevc" {
					t.Errorf("source codec %q, want hevc", res.Media.Video.Codec)
				}
				checkDurations(t, ffprobe, "vod_hevc_aac.mp4", dir)
			}}},
		{"vod_vp9_opus.webm", nil, want{sizes: []string{"640x360"}, langs: []string{""},
			check: func(t *testing.T, dir string, res *Result) {
				if res.Media.Video.Codec != "vp9" || len(res.Media.Audio) != 1 || res.Media.Audio[0].Codec != "opus" {
					t.Errorf("source %+v, want VP9 video and Opus audio", res.Media)
				}
				checkDurations(t, ffprobe, "vod_vp9_opus.webm", dir)
			}}},
		// 4K through the full default ladder: 2160p at the source's own
		// size, then every lower rung, and no rung above the source.
		{"vod_4k.mp4", nil, want{sizes: []string{"3840x2160", "1920x1080", "1280x720", "854x480", "640x360"}, langs: []string{""},
			check: func(t *testing.T, dir string, res *Result) {
				if len(res.Video) == 0 || res.Video[0].Name != "2160p" || res.Video[0].Width != 3840 || res.Video[0].Height != 2160 {
					t.Errorf("top rendition %+v, want 2160p at 3840x2160", res.Video)
				}
				for _, v := range res.Video {
					if v.Width > 3840 || v.Height > 2160 {
						t.Errorf("rendition %s is %dx%d: upscaled from 3840x2160", v.Name, v.Width, v.Height)
					}
				}
				checkDurations(t, ffprobe, "vod_4k.mp4", dir)
			}}},
		{"vod_multilang_subs.mkv", &job, want{sizes: []string{"320x180", "214x120"}, langs: []string{"en", "fr"}, subtitles: 1,
			check: func(t *testing.T, dir string, res *Result) {
				vtt, _ := os.ReadFile(filepath.Join(dir, "subs/eng.vtt"))
				if !bytes.Contains(vtt, []byte("Hello")) || !bytes.Contains(vtt, []byte("World")) {
					t.Errorf("subs/eng.vtt: %q", vtt)
				}
			}}},
	}
	root := t.TempDir()
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			dir := filepath.Join(root, c.file)
			j := DefaultJob()
			if c.job != nil {
				j = *c.job
			}
			var mu sync.Mutex
			var last Progress
			res, err := Transcode(context.Background(), Options{Input: testenv.Testdata(c.file), OutDir: dir, Job: j,
				Log: slog.New(slog.DiscardHandler), Progress: func(p Progress) { mu.Lock(); last = p; mu.Unlock() }})
			if err != nil {
				t.Fatalf("%s: %v", ErrorCode(err), err)
			}
			if last.Stage != StageDone || last.Percent != 100 {
				t.Errorf("last progress %+v", last)
			}
			checkOutput(t, ffprobe, dir, res, c.want.sizes, c.want.langs, c.want.subtitles)
			if c.want.check != nil {
				c.want.check(t, dir, res)
			}
		})
	}
}

// checkOutput reads the output with readers independent of the pipeline:
// gohlslib for HLS, Eyevinn/dash-mpd for DASH, ffprobe for the media.
func checkOutput(t *testing.T, ffprobe, dir string, res *Result, sizes, langs []string, subs int) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, MasterPlaylist))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := playlist.Unmarshal(data)
	if err != nil {
		t.Fatalf("master does not parse: %v\n%s", err, data)
	}
	mv, ok := pl.(*playlist.Multivariant)
	if !ok {
		t.Fatalf("index.m3u8 is not a master playlist")
	}
	var gotSizes, gotLangs []string
	for _, v := range mv.Variants {
		if v.Resolution != "" {
			gotSizes = append(gotSizes, v.Resolution)
		}
		if v.Bandwidth <= 0 || len(v.Codecs) == 0 {
			t.Errorf("variant %s: bandwidth %d codecs %v", v.URI, v.Bandwidth, v.Codecs)
		}
		checkMedia(t, ffprobe, dir, v.URI)
	}
	nsubs := 0
	for _, r := range mv.Renditions {
		switch r.Type {
		case playlist.MultivariantRenditionTypeAudio:
			gotLangs = append(gotLangs, r.Language)
			s := checkMedia(t, ffprobe, dir, *r.URI)
			if s.CodecName != "aac" || s.SampleRate != "48000" || s.Channels != 2 {
				t.Errorf("audio %s: %s %s Hz %d ch, want AAC 48000 Hz stereo", r.Name, s.CodecName, s.SampleRate, s.Channels)
			}
		case playlist.MultivariantRenditionTypeSubtitles:
			nsubs++
		}
	}
	if strings.Join(gotSizes, " ") != strings.Join(sizes, " ") {
		t.Errorf("variant sizes %v, want %v", gotSizes, sizes)
	}
	if strings.Join(gotLangs, ",") != strings.Join(langs, ",") {
		t.Errorf("audio languages %q, want %q", gotLangs, langs)
	}
	if nsubs != subs {
		t.Errorf("%d subtitle renditions, want %d", nsubs, subs)
	}
	for i, v := range res.Video {
		s := checkMedia(t, ffprobe, dir, v.Playlist())
		if got := itoaSize(s.Width, s.Height); i < len(sizes) && got != sizes[i] {
			t.Errorf("rendition %s decodes as %s, want %s", v.Name, got, sizes[i])
		}
	}

	m, err := mpd.ReadFromFile(filepath.Join(dir, DASHManifest))
	if err != nil {
		t.Fatalf("MPD does not parse: %v", err)
	}
	var dashSizes []string
	counts := map[string]int{}
	for _, as := range m.Periods[0].AdaptationSets {
		counts[string(as.ContentType)]++
		for _, r := range as.Representations {
			if as.ContentType == "video" {
				dashSizes = append(dashSizes, itoaSize(int(r.Width), int(r.Height)))
				if _, err := os.Stat(filepath.Join(dir, RepDir(0), "init.mp4")); err != nil {
					t.Error(err)
				}
			}
			if as.ContentType == "text" {
				if len(r.BaseURLs) != 1 {
					t.Fatalf("text representation without BaseURL")
				}
				if _, err := os.Stat(filepath.Join(dir, string(r.BaseURLs[0].Value))); err != nil {
					t.Errorf("text BaseURL: %v", err)
				}
			}
		}
	}
	if strings.Join(dashSizes, " ") != strings.Join(sizes, " ") {
		t.Errorf("DASH video sizes %v, want %v", dashSizes, sizes)
	}
	if counts["audio"] != len(langs) || counts["text"] != subs {
		t.Errorf("DASH adaptation sets %v, want %d audio and %d text", counts, len(langs), subs)
	}
	if len(sizes) > 0 {
		for _, f := range []string{PosterFile, ThumbnailsFile, ThumbnailsVTT} {
			if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
				t.Errorf("%s missing", f)
			}
		}
		vtt, _ := os.ReadFile(filepath.Join(dir, ThumbnailsVTT))
		if !bytes.HasPrefix(vtt, []byte("WEBVTT")) || !bytes.Contains(vtt, []byte("thumbnails.jpg#xywh=0,0,")) {
			t.Errorf("thumbnails.vtt: %q", vtt)
		}
		poster := probeOut(t, ffprobe, filepath.Join(dir, PosterFile))
		if got := itoaSize(poster.Width, poster.Height); got != sizes[0] {
			t.Errorf("poster is %s, want the top rendition's %s", got, sizes[0])
		}
	}
	// Nothing of ffmpeg's intermediate files is left.
	if left, _ := filepath.Glob(filepath.Join(dir, "*media_*.m3u8")); len(left) > 0 {
		t.Errorf("left over: %v", left)
	}
	if _, err := os.Stat(filepath.Join(dir, ffmpegMaster)); err == nil {
		t.Errorf("%s left over", ffmpegMaster)
	}
}

// checkMedia parses a media playlist with gohlslib and probes it.
func checkMedia(t *testing.T, ffprobe, dir, uri string) outStream {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, uri))
	if err != nil {
		t.Fatal(err)
	}
	var mp playlist.Media
	if err := mp.Unmarshal(data); err != nil {
		t.Fatalf("%s does not parse: %v", uri, err)
	}
	if !mp.Endlist || mp.PlaylistType == nil || *mp.PlaylistType != playlist.MediaPlaylistTypeVOD || mp.Map == nil {
		t.Errorf("%s: not a VOD fMP4 playlist", uri)
	}
	var total time.Duration
	for _, s := range mp.Segments {
		total += s.Duration
	}
	if total <= 0 {
		t.Errorf("%s: no duration", uri)
	}
	return probeOut(t, ffprobe, filepath.Join(dir, uri))
}

// checkDurations compares, independently of the QA step, the source's
// duration (ffprobe on the input) with each HLS media playlist's segment
// total (gohlslib), the MPD's mediaPresentationDuration (dash-mpd) and the
// frames ffprobe decodes from each video rendition: within 0.1 s, three
// frames at 30 fps (AAC pads its last 21 ms frame; Opus and WebM end on
// their own 20 ms frames).
func checkDurations(t *testing.T, ffprobe, input, dir string) {
	t.Helper()
	const tol = 100 * time.Millisecond
	out, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
		testenv.Testdata(input)).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", input, err)
	}
	srcSec, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatalf("ffprobe %s duration %q: %v", input, out, err)
	}
	src := time.Duration(srcSec * float64(time.Second))
	data, err := os.ReadFile(filepath.Join(dir, MasterPlaylist))
	if err != nil {
		t.Fatal(err)
	}
	var mv playlist.Multivariant
	if err := mv.Unmarshal(data); err != nil {
		t.Fatal(err)
	}
	uris := []string{}
	for _, v := range mv.Variants {
		uris = append(uris, v.URI)
	}
	for _, r := range mv.Renditions {
		if r.Type == playlist.MultivariantRenditionTypeAudio && r.URI != nil {
			uris = append(uris, *r.URI)
		}
	}
	for _, uri := range uris {
		b, err := os.ReadFile(filepath.Join(dir, uri))
		if err != nil {
			t.Fatal(err)
		}
		var mp playlist.Media
		if err := mp.Unmarshal(b); err != nil {
			t.Fatalf("%s: %v", uri, err)
		}
		var total time.Duration
		for _, s := range mp.Segments {
			total += s.Duration
		}
		if (total - src).Abs() > tol {
			t.Errorf("%s lasts %s, the source %s", uri, total, src)
		}
	}
	m, err := mpd.ReadFromFile(filepath.Join(dir, DASHManifest))
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaPresentationDuration == nil {
		t.Error("MPD without mediaPresentationDuration")
	} else if d := time.Duration(*m.MediaPresentationDuration); (d - src).Abs() > tol {
		t.Errorf("MPD lasts %s, the source %s", d, src)
	}
	for _, v := range mv.Variants {
		out, err := exec.Command(ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0",
			"-show_entries", "stream=nb_read_frames,avg_frame_rate", "-print_format", "json", filepath.Join(dir, v.URI)).Output()
		if err != nil {
			t.Errorf("%s does not decode: %v", v.URI, err)
			continue
		}
		var p struct {
			Streams []struct {
				AvgFrameRate string `json:"avg_frame_rate"`
				NbReadFrames string `json:"nb_read_frames"`
			}
		}
		var num, den float64
		var n int
		if json.Unmarshal(out, &p) == nil && len(p.Streams) > 0 {
			n, _ = strconv.Atoi(p.Streams[0].NbReadFrames)
			fmt.Sscanf(p.Streams[0].AvgFrameRate, "%g/%g", &num, &den)
		}
		if n <= 0 || num <= 0 || den <= 0 {
			t.Errorf("%s: ffprobe says %s", v.URI, out)
			continue
		}
		rate := p.Streams[0].AvgFrameRate
		if d := time.Duration(float64(n) * den / num * float64(time.Second)); (d - src).Abs() > tol {
			t.Errorf("%s decodes %d frames at %s fps (%s), the source lasts %s", v.URI, n, rate, d, src)
		}
	}
}

func itoaSize(w, h int) string {
	b, _ := json.Marshal(w)
	c, _ := json.Marshal(h)
	return string(b) + "x" + string(c)
}

func TestTranscodeBrokenInputs(t *testing.T) {
	testenv.FFprobe(t)
	for _, c := range []struct {
		file string
		code Code
		msg  string
	}{
		{"vod_empty.mp4", CodeEmptyInput, "is empty (0 bytes)"},
		{"vod_truncated.mp4", CodeTruncated, "is truncated"},
		{"not_media.txt", CodeNotMedia, "is not a media file"},
		{"no_such_file.mp4", CodeNotMedia, "cannot read input"},
	} {
		t.Run(c.file, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			_, err := Transcode(context.Background(), Options{Input: testenv.Testdata(c.file), OutDir: dir})
			if ErrorCode(err) != c.code || !strings.Contains(Reason(err), c.msg) || strings.Contains(Reason(err), "\n") {
				t.Fatalf("got %s %q, want %s with %q on one line", ErrorCode(err), Reason(err), c.code, c.msg)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Error("a rejected input must not leave an output folder")
			}
		})
	}
}

// A file that probes fine but ends early (an MP4 with its index first,
// cut short) gets through the probe; ffmpeg decodes what there is and
// the QA step must refuse the short result.
func TestTranscodeQARejectsShortOutput(t *testing.T) {
	testenv.FFmpeg(t)
	in := filepath.Join(t.TempDir(), "cut.mp4")
	data, err := os.ReadFile(testenv.Testdata("h264_aac_360p.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	job, _ := ParseJob([]byte(`{"rungs":[{"name":"180p","height":180,"video_bitrate":"200k","preset":"ultrafast"}],"segment_duration":"1s"}`))
	_, err = Transcode(context.Background(), Options{Input: in, OutDir: filepath.Join(t.TempDir(), "out"), Job: job})
	if c := ErrorCode(err); c != CodeQA && c != CodeTruncated {
		t.Fatalf("got %s %v, want qa_failed or truncated", c, err)
	}
	t.Log(Reason(err))
}

func TestTranscodeCancel(t *testing.T) {
	testenv.FFmpeg(t)
	ctx, cancel := context.WithCancel(context.Background())
	// Cancelled once ffmpeg has reported progress: the running process
	// group must be stopped and the run must say it was cancelled.
	start := time.Now()
	_, err := Transcode(ctx, Options{Input: testenv.Testdata("h264_aac_720p.mp4"), OutDir: filepath.Join(t.TempDir(), "out"),
		Progress: func(p Progress) {
			if p.Stage == StageEncode && p.Percent > 0 {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("cancel took %s", d)
	}
}
