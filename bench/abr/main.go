// Command abr prints the live ABR ladder figures of issue 6, side by side
// in one run:
//
//   - the CPU time of streamd (the server plus its reaped ffmpeg worker)
//     turning one published 720p30 stream into 720p/480p/360p, against the
//     best hand-written ffmpeg command producing the same renditions from
//     the same file (goal: ours/reference ≤ 1.05);
//   - the real-time speed and CPU time of that reference at each x264
//     preset on this machine.
//
// The input (testsrc2 + sine, 1280x720p30 H.264 with a 2 s GOP, AAC 48 kHz)
// is generated once into a temp dir; generating it is not measured.
//
// Usage (from the repository root):
//
//	go run ./bench/abr [-seconds 60] [-presets ultrafast,veryfast,faster]
//	                   [-streamd-presets veryfast] [-runs 1] [-paced]
//	                   [-bin bin/streamd] [-build]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// rung is one rendition of the benchmark ladder; the reference and
// streamd's ladder are both built from this table.
type rung struct {
	name string
	w, h int
	kbps int
}

var ladder = []rung{
	{"720p", 1280, 720, 3000},
	{"480p", 854, 480, 1200},
	{"360p", 640, 360, 800},
}

const (
	fps        = 30
	segSeconds = 2
	audioRate  = "128k"
	goal       = 1.05
)

// issueFigures are the issue's reference measurements for a 60 s clip on
// "this machine": CPU seconds and real-time speed.
var issueFigures = map[string]struct{ cpu, speed float64 }{
	"ultrafast": {16.2, 6.1},
	"veryfast":  {37.6, 3.06},
	"faster":    {55.1, 2.1},
}

func main() {
	seconds := flag.Int("seconds", 60, "length of the generated 720p30 input, in seconds")
	presets := flag.String("presets", "ultrafast,veryfast,faster", "x264 presets for the reference speed figures")
	sdPresets := flag.String("streamd-presets", "veryfast", "presets at which streamd is measured against the reference (each takes the clip's real duration)")
	runs := flag.Int("runs", 1, "reference+streamd pairs per streamd preset (the median is reported)")
	paced := flag.Bool("paced", false, "also run the reference with -re (paced like a live input) at each streamd preset")
	bin := flag.String("bin", "bin/streamd", "streamd binary (built with `go build` if missing)")
	build := flag.Bool("build", false, "rebuild -bin even if it exists")
	flag.Parse()

	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		s := <-ch
		cleanup()
		fmt.Fprintf(os.Stderr, "abr bench: interrupted (%s); everything it started was stopped\n", s)
		os.Exit(130)
	}()

	err := run(config{
		seconds: *seconds, presets: splitList(*presets), sdPresets: splitList(*sdPresets),
		runs: *runs, paced: *paced, bin: *bin, build: *build,
	})
	cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "abr bench: FAILED:", err)
		os.Exit(1)
	}
}

