package vod

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/streamd/streamd/transcode"
)

// Options are one run of the VOD pipeline on one file.
type Options struct {
	Input  string
	OutDir string
	Job    Job
	// FFmpeg and FFprobe are the binaries; "" means the one on PATH.
	FFmpeg, FFprobe string
	// Encoder is the H.264 encoder strategy; nil means libx264.
	Encoder transcode.Encoder
	Log     *slog.Logger
	// Progress, if set, is called from the pipeline's goroutines (one at a
	// time) as the work advances.
	Progress func(Progress)
}

// Stage names a step of the pipeline.
type Stage string

// Stages, in order.
const (
	StageProbe   Stage = "probe"
	StageEncode  Stage = "encode"
	StagePoster  Stage = "poster"
	StagePackage Stage = "package"
	StageQA      Stage = "qa"
	StageDone    Stage = "done"
)

// Progress is how far the whole job is.
type Progress struct {
	Stage Stage
	// Percent of the whole job, 0–100. The encode is 0–90: everything
	// after it is a few seconds, whatever the input's length.
	Percent float64
	// Speed is ffmpeg's (media time per wall time) during the encode.
	Speed float64
}

// Result is what a successful run produced.
type Result struct {
	Media     *Media
	Plan      *Plan
	Video     []Rendition
	Audio     []Rendition
	Subtitles []string // WebVTT files, relative to OutDir
	Elapsed   time.Duration
}

// Transcode runs probe → plan → encode and package → poster → manifests →
// QA. On failure it returns an *Error whose Message is the one line to
// show; OutDir is left as it is for inspection.
func Transcode(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "vod", "input", o.Input)
	report := func(p Progress) {
		if o.Progress != nil {
			o.Progress(p)
		}
	}
	enc := o.Encoder
	if enc == nil {
		enc = transcode.X264{}
	}
	if o.Job.Ladder.Name == "" {
		o.Job = DefaultJob()
	}

	report(Progress{Stage: StageProbe})
	m, err := Probe(ctx, o.FFprobe, o.Input)
	if err != nil {
		return nil, err
	}
	p := NewPlan(m, o.Job)
	log.Info("probed", "duration", m.Duration, "video", m.Video != nil, "audio_tracks", len(m.Audio),
		"subtitle_tracks", len(m.Subtitles), "renditions", len(p.Video), "languages", len(p.Audio))
	if err := prepareDir(o.OutDir, p); err != nil {
		return nil, err
	}

	report(Progress{Stage: StageEncode})
	if err := runFFmpeg(ctx, o.FFmpeg, log, func(fd int) []string { return PackageArgs(p, o.Input, o.OutDir, enc, fd) },
		func(pr transcode.Progress) {
			if m.Duration > 0 {
				pct := min(89.9, 90*pr.OutTime.Seconds()/m.Duration.Seconds())
				report(Progress{Stage: StageEncode, Percent: max(0, pct), Speed: pr.Speed})
			}
		}); err != nil {
		return nil, err
	}
	if m.Video != nil && len(p.Video) > 0 {
		report(Progress{Stage: StagePoster, Percent: 90})
		if err := runFFmpeg(ctx, o.FFmpeg, log, func(int) []string { return PosterArgs(p, o.Input, o.OutDir) }, nil); err != nil {
			return nil, err
		}
	}

	report(Progress{Stage: StagePackage, Percent: 92})
	res, err := writeManifests(o.OutDir, p)
	if err != nil {
		return nil, &Error{Code: CodeInternal, Message: "writing the manifests failed", Err: err}
	}
	res.Media, res.Plan = m, p

	report(Progress{Stage: StageQA, Percent: 94})
	if err := QA(ctx, o.FFprobe, o.OutDir, res); err != nil {
		return nil, err
	}
	res.Elapsed = time.Since(start)
	log.Info("ready", "elapsed", res.Elapsed.Round(time.Millisecond))
	report(Progress{Stage: StageDone, Percent: 100})
	return res, nil
}

// prepareDir makes the output folder and the folders the dash muxer
// writes into (it does not create them). A non-empty folder is refused:
// stale segments of an earlier run would be listed in no manifest but
// served all the same.
func prepareDir(dir string, p *Plan) error {
	if dir == "" {
		return errorf(CodeInvalidJob, "no output folder given")
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return errorf(CodeInvalidJob, "output folder %s is not empty", dir)
	}
	dirs := []string{dir}
	for i := range len(p.Video) + len(p.Audio) {
		dirs = append(dirs, filepath.Join(dir, RepDir(i)))
	}
	if len(p.Subtitles) > 0 {
		dirs = append(dirs, filepath.Join(dir, SubtitlesDir))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return &Error{Code: CodeInternal, Message: "cannot create output folder " + d, Err: err}
		}
	}
	return nil
}

