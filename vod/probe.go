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
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/streamd/streamd/transcode"
)

// Media is what ffprobe says about one input file, reduced to what the
// planner and the QA step need.
type Media struct {
	// Format is ffprobe's format_name ("mov,mp4,m4a,3gp,3g2,mj2").
	Format string
	// Duration is the container's duration (the longest stream).
	Duration time.Duration
	// Video is the first real video stream (cover art is not video); nil
	// for audio-only input.
	Video *VideoStream
	// Audio and Subtitles are in file order.
	Audio     []AudioStream
	Subtitles []SubtitleStream
}

// VideoStream describes the video stream that is transcoded.
type VideoStream struct {
	// Index is the stream's index in the file (the `0:N` of -map).
	Index int
	Codec string
	// Width and Height are the coded size, before SAR and rotation.
	Width, Height int
	// RFrameRate is ffprobe's r_frame_rate (the base rate every timestamp
	// fits), AvgFrameRate the average over the stream; they differ for
	// variable-frame-rate video.
	RFrameRate, AvgFrameRate float64
	// VFR is set when the two rates disagree by more than 2%: phones
	// record VFR, and segmenting needs constant frame durations.
	VFR bool
	// FieldOrder is ffprobe's field_order ("progressive", "tt", "bb", ...).
	FieldOrder string
	// Rotation is the clockwise rotation a player applies for display
	// (0, 90, 180, 270), from the display matrix or the legacy rotate tag.
	Rotation int
	// SARNum/SARDen is the sample aspect ratio; 0/0 when unknown (square).
	SARNum, SARDen int
	Duration       time.Duration
}

// Interlaced reports whether the stream is flagged as interlaced.
func (v *VideoStream) Interlaced() bool {
	switch v.FieldOrder {
	case "tt", "bb", "tb", "bt":
		return true
	}
	return false
}

// FPS is the constant output rate the stream is made into: its nominal
// rate when constant; for VFR the base rate (r_frame_rate) when it is a
// real frame rate, else the average rounded up to a standard rate, so
// motion is never made choppier than the source.
func (v *VideoStream) FPS() float64 {
	switch {
	case !v.VFR && v.RFrameRate > 0 && v.RFrameRate <= 240:
		return v.RFrameRate
	case v.VFR && v.RFrameRate > 0 && v.RFrameRate <= 120:
		return v.RFrameRate
	case v.AvgFrameRate > 0:
		return snapUp(v.AvgFrameRate)
	}
	return 30 // nothing known: the web's most common rate
}

var standardRates = []float64{24000.0 / 1001, 24, 25, 30000.0 / 1001, 30, 48, 50, 60000.0 / 1001, 60}

func snapUp(f float64) float64 {
	for _, r := range standardRates {
		if f <= r*1.001 {
			return r
		}
	}
	return 60
}

// SourceInfo is the input of transcode.Plan.
func (v *VideoStream) SourceInfo() transcode.SourceInfo {
	return transcode.SourceInfo{Width: v.Width, Height: v.Height, FPS: v.FPS(), Interlaced: v.Interlaced(),
		Rotation: v.Rotation, SARNum: v.SARNum, SARDen: v.SARDen}
}

// AudioStream is one audio track.
type AudioStream struct {
	Index      int
	Codec      string
	Language   string // ISO 639-2 from the container ("eng"), "und" when unset
	Channels   int
	SampleRate int
	Default    bool
	Duration   time.Duration
}

// SubtitleStream is one subtitle track.
type SubtitleStream struct {
	Index    int
	Codec    string
	Language string
	// Text is set for codecs that convert to WebVTT (SubRip, ASS, mov_text,
	// WebVTT); bitmap subtitles (DVD, PGS, DVB) would need OCR.
	Text bool
}

var textSubtitleCodecs = map[string]bool{"subrip": true, "srt": true, "ass": true, "ssa": true, "mov_text": true,
	"webvtt": true, "text": true, "microdvd": true, "subviewer": true, "jacosub": true, "sami": true, "realtext": true,
	"stl": true, "pjs": true, "mpl2": true, "vplayer": true}

