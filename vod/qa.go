package vod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// aacFrame is one AAC frame at 48 kHz: the granularity of audio durations.
const aacFrame = 1024 * time.Second / 48000

// QA checks the packaged output before it is called ready: both
// manifests parse and list what was planned, every rendition's init and
// media segments exist and are whole fMP4 files, every rendition decodes
// from its own HLS playlist (ffprobe -count_frames decodes every frame)
// at the planned size and format, and its duration matches the source's within
// two frames (video) or three AAC frames (audio: the encoder pads the
// last frame and the source's own last frame may be partial).
func QA(ctx context.Context, ffprobe, dir string, res *Result) error {
	if ffprobe == "" {
		ffprobe = "ffprobe"
	}
	fail := func(format string, a ...any) error {
		return &Error{Code: CodeQA, Message: "QA failed: " + fmt.Sprintf(format, a...)}
	}

	// The master, with gohlslib's parser.
	data, err := os.ReadFile(filepath.Join(dir, MasterPlaylist))
	if err != nil {
		return fail("%s is missing", MasterPlaylist)
	}
	var mv playlist.Multivariant
	if err := mv.Unmarshal(data); err != nil {
		return fail("%s does not parse: %v", MasterPlaylist, err)
	}
	wantVariants := max(1, len(res.Video))
	if len(mv.Variants) != wantVariants {
		return fail("%s lists %d variants, want %d", MasterPlaylist, len(mv.Variants), wantVariants)
	}
	if n := len(mv.Renditions); n != len(res.Audio)+len(res.Subtitles) {
		return fail("%s lists %d audio and subtitle renditions, want %d", MasterPlaylist, n, len(res.Audio)+len(res.Subtitles))
	}
	// The MPD, with encoding/xml: an independent reading of ffmpeg's output.
	mpd, err := readMPD(filepath.Join(dir, DASHManifest))
	if err != nil {
		return fail("%s does not parse: %v", DASHManifest, err)
	}
	if mpd.Type != "static" || len(mpd.Periods) != 1 {
		return fail("%s is not a static single-period MPD", DASHManifest)
	}
	wantSets := len(res.Audio) + len(res.Subtitles)
	if len(res.Video) > 0 {
		wantSets++
	}
	if n := len(mpd.Periods[0].AdaptationSets); n != wantSets {
		return fail("%s has %d adaptation sets, want %d", DASHManifest, n, wantSets)
	}

	for _, r := range append(append([]Rendition(nil), res.Video...), res.Audio...) {
		if err := qaRendition(ctx, ffprobe, dir, r, res); err != nil {
			return err
		}
	}
	for _, s := range res.Subtitles {
		b, err := os.ReadFile(filepath.Join(dir, s))
		if err != nil || !bytes.HasPrefix(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), []byte("WEBVTT")) {
			return fail("subtitles %s are missing or not WebVTT", s)
		}
	}
	if len(res.Video) > 0 {
		for _, f := range []string{PosterFile, ThumbnailsFile, ThumbnailsVTT} {
			if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
				return fail("%s is missing", f)
			}
		}
	}
	return nil
}