type config struct {
	seconds            int
	presets, sdPresets []string
	runs               int
	paced              bool
	bin                string
	build              bool
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

var validPresets = []string{"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"}

// measurement is one encode of the clip: CPU (user+sys) and wall time,
// and the media each rendition ended up with.
type measurement struct {
	user, sys float64 // seconds
	wall      float64 // seconds
	// For streamd: the server's own CPU and its children's (the ffmpeg
	// worker, reaped), user+sys each.
	own, children float64
	media         map[string]float64 // rendition → seconds listed in its playlist
	segments      map[string]int
	load0, load1  string // 1-min load average before and after
	endLag        float64
	workerArgs    []string
	health        string
}

func (m measurement) cpu() float64 { return m.user + m.sys }

func run(c config) error {
	if c.seconds < 4 {
		return errors.New("-seconds must be at least 4 (two segments)")
	}
	if c.runs < 1 {
		return errors.New("-runs must be at least 1")
	}
	for _, p := range append(slices.Clone(c.presets), c.sdPresets...) {
		if !slices.Contains(validPresets, p) {
			return fmt.Errorf("%q is not an x264 preset (%s)", p, strings.Join(validPresets, ", "))
		}
	}
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		return errors.New("ffmpeg not found on PATH (install it: `bash scripts/deps.sh bench` or apt-get install ffmpeg)")
	}
	if len(c.sdPresets) > 0 {
		if err := ensureStreamd(c.bin, c.build); err != nil {
			return err
		}
	}
	root, err := os.MkdirTemp("", "streamd-abr-bench-")
	if err != nil {
		return err
	}
	registerCleanup(func() { os.RemoveAll(root) })

	start := time.Now()
	fmt.Printf("streamd live ABR benchmark (issue 6) — %s\n", start.Format("2006-01-02 15:04:05 MST"))
	fmt.Printf("machine: %d CPUs (%s), load average %s, %s\n", runtime.NumCPU(), cpuModel(), loadavg(true), ffmpegVersion(ffmpeg))
	if len(c.sdPresets) > 0 {
		fmt.Printf("streamd: %s (built %s), tree at %s\n", c.bin, modTime(c.bin), gitHead())
	}

	input := filepath.Join(root, "input.mp4")
	t0 := time.Now()
	if err := generateInput(input, c.seconds); err != nil {
		return fmt.Errorf("generating the input: %w", err)
	}
	fi, _ := os.Stat(input)
	fmt.Printf("input: %d s of 1280x720p30 H.264 (testsrc2, libx264 veryfast, -g 60 -keyint_min 60 -sc_threshold 0) + AAC 128k 48 kHz stereo sine, %.1f MB (generated in %.1f s, not measured)\n",
		c.seconds, float64(fi.Size())/1e6, time.Since(t0).Seconds())
	var names []string
	for _, r := range ladder {
		names = append(names, fmt.Sprintf("%s %dx%d %dk", r.name, r.w, r.h, r.kbps))
	}
	fmt.Printf("ladder: %s; libx264 high, maxrate = bitrate, bufsize = 2x, keyframes forced every %d s; AAC %s 48 kHz stereo encoded once\n\n",
		strings.Join(names, ", "), segSeconds, audioRate)

	// Presets in order: the speed list, then streamd-only ones.
	order := slices.Clone(c.presets)
	for _, p := range c.sdPresets {
		if !slices.Contains(order, p) {
			order = append(order, p)
		}
	}
	refs := map[string][]measurement{}
	pacedRefs := map[string]measurement{}
	ours := map[string][]measurement{}
	var refCmd []string
	for _, p := range order {
		withStreamd := slices.Contains(c.sdPresets, p)
		n := 1
		if withStreamd {
			n = c.runs
		}
		for i := 0; i < n; i++ {
			// The reference right before streamd, so both see the same
			// machine load.
			fmt.Fprintf(os.Stderr, "… reference ffmpeg, preset %s (run %d/%d)\n", p, i+1, n)
			args := referenceArgs(input, filepath.Join(root, "ref"), p, false)
			m, err := runReference(ffmpeg, args, filepath.Join(root, "ref"))
			if err != nil {
				return fmt.Errorf("reference ffmpeg at %s: %w", p, err)
			}
			refs[p] = append(refs[p], m)
			// Print the command of the headline (first streamd) preset.
			if refCmd == nil || len(c.sdPresets) > 0 && p == c.sdPresets[0] {
				refCmd = args
			}
			if !withStreamd {
				continue
			}
			fmt.Fprintf(os.Stderr, "… streamd, preset %s (run %d/%d, takes ~%d s)\n", p, i+1, n, c.seconds)
			o, err := runStreamd(c.bin, input, filepath.Join(root, "streamd"), p, float64(c.seconds))
			if err != nil {
				return fmt.Errorf("streamd at %s: %w", p, err)
			}
			ours[p] = append(ours[p], o)
		}
		if withStreamd && c.paced {
			fmt.Fprintf(os.Stderr, "… reference ffmpeg with -re, preset %s (takes ~%d s)\n", p, c.seconds)
			m, err := runReference(ffmpeg, referenceArgs(input, filepath.Join(root, "ref"), p, true), filepath.Join(root, "ref"))
			if err != nil {
				return fmt.Errorf("paced reference ffmpeg at %s: %w", p, err)
			}
			pacedRefs[p] = m
		}
	}

	report(c, order, refs, pacedRefs, ours, refCmd, root)
	fmt.Printf("\ntotal bench time %.0f s; load average at the end %s\n", time.Since(start).Seconds(), loadavg(true))
	return nil
}

