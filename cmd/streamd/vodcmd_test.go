package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/vod"
)

func runTranscode(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cmdTranscode(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestTranscodeCLI(t *testing.T) {
	testenv.FFmpeg(t)
	testenv.FFprobe(t)
	dir := t.TempDir()
	job := filepath.Join(dir, "job.json")
	os.WriteFile(job, []byte(`{"rungs":[{"name":"180p","height":180,"video_bitrate":"200k","preset":"ultrafast"}],"segment_duration":"1s"}`), 0o644)
	out := filepath.Join(dir, "out")
	// Flags after INPUT, as the README writes it.
	code, stdout, stderr := runTranscode(testenv.Testdata("vod_multilang_subs.mkv"), "--out", out, "--job", job)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "ready in") || !strings.Contains(stdout, "180p 320x180") || !strings.Contains(stdout, "eng, fra") {
		t.Errorf("summary: %s", stdout)
	}
	// Not a terminal: plain lines, once per percent, ending at 100%.
	if strings.Contains(stderr, "\r") || !strings.Contains(stderr, "progress 0% probe\n") || !strings.HasSuffix(stderr, "progress 100% done\n") {
		t.Errorf("progress lines: %q", stderr)
	}
	for _, f := range []string{"index.m3u8", "manifest.mpd", "poster.jpg", "thumbnails.vtt", "thumbnails.jpg", "subs/eng.vtt", "r0/index.m3u8"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	// Flags first works too; a non-empty folder is refused.
	code, _, stderr = runTranscode("--out", out, testenv.Testdata("vod_audio_only.m4a"))
	if code != 1 || !strings.Contains(stderr, "is not empty") {
		t.Errorf("non-empty out: %d %q", code, stderr)
	}
}

func TestTranscodeCLIBadInput(t *testing.T) {
	testenv.FFprobe(t)
	dir := t.TempDir()
	badJob := filepath.Join(dir, "bad.json")
	os.WriteFile(badJob, []byte(`{"ladder":"huge"}`), 0o644)
	for _, c := range []struct {
		args []string
		code int
		line string
	}{
		{[]string{testenv.Testdata("not_media.txt"), "--out", filepath.Join(dir, "a")}, 1, "is not a media file ffmpeg can read"},
		{[]string{testenv.Testdata("vod_empty.mp4"), "--out", filepath.Join(dir, "b")}, 1, "is empty (0 bytes)"},
		{[]string{testenv.Testdata("vod_truncated.mp4"), "--out", filepath.Join(dir, "c")}, 1, "is truncated"},
		{[]string{testenv.Testdata("h264_aac_360p.mp4"), "--out", filepath.Join(dir, "d"), "--job", badJob}, 1, `unknown ladder "huge"`},
	} {
		code, stdout, stderr := runTranscode(c.args...)
		// The reason is the last line, on its own; the progress lines
		// before it are status.
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		last := lines[len(lines)-1]
		if code != c.code || stdout != "" || !strings.HasPrefix(last, "streamd transcode: ") || !strings.Contains(last, c.line) {
			t.Errorf("%v: exit %d, last line %q, want exit %d with %q", c.args, code, last, c.code, c.line)
		}
	}
	if code, _, stderr := runTranscode(); code != 2 || !strings.Contains(stderr, "usage: streamd transcode") {
		t.Errorf("no args: %d %q", code, stderr)
	}
	if code, _, _ := runTranscode("in.mp4"); code != 2 {
		t.Errorf("no --out: %d", code)
	}
}

func TestTranscodeProgressBar(t *testing.T) {
	got := progressBar(vod.Progress{Stage: vod.StageEncode, Percent: 42.7, Speed: 1.83}, 10)
	if want := "\r[####      ]  42% encode  1.8x   "; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	var b bytes.Buffer
	p := newProgressPrinter(&b, true)
	p.update(vod.Progress{Stage: vod.StageEncode, Percent: 10})
	p.update(vod.Progress{Stage: vod.StageDone, Percent: 100})
	p.finish()
	if s := b.String(); strings.Count(s, "\r") != 2 || !strings.HasSuffix(s, "\n") || !strings.Contains(s, "["+strings.Repeat("#", 30)+"] 100% done") {
		t.Errorf("terminal output %q", s)
	}
	b.Reset()
	p = newProgressPrinter(&b, false)
	for _, pct := range []float64{0, 0.5, 1, 1.2, 50, 100} {
		p.update(vod.Progress{Stage: vod.StageEncode, Percent: pct})
	}
	if want := "progress 0% encode\nprogress 1% encode\nprogress 50% encode\nprogress 100% encode\n"; b.String() != want {
		t.Errorf("plain output %q, want %q", b.String(), want)
	}
}