// Probe runs ffprobe on input and returns its streams, or an *Error whose
// Message says in one line what is wrong with the file (empty, not media,
// truncated, no streams, unsupported codec).
func Probe(ctx context.Context, ffprobe, input string) (*Media, error) {
	fi, err := os.Stat(input)
	switch {
	case err != nil:
		return nil, &Error{Code: CodeNotMedia, Message: fmt.Sprintf("cannot read input %s", input), Err: err}
	case fi.IsDir():
		return nil, errorf(CodeNotMedia, "input %s is a directory, not a media file", input)
	case fi.Size() == 0:
		return nil, errorf(CodeEmptyInput, "input %s is empty (0 bytes)", input)
	}
	if ffprobe == "" {
		ffprobe = "ffprobe"
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, ffprobe, "-v", "error", "-hide_banner", "-print_format", "json",
		"-show_format", "-show_streams", input)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Own process group, killed as a group on cancel, like every ffmpeg we run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return nil, &Error{Code: CodeInternal, Message: "cannot run ffprobe (install ffmpeg)", Err: err}
		}
		return nil, probeFailure(input, stderr.String())
	}
	m, err := parseProbe(stdout.Bytes())
	if err != nil {
		return nil, err
	}
	return m, m.check(input)
}

// probeFailure turns ffprobe's stderr into the one-line reason.
func probeFailure(input, stderr string) *Error {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	switch {
	case strings.Contains(stderr, "moov atom not found"):
		// An MP4/MOV whose index never got written: the recording or the
		// upload stopped before the end.
		return &Error{Code: CodeTruncated, Message: fmt.Sprintf("input %s is truncated: its MP4 index (moov atom) is missing — the upload or recording was cut short", input), Err: errors.New(last)}
	case strings.Contains(stderr, "partial file") || strings.Contains(stderr, "Truncating packet") || strings.Contains(stderr, "unexpected end of file"):
		return &Error{Code: CodeTruncated, Message: fmt.Sprintf("input %s is truncated (it ends before its data does)", input), Err: errors.New(last)}
	case strings.Contains(stderr, "Invalid data found when processing input"):
		return &Error{Code: CodeNotMedia, Message: fmt.Sprintf("input %s is not a media file ffmpeg can read", input), Err: errors.New(last)}
	}
	return &Error{Code: CodeNotMedia, Message: fmt.Sprintf("ffprobe cannot read input %s: %s", input, last)}
}

// ffprobe's JSON, only the fields we read. Numbers that ffprobe prints as
// strings stay strings here and are parsed leniently ("N/A").
type probeJSON struct {
	Streams []struct {
		Index        int               `json:"index"`
		CodecName    string            `json:"codec_name"`
		CodecType    string            `json:"codec_type"`
		Width        int               `json:"width"`
		Height       int               `json:"height"`
		SAR          string            `json:"sample_aspect_ratio"`
		FieldOrder   string            `json:"field_order"`
		RFrameRate   string            `json:"r_frame_rate"`
		AvgFrameRate string            `json:"avg_frame_rate"`
		SampleRate   string            `json:"sample_rate"`
		Channels     int               `json:"channels"`
		Duration     string            `json:"duration"`
		Disposition  map[string]int    `json:"disposition"`
		Tags         map[string]string `json:"tags"`
		SideDataList []struct {
			Type     string  `json:"side_data_type"`
			Rotation float64 `json:"rotation"`
		} `json:"side_data_list"`
	} `json:"streams"`
	Format struct {
		FormatName string `json:"format_name"`
		Duration   string `json:"duration"`
	} `json:"format"`
}