func report(c config, order []string, refs map[string][]measurement, pacedRefs map[string]measurement, ours map[string][]measurement, refCmd []string, root string) {
	media := float64(c.seconds)
	var notes []string

	fmt.Println("Reference: one hand-written ffmpeg command, as fast as possible (CPU = user+sys of ffmpeg, rusage)")
	fmt.Printf("%-10s %9s %12s %8s %9s %14s  %s\n", "preset", "CPU", "CPU/media s", "wall", "speed", "issue (60 s)", "load 1m before→after")
	for _, p := range order {
		ms := refs[p]
		m := medianBy(ms, measurement.cpu)
		speed := media / m.wall
		issue := "—"
		if f, ok := issueFigures[p]; ok {
			issue = fmt.Sprintf("%.1f s %.2fx", f.cpu, f.speed)
		}
		runsNote := ""
		if len(ms) > 1 {
			runsNote = fmt.Sprintf("  (median of %d)", len(ms))
		}
		fmt.Printf("%-10s %7.2f s %12.3f %6.2f s %8.2fx %14s  %s→%s%s\n", p, m.cpu(), m.cpu()/media, m.wall, speed, issue, m.load0, m.load1, runsNote)
		if speed < 1 {
			notes = append(notes, fmt.Sprintf("note: at %s the reference runs at %.2fx, below real time: this machine cannot transcode this ladder live at that preset (short by %.0f %%)", p, speed, (1-speed)*100))
		}
		if bad := shortRenditions(m, media); bad != "" {
			notes = append(notes, fmt.Sprintf("note: reference at %s produced less media than the input: %s", p, bad))
		}
	}

	if len(c.sdPresets) > 0 {
		fmt.Println()
		fmt.Println("streamd: the same file published with `ffmpeg -re -c copy -f flv` over RTMP (publisher not counted); CPU = streamd + its reaped ffmpeg worker (/proc utime+stime+cutime+cstime)")
		fmt.Printf("%-10s %10s %10s %18s %10s %7s %10s  %s\n", "preset", "reference", "streamd", "= own + ffmpeg", "ratio", "goal", "ENDLIST lag", "load 1m before→after")
		for _, p := range c.sdPresets {
			ourRuns := ours[p]
			o := medianBy(ourRuns, measurement.cpu)
			r := medianBy(refs[p], measurement.cpu)
			ratio := o.cpu() / r.cpu()
			verdict := "met"
			if ratio > goal {
				verdict = "MISSED"
				notes = append(notes, fmt.Sprintf("note: at %s streamd uses %.3fx the reference's CPU, missing the ≤ %.2f goal by %.1f %% points (%.2f s of CPU over the allowance)",
					p, ratio, goal, (ratio-goal)*100, o.cpu()-goal*r.cpu()))
			}
			fmt.Printf("%-10s %8.2f s %8.2f s %7.2f + %6.2f s %9.3fx %7s %9.1f s  %s→%s\n",
				p, r.cpu(), o.cpu(), o.own, o.children, ratio, verdict, o.endLag, o.load0, o.load1)
			if len(ourRuns) > 1 {
				var rs []string
				for i := range ourRuns {
					rs = append(rs, fmt.Sprintf("%.3f", ourRuns[i].cpu()/refs[p][i].cpu()))
				}
				fmt.Printf("%-10s per-run ratios (reference and streamd back to back): %s; medians shown above\n", "", strings.Join(rs, ", "))
			}
			if pr, ok := pacedRefs[p]; ok {
				fmt.Printf("%-10s reference paced with -re: %.2f s CPU (%.3fx unpaced) → streamd/paced reference %.3fx, its ffmpeg worker alone %.3fx (separates the cost of running at live pace)\n",
					"", pr.cpu(), pr.cpu()/r.cpu(), o.cpu()/pr.cpu(), o.children/pr.cpu())
			}
			fmt.Printf("%-10s streamd's own share: %.1f %% of the reference's CPU; its ffmpeg worker alone: %.3fx the reference\n", "", o.own/r.cpu()*100, o.children/r.cpu())
			if o.health != "" {
				fmt.Printf("%-10s worker health (from /metrics after the run): %s\n", "", o.health)
			}
			if bad := shortRenditions(o, media); bad != "" {
				notes = append(notes, fmt.Sprintf("note: streamd at %s produced less media than the input (dropped units?): %s — its CPU figure is then too low", p, bad))
			}
		}
	}

	fmt.Println()
	fmt.Println("Media out (seconds in each rendition's playlist, segments before the sliding window counted at 2 s; segments):")
	for _, p := range order {
		fmt.Printf("  reference %-9s %s\n", p, mediaSummary(refs[p][0]))
		if ourRuns, ok := ours[p]; ok {
			fmt.Printf("  streamd   %-9s %s\n", p, mediaSummary(ourRuns[0]))
		}
	}

	fmt.Println()
	fmt.Println("Reference command (other rows change only the -preset values; -paced adds -re before -i; $TMP is the bench's temp dir):")
	fmt.Println("  " + shellJoin("ffmpeg", refCmd, root))
	for _, p := range c.sdPresets {
		if ourRuns := ours[p]; len(ourRuns) > 0 && len(ourRuns[0].workerArgs) > 0 {
			fmt.Printf("streamd's ffmpeg worker at %s (read from /proc/PID/cmdline while it ran):\n", p)
			fmt.Println("  " + shellJoin("", ourRuns[0].workerArgs, root))
			break
		}
	}
	fmt.Printf("Publisher: ffmpeg -hide_banner -loglevel error -re -i $TMP/input.mp4 -c copy -f flv rtmp://127.0.0.1:PORT/live/KEY\n")
	fmt.Printf("Input: %s\n", shellJoin("ffmpeg", inputArgs("$TMP/input.mp4", c.seconds), ""))
	fmt.Printf("Bench: go run ./bench/abr -seconds %d -presets %s -streamd-presets %s -runs %d%s\n",
		c.seconds, strings.Join(c.presets, ","), strings.Join(c.sdPresets, ","), c.runs, map[bool]string{true: " -paced"}[c.paced])

	if len(notes) > 0 {
		fmt.Println()
		for _, n := range notes {
			fmt.Println(n)
		}
	}
}