// runFFmpeg runs one ffmpeg as a transcode.Instance (own process group,
// killed as a group when ctx ends), feeding its -progress reports to
// onProgress. args gets the descriptor -progress must write to.
func runFFmpeg(ctx context.Context, ffmpeg string, log *slog.Logger, args func(progressFD int) []string, onProgress func(transcode.Progress)) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return &Error{Code: CodeInternal, Message: "cannot create the progress pipe", Err: err}
	}
	defer pr.Close()
	// The write end is the child's descriptor 3 (ExtraFiles[0]); Start
	// closes our copy, so the reader sees EOF when ffmpeg exits.
	in, err := transcode.StartInstance(ctx, transcode.InstanceConfig{Path: ffmpeg, Args: args(3),
		ExtraFiles: []*os.File{pw}, Log: log})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, transcode.ErrFFmpegNotFound) {
			return &Error{Code: CodeInternal, Message: err.Error(), Err: err}
		}
		return &Error{Code: CodeInternal, Message: "cannot start ffmpeg", Err: err}
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		_ = transcode.ReadProgress(pr, 0, func(p transcode.Progress) {
			if onProgress != nil {
				onProgress(p)
			}
		})
		_, _ = io.Copy(io.Discard, pr)
	}()
	var werr error
	select {
	case <-in.Done():
		werr = in.Wait()
	case <-ctx.Done():
		_ = in.Close()
		<-read
		return ctx.Err()
	}
	<-read
	if werr != nil {
		return ffmpegError(werr)
	}
	return nil
}

// vodHints translate ffmpeg's stderr for a file input; they come before
// transcode.Translate, whose messages speak of a live publication.
var vodHints = []struct {
	re  *regexp.Regexp
	msg string
}{
	{regexp.MustCompile(`Decoder \(codec ([^)]+)\) not found|decoder '([^']+)' not found`), "unsupported codec: this ffmpeg has no decoder for $1$2"},
	{regexp.MustCompile(`moov atom not found|partial file|Truncating packet|End of file`), "the input is truncated"},
	{regexp.MustCompile(`Invalid data found when processing input|error while decoding|non-existing PPS|no frame!`), "the input could not be decoded (damaged or not media)"},
	{regexp.MustCompile(`No space left on device`), "the output disk is full"},
	{regexp.MustCompile(`Permission denied`), "the output folder is not writable"},
}

func ffmpegError(err error) error {
	var ee *transcode.ExitError
	if !errors.As(err, &ee) {
		return &Error{Code: CodeTranscode, Message: "ffmpeg failed", Err: err}
	}
	for _, h := range vodHints {
		for i := len(ee.Lines) - 1; i >= 0; i-- {
			if m := h.re.FindStringSubmatchIndex(ee.Lines[i]); m != nil {
				code := CodeTranscode
				switch {
				case strings.HasPrefix(h.msg, "unsupported"):
					code = CodeUnsupported
				case strings.Contains(h.msg, "truncated"):
					code = CodeTruncated
				}
				return &Error{Code: code, Message: "transcoding failed: " + string(h.re.ExpandString(nil, h.msg, ee.Lines[i], m)), Err: err}
			}
		}
	}
	msg := ee.Reason
	if msg == "" && len(ee.Lines) > 0 {
		msg = ee.Lines[len(ee.Lines)-1]
	}
	if msg == "" {
		msg = fmt.Sprintf("ffmpeg exited with code %d", ee.Code)
	}
	return &Error{Code: CodeTranscode, Message: "transcoding failed: " + msg, Err: err}
}

// writeManifests turns the dash muxer's output into the final layout:
// media playlists in their folders, our master, subtitles in both
// manifests, the thumbnails track.
func writeManifests(dir string, p *Plan) (*Result, error) {
	mpd, err := readMPD(filepath.Join(dir, DASHManifest))
	if err != nil {
		return nil, err
	}
	codecs := mpd.codecs()
	res := &Result{}
	for i, r := range p.Video {
		res.Video = append(res.Video, Rendition{Rep: i, Kind: "video", Name: r.Name, Width: r.Width, Height: r.Height,
			FPS: r.FPS, Codecs: codecs[i]})
	}
	for i, a := range p.Audio {
		res.Audio = append(res.Audio, Rendition{Rep: p.audioRep(i), Kind: "audio", Name: a.Language, Language: a.Language,
			Codecs: codecs[p.audioRep(i)]})
	}
	for _, list := range [][]Rendition{res.Video, res.Audio} {
		for i := range list {
			if err := finishMediaPlaylist(dir, &list[i]); err != nil {
				return nil, err
			}
		}
	}
	if len(res.Video) > 0 {
		for _, s := range p.Subtitles {
			vtt := s.Name + ".vtt"
			if err := os.WriteFile(filepath.Join(dir, SubtitlesDir, s.Name+".m3u8"),
				[]byte(SubtitlePlaylist(vtt, p.Media.Duration)), 0o644); err != nil {
				return nil, err
			}
			res.Subtitles = append(res.Subtitles, SubtitlesDir+"/"+vtt)
		}
		if err := os.WriteFile(filepath.Join(dir, ThumbnailsVTT), []byte(ThumbnailsTrack(p.Thumbnails, p.Media.Duration)), 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, MasterPlaylist), []byte(Master(p, res.Video, res.Audio)), 0o644); err != nil {
		return nil, err
	}
	nsets := len(p.Audio)
	if len(p.Video) > 0 {
		nsets++
	}
	if len(res.Video) > 0 {
		if err := addTextToMPD(filepath.Join(dir, DASHManifest), TextAdaptationSets(p, nsets)); err != nil {
			return nil, err
		}
	}
	if err := os.Remove(filepath.Join(dir, ffmpegMaster)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return res, nil
}