// parseProbe reads `ffprobe -print_format json -show_format -show_streams`.
func parseProbe(data []byte) (*Media, error) {
	var p probeJSON
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, &Error{Code: CodeInternal, Message: "ffprobe printed something that is not its JSON", Err: err}
	}
	m := &Media{Format: p.Format.FormatName, Duration: seconds(p.Format.Duration)}
	for _, s := range p.Streams {
		lang := strings.ToLower(s.Tags["language"])
		if lang == "" {
			lang = "und"
		}
		switch s.CodecType {
		case "video":
			// Cover art (an MP3's or M4A's picture) is a one-frame "video"
			// stream; it is not the programme.
			if s.Disposition["attached_pic"] == 1 || m.Video != nil {
				continue
			}
			v := &VideoStream{Index: s.Index, Codec: s.CodecName, Width: s.Width, Height: s.Height,
				RFrameRate: rate(s.RFrameRate), AvgFrameRate: rate(s.AvgFrameRate), FieldOrder: s.FieldOrder,
				Duration: seconds(s.Duration)}
			if v.RFrameRate > 0 && v.AvgFrameRate > 0 && math.Abs(v.RFrameRate-v.AvgFrameRate)/v.RFrameRate > 0.02 {
				v.VFR = true
			}
			if n, d, ok := ratio(s.SAR); ok {
				v.SARNum, v.SARDen = n, d
			}
			v.Rotation = rotation(s.Tags["rotate"], func() (float64, bool) {
				for _, sd := range s.SideDataList {
					if sd.Type == "Display Matrix" {
						return sd.Rotation, true
					}
				}
				return 0, false
			})
			m.Video = v
		case "audio":
			sr, _ := strconv.Atoi(s.SampleRate)
			m.Audio = append(m.Audio, AudioStream{Index: s.Index, Codec: s.CodecName, Language: lang,
				Channels: s.Channels, SampleRate: sr, Default: s.Disposition["default"] == 1, Duration: seconds(s.Duration)})
		case "subtitle":
			m.Subtitles = append(m.Subtitles, SubtitleStream{Index: s.Index, Codec: s.CodecName, Language: lang,
				Text: textSubtitleCodecs[s.CodecName]})
		}
	}
	return m, nil
}

// check rejects media the pipeline cannot turn into something playable.
func (m *Media) check(input string) error {
	if m.Video == nil && len(m.Audio) == 0 {
		return errorf(CodeNoStreams, "input %s has no video and no audio stream", input)
	}
	if m.Video != nil && (m.Video.Codec == "" || m.Video.Codec == "none") {
		return errorf(CodeUnsupported, "input %s: unsupported video codec (ffmpeg has no decoder for stream %d)", input, m.Video.Index)
	}
	if m.Video != nil && (m.Video.Width <= 0 || m.Video.Height <= 0) {
		return errorf(CodeTruncated, "input %s: the video stream has no picture size (truncated or damaged)", input)
	}
	for _, a := range m.Audio {
		if a.Codec == "" || a.Codec == "none" {
			return errorf(CodeUnsupported, "input %s: unsupported audio codec (ffmpeg has no decoder for stream %d)", input, a.Index)
		}
	}
	if m.Duration <= 0 {
		// A container that cannot say how long it is was cut before its
		// index or header was complete.
		return errorf(CodeTruncated, "input %s is truncated: it has no duration", input)
	}
	return nil
}

// rotation returns the clockwise display rotation. The legacy `rotate`
// tag is clockwise; ffprobe prints the display matrix's angle
// counter-clockwise, so it is negated (ffmpeg's own autorotate does the
// same: a matrix of 90 is shown turned a quarter counter-clockwise).
func rotation(tag string, matrix func() (float64, bool)) int {
	deg := 0.0
	if r, ok := matrix(); ok {
		deg = -r
	} else if t, err := strconv.ParseFloat(tag, 64); err == nil {
		deg = t
	}
	r := int(math.Round(deg/90)) * 90 % 360
	if r < 0 {
		r += 360
	}
	return r
}

func seconds(s string) time.Duration {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

var ratioRE = regexp.MustCompile(`^(\d+)[:/](\d+)$`)

func ratio(s string) (int, int, bool) {
	m := ratioRE.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, false
	}
	n, _ := strconv.Atoi(m[1])
	d, _ := strconv.Atoi(m[2])
	if n <= 0 || d <= 0 {
		return 0, 0, false
	}
	return n, d, true
}

func rate(s string) float64 {
	n, d, ok := ratio(s)
	if !ok {
		return 0
	}
	return float64(n) / float64(d)
}