func medianBy(ms []measurement, key func(measurement) float64) measurement {
	s := slices.Clone(ms)
	sort.Slice(s, func(i, j int) bool { return key(s[i]) < key(s[j]) })
	return s[len(s)/2]
}

func shortRenditions(m measurement, media float64) string {
	var bad []string
	for _, r := range ladder {
		if d := m.media[r.name]; d < media-0.5 {
			bad = append(bad, fmt.Sprintf("%s %.2f s of %.0f s", r.name, d, media))
		}
	}
	return strings.Join(bad, ", ")
}

func mediaSummary(m measurement) string {
	var parts []string
	for _, r := range ladder {
		parts = append(parts, fmt.Sprintf("%s %.2f s (%d)", r.name, m.media[r.name], m.segments[r.name]))
	}
	return strings.Join(parts, ", ")
}

// ---- input ----

func inputArgs(out string, seconds int) []string {
	return []string{"-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=1280x720:rate=%d", fps),
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", strconv.Itoa(seconds),
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
		"-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
		"-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2",
		"-movflags", "+faststart", out}
}

func generateInput(out string, seconds int) error {
	cmd := exec.Command("ffmpeg", inputArgs(out, seconds)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := startTracked(cmd); err != nil {
		return err
	}
	defer untrack(cmd)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%v: %s", err, lastLine(stderr.String()))
	}
	return nil
}

// ---- reference ----