// qaRendition checks one rendition: its playlist is a complete fMP4 VOD
// playlist, its files are whole, and it decodes to the planned format
// and the source's duration.
func qaRendition(ctx context.Context, ffprobe, dir string, r Rendition, res *Result) error {
	p, m := res.Plan, res.Media
	fail := func(format string, a ...any) error {
		return &Error{Code: CodeQA, Message: "QA failed: " + fmt.Sprintf(format, a...)}
	}
	data, err := os.ReadFile(filepath.Join(dir, r.Playlist()))
	if err != nil {
		return fail("rendition %s: %s is missing", r.Name, r.Playlist())
	}
	var mp playlist.Media
	if err := mp.Unmarshal(data); err != nil {
		return fail("rendition %s: %s does not parse: %v", r.Name, r.Playlist(), err)
	}
	if !mp.Endlist || len(mp.Segments) == 0 || mp.Map == nil {
		return fail("rendition %s: %s is not a complete fMP4 VOD playlist", r.Name, r.Playlist())
	}
	if err := checkFiles(dir, r, &mp); err != nil {
		return fail("%v", err)
	}
	d, err := decode(ctx, ffprobe, filepath.Join(dir, r.Playlist()))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &Error{Code: CodeQA, Message: fmt.Sprintf("QA failed: rendition %s does not decode", r.Name), Err: err}
	}
	switch r.Kind {
	case "video":
		if d.Width != r.Width || d.Height != r.Height {
			return fail("rendition %s is %dx%d, planned %dx%d", r.Name, d.Width, d.Height, r.Width, r.Height)
		}
		got := time.Duration(float64(d.Frames) / r.FPS * float64(time.Second))
		tol := time.Duration(2.0/r.FPS*float64(time.Second)) + time.Millisecond
		if !near(got, tol, m.Video.Duration, m.Duration) {
			return fail("rendition %s lasts %s, the source %s (more than two frames apart: the input is truncated or damaged)", r.Name, got.Round(time.Millisecond), m.Duration.Round(time.Millisecond))
		}
	case "audio":
		if d.SampleRate != p.AudioCodec.SampleRate || d.Channels != p.AudioCodec.Channels || d.Codec != "aac" {
			return fail("audio %s is %s %d Hz %d channels, want AAC %d Hz %d channels", r.Name, d.Codec, d.SampleRate, d.Channels,
				p.AudioCodec.SampleRate, p.AudioCodec.Channels)
		}
		got := time.Duration(d.Frames) * aacFrame
		var stream time.Duration
		for _, a := range p.Audio {
			if a.Language == r.Language {
				stream = a.Duration
			}
		}
		if !near(got, 3*aacFrame, stream, m.Duration) {
			return fail("audio %s lasts %s, the source %s (the input is truncated or damaged)", r.Name, got.Round(time.Millisecond), m.Duration.Round(time.Millisecond))
		}
	}
	return nil
}

// near reports whether got is within tol of the stream's duration or of
// the container's. Either may be the right reference: a stream can end
// before the container (audio that stops early), and MPEG-TS stream
// durations are estimates from the last timestamps ffprobe read, several
// frames off. A truncated or broken output is far from both.
func near(got, tol, stream, container time.Duration) bool {
	for _, want := range []time.Duration{stream, container} {
		if want > 0 && (got-want).Abs() <= tol {
			return true
		}
	}
	return false
}

// decoded is what ffprobe saw decoding a rendition's first stream.
type decoded struct {
	Codec         string
	Width, Height int
	SampleRate    int
	Channels      int
	Frames        int
}

// decode runs ffprobe -count_frames on a media playlist: it reads every
// segment through the HLS demuxer and decodes every frame; any decode
// error fails it (-v error prints them, and we treat output on stderr as
// failure).
func decode(ctx context.Context, ffprobe, path string) (decoded, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, ffprobe, "-v", "error", "-hide_banner", "-count_frames", "-select_streams", "0",
		"-show_entries", "stream=codec_name,width,height,sample_rate,channels,nb_read_frames", "-print_format", "json", path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Run(); err != nil {
		return decoded{}, fmt.Errorf("ffprobe: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		return decoded{}, errors.New(s)
	}
	var out struct {
		Streams []struct {
			CodecName    string `json:"codec_name"`
			Width        int    `json:"width"`
			Height       int    `json:"height"`
			SampleRate   string `json:"sample_rate"`
			Channels     int    `json:"channels"`
			NbReadFrames string `json:"nb_read_frames"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || len(out.Streams) == 0 {
		return decoded{}, fmt.Errorf("ffprobe found no stream in %s", path)
	}
	s := out.Streams[0]
	d := decoded{Codec: s.CodecName, Width: s.Width, Height: s.Height, Channels: s.Channels}
	d.SampleRate, _ = strconv.Atoi(s.SampleRate)
	d.Frames, _ = strconv.Atoi(s.NbReadFrames)
	if d.Frames <= 0 || math.IsNaN(float64(d.Frames)) {
		return d, fmt.Errorf("no frame decoded from %s", path)
	}
	return d, nil
}
