package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/streamd/streamd/vod"
)

const transcodeUsage = `usage: streamd transcode INPUT --out DIR [--job FILE] [--ffmpeg PATH] [--ffprobe PATH] [-v]

Runs the VOD pipeline on one file without a server: probe, ABR ladder
(2160p-360p H.264, never upscaled), AAC 48 kHz stereo per language,
WebVTT subtitles, CMAF segments with an HLS master (DIR/index.m3u8) and a
DASH MPD (DIR/manifest.mpd), poster.jpg, thumbnails.jpg + thumbnails.vtt,
then QA. Exits 1 with a one-line reason when the input or the job is bad.
`

// cmdTranscode is `streamd transcode`. Progress goes to stderr: a bar
// redrawn in place on a terminal, plain `progress N%` lines otherwise
// (CI logs); the result summary goes to stdout.
func cmdTranscode(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("transcode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, transcodeUsage) }
	out := fs.String("out", "", "output folder (created; must be empty)")
	jobPath := fs.String("job", "", "job file (JSON: ladder or rungs, segment_duration, thumbnail_interval, audio_bitrate)")
	ffmpeg := fs.String("ffmpeg", "", "ffmpeg binary (default: ffmpeg on PATH)")
	ffprobe := fs.String("ffprobe", "", "ffprobe binary (default: ffprobe on PATH)")
	verbose := fs.Bool("v", false, "log each step (and ffmpeg's warnings)")
	// INPUT may come before or after the flags: the flag package stops at
	// the first positional argument, so take it out first.
	var input string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		input, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if input == "" && fs.NArg() > 0 {
		input = fs.Arg(0)
	} else if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "streamd transcode: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if input == "" || *out == "" {
		fs.Usage()
		return 2
	}

	level := slog.LevelError
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	job := vod.DefaultJob()
	if *jobPath != "" {
		j, err := vod.LoadJob(*jobPath)
		if err != nil {
			fmt.Fprintln(stderr, "streamd transcode:", vod.Reason(err))
			return 1
		}
		// Settings of a MediaConvert job that streamd accepts but does not
		// act on (Destination, Role, ...): said, never silently dropped.
		for _, n := range j.Notes {
			fmt.Fprintf(stderr, "note: %s: %s\n", *jobPath, n)
		}
		job = j
	}

	bar := newProgressPrinter(stderr, writerIsTerminal(stderr))
	res, err := vod.Transcode(ctx, vod.Options{Input: input, OutDir: *out, Job: job, FFmpeg: *ffmpeg, FFprobe: *ffprobe,
		Log: log, Progress: bar.update})
	bar.finish()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "streamd transcode: interrupted")
			return 130
		}
		// One line: the reason a person can act on. The cause (ffmpeg's
		// own lines) is in the log with -v.
		log.Info("transcode failed", "code", vod.ErrorCode(err), "err", err)
		fmt.Fprintln(stderr, "streamd transcode:", vod.Reason(err))
		return 1
	}
	printSummary(stdout, *out, res)
	return 0
}

func printSummary(w io.Writer, dir string, r *vod.Result) {
	var vids, auds []string
	for _, v := range r.Video {
		vids = append(vids, fmt.Sprintf("%s %dx%d", v.Name, v.Width, v.Height))
	}
	for _, a := range r.Audio {
		auds = append(auds, a.Language)
	}
	fmt.Fprintf(w, "ready in %s: %s/%s (HLS), %s/%s (DASH)\n", r.Elapsed.Round(100*time.Millisecond), dir, vod.MasterPlaylist, dir, vod.DASHManifest)
	if len(vids) > 0 {
		fmt.Fprintf(w, "  video:     %s\n", strings.Join(vids, ", "))
	}
	if len(auds) > 0 {
		fmt.Fprintf(w, "  audio:     %s (AAC 48 kHz stereo)\n", strings.Join(auds, ", "))
	}
	if len(r.Subtitles) > 0 {
		fmt.Fprintf(w, "  subtitles: %s\n", strings.Join(r.Subtitles, ", "))
	}
	if len(vids) > 0 {
		fmt.Fprintf(w, "  images:    %s, %s + %s\n", vod.PosterFile, vod.ThumbnailsFile, vod.ThumbnailsVTT)
	}
}

func writerIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressPrinter draws `\r[#####     ] 42% 1.8x` on a terminal, and on
// anything else prints `progress 42%` once per whole percent, so a CI log
// gets about a hundred lines, not thousands.
type progressPrinter struct {
	w    io.Writer
	tty  bool
	mu   sync.Mutex
	last int
	drew bool
}

func newProgressPrinter(w io.Writer, tty bool) *progressPrinter {
	return &progressPrinter{w: w, tty: tty, last: -1}
}

func (p *progressPrinter) update(pr vod.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pct := int(pr.Percent)
	if p.tty {
		fmt.Fprint(p.w, progressBar(pr, 30))
		p.drew = true
		return
	}
	if pct > p.last {
		p.last = pct
		fmt.Fprintf(p.w, "progress %d%% %s\n", pct, pr.Stage)
	}
}

// finish ends the bar's line so the next message starts on its own.
func (p *progressPrinter) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.drew {
		fmt.Fprintln(p.w)
	}
}

// progressBar renders one redraw of the terminal bar.
func progressBar(pr vod.Progress, width int) string {
	filled := min(width, max(0, int(pr.Percent*float64(width)/100)))
	speed := ""
	if pr.Speed > 0 {
		speed = fmt.Sprintf(" %.1fx", pr.Speed)
	}
	// Trailing spaces wipe what a longer previous line left behind.
	return fmt.Sprintf("\r[%s%s] %3d%% %-7s%s   ", strings.Repeat("#", filled), strings.Repeat(" ", width-filled),
		int(pr.Percent), pr.Stage, speed)
}