// referenceArgs is the hand-written command: decode once, split + scale,
// libx264 per rung with the same rate control and keyframe policy as
// streamd's encoder arguments, AAC once, fMP4 HLS into outDir.
func referenceArgs(input, outDir, preset string, paced bool) []string {
	a := []string{"-hide_banner", "-nostats", "-loglevel", "error", "-y"}
	if paced {
		a = append(a, "-re")
	}
	a = append(a, "-i", input)
	var g strings.Builder
	fmt.Fprintf(&g, "[0:v:0]split=%d", len(ladder))
	for i := range ladder {
		fmt.Fprintf(&g, "[s%d]", i)
	}
	for i, r := range ladder {
		fmt.Fprintf(&g, ";[s%d]scale=w=%d:h=%d,setsar=1,format=yuv420p[v%d]", i, r.w, r.h, i)
	}
	a = append(a, "-filter_complex", g.String())
	for i := range ladder {
		a = append(a, "-map", fmt.Sprintf("[v%d]", i))
	}
	a = append(a, "-map", "0:a:0")
	gop := strconv.Itoa(fps * segSeconds)
	for i, r := range ladder {
		o := func(k string) string { return fmt.Sprintf("-%s:v:%d", k, i) }
		br := strconv.Itoa(r.kbps) + "k"
		a = append(a,
			o("c"), "libx264", o("preset"), preset, o("profile"), "high",
			o("g"), gop, o("keyint_min"), gop, o("sc_threshold"), "0",
			o("b"), br, o("maxrate"), br, o("bufsize"), strconv.Itoa(2*r.kbps)+"k",
			o("force_key_frames"), fmt.Sprintf("expr:gte(t,n_forced*%d)", segSeconds))
	}
	a = append(a, "-c:a", "aac", "-b:a", audioRate, "-ar", "48000", "-ac", "2")
	// ffmpeg's HLS muxer refuses one stream in two variants, so the one
	// AAC encode is its own rendition (an audio group every variant uses).
	vsm := []string{"a:0,agroup:aac,name:audio"}
	for i, r := range ladder {
		vsm = append(vsm, fmt.Sprintf("v:%d,agroup:aac,name:%s", i, r.name))
	}
	a = append(a, "-f", "hls", "-hls_time", strconv.Itoa(segSeconds), "-hls_playlist_type", "vod",
		"-hls_segment_type", "fmp4", "-hls_flags", "independent_segments",
		"-hls_segment_filename", filepath.Join(outDir, "%v", "seg%05d.m4s"),
		"-master_pl_name", "master.m3u8",
		"-var_stream_map", strings.Join(vsm, " "),
		filepath.Join(outDir, "%v", "index.m3u8"))
	return a
}

func renditionNames() []string {
	var out []string
	for _, r := range ladder {
		out = append(out, r.name)
	}
	return out
}

func runReference(ffmpeg string, args []string, outDir string) (measurement, error) {
	os.RemoveAll(outDir)
	for _, name := range append(renditionNames(), "audio") {
		if err := os.MkdirAll(filepath.Join(outDir, name), 0o755); err != nil {
			return measurement{}, err
		}
	}
	defer os.RemoveAll(outDir)
	m := measurement{load0: loadavg(false)}
	cmd := exec.Command(ffmpeg, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	if err := startTracked(cmd); err != nil {
		return m, err
	}
	err := cmd.Wait()
	m.wall = time.Since(t0).Seconds()
	untrack(cmd)
	m.load1 = loadavg(false)
	if err != nil {
		return m, fmt.Errorf("%v: %s", err, lastLine(stderr.String()))
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return m, errors.New("no rusage for the ffmpeg child")
	}
	m.user = tv(ru.Utime)
	m.sys = tv(ru.Stime)
	m.media, m.segments = map[string]float64{}, map[string]int{}
	for _, r := range ladder {
		b, err := os.ReadFile(filepath.Join(outDir, r.name, "index.m3u8"))
		if err != nil {
			return m, fmt.Errorf("rendition %s: %w", r.name, err)
		}
		if !bytes.Contains(b, []byte("#EXT-X-ENDLIST")) {
			return m, fmt.Errorf("rendition %s has no EXT-X-ENDLIST", r.name)
		}
		m.media[r.name], m.segments[r.name] = playlistDuration(b)
	}
	if b, err := os.ReadFile(filepath.Join(outDir, "audio", "index.m3u8")); err != nil || !bytes.Contains(b, []byte("#EXT-X-ENDLIST")) {
		return m, errors.New("the audio rendition is missing or has no EXT-X-ENDLIST")
	}
	if _, err := os.Stat(filepath.Join(outDir, "master.m3u8")); err != nil {
		return m, errors.New("no master playlist written")
	}
	return m, nil
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// playlistDuration sums a media playlist's EXTINF durations. A live
// playlist is a sliding window: the segments that slid out
// (EXT-X-MEDIA-SEQUENCE of them) are counted at the forced keyframe
// interval, which is every segment's duration but the last.
func playlistDuration(b []byte) (float64, int) {
	var d float64
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "#EXT-X-MEDIA-SEQUENCE:"); ok {
			seq, _ := strconv.Atoi(v)
			d += float64(seq * segSeconds)
			n += seq
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "#EXTINF:"); ok {
			v, _, _ = strings.Cut(v, ",")
			f, _ := strconv.ParseFloat(v, 64)
			d += f
			n++
		}
	}
	return d, n
}

// ---- streamd ----

func ensureStreamd(bin string, force bool) error {
	if _, err := os.Stat(bin); err == nil && !force {
		return nil
	}
	if _, err := os.Stat("cmd/streamd"); err != nil {
		return fmt.Errorf("%s is missing and ./cmd/streamd is not here to build it: run from the repository root", bin)
	}
	fmt.Fprintf(os.Stderr, "… go build -o %s ./cmd/streamd\n", bin)
	out, err := exec.Command("go", "build", "-o", bin, "./cmd/streamd").CombinedOutput()
	if err != nil {
		return fmt.Errorf("building %s: %v: %s", bin, err, lastLine(string(out)))
	}
	return nil
}

const streamKey = "abrbenchkey"

func ladderEnv(preset string) string {
	var rs []string
	for _, r := range ladder {
		rs = append(rs, fmt.Sprintf("{name: %s, width: %d, height: %d, video_bitrate: %dk, profile: high, preset: %s}", r.name, r.w, r.h, r.kbps, preset))
	}
	return "[{name: bench, rungs: [" + strings.Join(rs, ", ") + "], audio: {bitrate: " + audioRate + ", sample_rate: 48000, channels: 2}}]"
}

type server struct {
	cmd        *exec.Cmd
	http, rtmp string
	done       chan struct{}
	logMu      sync.Mutex
	logTail    []string
	workers    map[int]bool // worker pids seen (each leads its own process group)
}

func (s *server) url(p string) string { return "http://" + s.http + p }

func (s *server) tail() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	for i := len(s.logTail) - 1; i >= 0; i-- {
		if strings.Contains(s.logTail[i], `"level":"ERROR"`) || strings.Contains(s.logTail[i], `"level":"WARN"`) {
			return s.logTail[i]
		}
	}
	if len(s.logTail) > 0 {
		return s.logTail[len(s.logTail)-1]
	}
	return "(no log output)"
}

// stop ends streamd gracefully (it stops its workers), then kills whatever
// is left: its process group and every worker's.
func (s *server) stop() {
	for _, p := range ffmpegChildren(s.cmd.Process.Pid) {
		s.workers[p] = true
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
	for p := range s.workers {
		syscall.Kill(-p, syscall.SIGKILL)
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

func startServer(bin, dir, preset string) (*server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(),
		"STREAMD_HTTP_ADDR=127.0.0.1:0", "STREAMD_RTMP_ADDR=127.0.0.1:0", "STREAMD_RTSP_ADDR=",
		"STREAMD_RTSP_UDP_RTP_ADDR=", "STREAMD_RTSP_UDP_RTCP_ADDR=",
		"STREAMD_DATA_DIR="+filepath.Join(dir, "data"), "STREAMD_STORAGE_OBJECTS_PATH="+filepath.Join(dir, "objects"),
		"STREAMD_LOG_FORMAT=json",
		"STREAMD_LIVE_END_GRACE=1s",
		"STREAMD_TRANSCODE_ENCODER=libx264",
		"STREAMD_TRANSCODE_MAX_LIVE_WORKERS=1",
		"STREAMD_LADDERS="+ladderEnv(preset),
		"STREAMD_CHANNELS=[{name: main, stream_key: "+streamKey+", ladder: bench}]")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = io.Discard
	s := &server{cmd: cmd, done: make(chan struct{}), workers: map[int]bool{}}
	if err := startTracked(cmd); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	registerCleanup(func() {
		select {
		case <-s.done:
		default:
			s.stop()
		}
	})
	started := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.logMu.Lock()
			s.logTail = append(s.logTail, line)
			if len(s.logTail) > 50 {
				s.logTail = s.logTail[1:]
			}
			s.logMu.Unlock()
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "streamd started" {
				select {
				case started <- m:
				default:
				}
			}
		}
		cmd.Wait()
		untrack(cmd)
		close(s.done)
	}()
	select {
	case m := <-started:
		s.http, _ = m["http"].(string)
		s.rtmp, _ = m["rtmp"].(string)
		if s.http == "" || s.rtmp == "" {
			s.stop()
			return nil, errors.New("streamd started without an HTTP or RTMP address")
		}
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("streamd exited at start: %s", s.tail())
	case <-time.After(20 * time.Second):
		s.stop()
		return nil, fmt.Errorf("streamd did not start within 20 s: %s", s.tail())
	}
}

func runStreamd(bin, input, dir, preset string, media float64) (measurement, error) {
	os.RemoveAll(dir)
	defer os.RemoveAll(dir)
	s, err := startServer(bin, dir, preset)
	if err != nil {
		return measurement{}, err
	}
	defer s.stop()
	pid := s.cmd.Process.Pid
	time.Sleep(time.Second) // let start-up work settle

	m := measurement{load0: loadavg(false)}
	c0, err := procCPU(pid)
	if err != nil {
		return m, err
	}
	pub := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", input,
		"-c", "copy", "-f", "flv", "rtmp://"+s.rtmp+"/live/"+streamKey)
	var pubErr bytes.Buffer
	pub.Stderr = &pubErr
	t0 := time.Now()
	if err := startTracked(pub); err != nil {
		return m, fmt.Errorf("publisher: %w", err)
	}
	pubDone := make(chan error, 1)
	go func() { pubDone <- pub.Wait(); untrack(pub) }()

	// While it publishes, note the worker (from /proc, no request to
	// streamd, so nothing is added to its CPU).
	limit := time.After(time.Duration(media*1.5+30) * time.Second)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case err := <-pubDone:
			if err != nil {
				return m, fmt.Errorf("publisher ffmpeg failed: %v: %s", err, lastLine(pubErr.String()))
			}
			break wait
		case <-limit:
			return m, fmt.Errorf("the publisher did not finish %.0f s of media within %.0f s", media, media*1.5+30)
		case <-s.done:
			return m, fmt.Errorf("streamd exited while the stream was published: %s", s.tail())
		case <-tick.C:
			for _, p := range ffmpegChildren(pid) {
				if !s.workers[p] {
					s.workers[p] = true
					if m.workerArgs == nil {
						m.workerArgs = cmdline(p)
					}
				}
			}
		}
	}
	pubEnd := time.Now()
	if len(s.workers) == 0 {
		return m, fmt.Errorf("streamd never started an ffmpeg worker for the ladder: %s", s.tail())
	}

	// Every rendition ends (the worker flushes, the packager writes ENDLIST).
	endWait := time.Duration(max(60, media)) * time.Second
	for _, r := range ladder {
		u := s.url("/live/main/" + r.name + "/index.m3u8")
		if err := pollUntil(pubEnd.Add(endWait), 100*time.Millisecond, func() bool {
			b, code := get(u)
			return code == 200 && bytes.Contains(b, []byte("#EXT-X-ENDLIST"))
		}); err != nil {
			return m, fmt.Errorf("rendition %s never got EXT-X-ENDLIST (%s after the publisher finished): %s", r.name, endWait, s.tail())
		}
	}
	m.endLag = time.Since(pubEnd).Seconds()
	m.wall = time.Since(t0).Seconds()
	// The pool reaps the worker; only then is its CPU in cutime/cstime.
	if err := pollUntil(time.Now().Add(30*time.Second), 50*time.Millisecond, func() bool { return len(ffmpegChildren(pid)) == 0 }); err != nil {
		return m, fmt.Errorf("streamd's ffmpeg worker still runs 30 s after every rendition ended: %v", ffmpegChildren(pid))
	}
	c1, err := procCPU(pid)
	if err != nil {
		return m, err
	}
	m.load1 = loadavg(false)
	m.user = (c1.utime + c1.cutime) - (c0.utime + c0.cutime)
	m.sys = (c1.stime + c1.cstime) - (c0.stime + c0.cstime)
	m.own = (c1.utime + c1.stime) - (c0.utime + c0.stime)
	m.children = (c1.cutime + c1.cstime) - (c0.cutime + c0.cstime)

	// Checks, after the measurement.
	m.media, m.segments = map[string]float64{}, map[string]int{}
	for _, r := range ladder {
		b, _ := get(s.url("/live/main/" + r.name + "/index.m3u8"))
		m.media[r.name], m.segments[r.name] = playlistDuration(b)
	}
	m.health = workerHealth(s.url("/metrics"))
	return m, nil
}

// workerHealth picks the transcoder and packager counters that would
// invalidate the CPU figure (restarts, drops) from /metrics.
func workerHealth(u string) string {
	b, code := get(u)
	if code != 200 {
		return ""
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, name := range []string{"streamd_transcode_restarts_total", "streamd_transcode_dropped_frames", "streamd_transcode_duplicated_frames",
			"streamd_transcode_falling_behind", "streamd_packager_dropped_units_total", "streamd_packager_errors_total"} {
			if strings.HasPrefix(l, name+"{") || strings.HasPrefix(l, name+" ") {
				f := strings.Fields(l)
				out = append(out, strings.TrimPrefix(f[0], "streamd_")+"="+f[len(f)-1])
			}
		}
	}
	if len(out) == 0 {
		return "no transcoder/packager counters exported"
	}
	return strings.Join(out, " ")
}

type cpuTimes struct{ utime, stime, cutime, cstime float64 }

// procCPU reads fields 14-17 of /proc/PID/stat (clock ticks, USER_HZ=100).
func procCPU(pid int) (cpuTimes, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuTimes{}, fmt.Errorf("reading streamd's CPU time: %w", err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// f[0] is field 3 (state): field n is f[n-3].
	v := func(n int) float64 { x, _ := strconv.ParseFloat(f[n-3], 64); return x / 100 }
	return cpuTimes{v(14), v(15), v(16), v(17)}, nil
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
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(s[j+2:])
		if ppid, _ := strconv.Atoi(f[1]); ppid == pid && s[i+1:j] == "ffmpeg" {
			out = append(out, n)
		}
	}
	return out
}

func cmdline(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// ---- processes and cleanup ----

var (
	trackMu  sync.Mutex
	tracked  = map[*exec.Cmd]bool{}
	cleanups []func()
	cleaning sync.Once
)

// startTracked starts cmd as the leader of its own process group, so
// cleanup can kill it and anything it spawned.
func startTracked(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	trackMu.Lock()
	defer trackMu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	tracked[cmd] = true
	return nil
}

func untrack(cmd *exec.Cmd) {
	trackMu.Lock()
	delete(tracked, cmd)
	trackMu.Unlock()
}

func registerCleanup(f func()) {
	trackMu.Lock()
	cleanups = append(cleanups, f)
	trackMu.Unlock()
}

// cleanup runs the registered cleanups (newest first: servers stop before
// their temp dir goes), then kills the process group of anything still
// tracked.
func cleanup() {
	cleaning.Do(func() {
		trackMu.Lock()
		cs := slices.Clone(cleanups)
		trackMu.Unlock()
		for i := len(cs) - 1; i >= 0; i-- {
			cs[i]()
		}
		trackMu.Lock()
		defer trackMu.Unlock()
		for cmd := range tracked {
			if cmd.Process != nil {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
		}
	})
}

// ---- small helpers ----

func get(u string) ([]byte, int) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return nil, 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b, resp.StatusCode
}

func pollUntil(deadline time.Time, every time.Duration, cond func() bool) error {
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(every)
	}
	return nil
}

func loadavg(all bool) string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if all && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return f[0]
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func ffmpegVersion(path string) string {
	out, err := exec.Command(path, "-hide_banner", "-version").Output()
	if err != nil {
		return "ffmpeg (version unknown)"
	}
	l, _, _ := strings.Cut(string(out), "\n")
	if f := strings.Fields(l); len(f) >= 3 {
		return "ffmpeg " + f[2]
	}
	return l
}

func modTime(p string) string {
	fi, err := os.Stat(p)
	if err != nil {
		return "?"
	}
	return fi.ModTime().Format("2006-01-02 15:04")
}

func gitHead() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown commit"
	}
	h := strings.TrimSpace(string(out))
	if err := exec.Command("git", "diff", "--quiet", "HEAD").Run(); err != nil {
		h += " + uncommitted changes"
	}
	return h
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}

// shellJoin quotes args for a POSIX shell, writing root as $TMP.
func shellJoin(prog string, args []string, root string) string {
	var out []string
	if prog != "" {
		out = append(out, prog)
	}
	for _, a := range args {
		if root != "" {
			a = strings.ReplaceAll(a, root, "$TMP")
		}
		if a == "" || strings.ContainsAny(a, " '\"\\|;&()<>*?[]{}$`!#~,=:") && !safeWord(a) {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
			// $TMP must stay expandable.
			a = strings.ReplaceAll(a, "$TMP", `'"$TMP"'`)
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}

// safeWord is an argument that needs no quoting although it has a
// character shellJoin is wary of (k=v, a:b, paths under $TMP).
func safeWord(a string) bool {
	for _, r := range strings.ReplaceAll(a, "$TMP", "") {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,+%@", r)) {
			return false
		}
	}
	return true
}
