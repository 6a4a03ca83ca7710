// Command vod measures the on-demand pipeline (`streamd transcode`) on a
// generated 1080p30 master with the default ladder:
//
//   - hours of content processed per hour of wall time on this machine;
//   - the ratio of streamd's CPU time (itself, ffprobe and every ffmpeg it
//     runs) to running the same ffmpeg commands by hand — the encode and
//     packaging pass, the poster and the thumbnails — without streamd's
//     probe, QA decode and manifest work.
//
// The commands streamd runs are recorded through a wrapper given as
// --ffmpeg, then replayed directly into another folder.
//
// Usage: go run ./bench/vod [-seconds 60] [-bin bin/streamd]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	secs := flag.Int("seconds", 60, "length of the generated 1080p30 master")
	bin := flag.String("bin", "bin/streamd", "streamd binary (make build)")
	flag.Parse()
	if err := run(*bin, *secs); err != nil {
		fmt.Fprintln(os.Stderr, "bench/vod:", err)
		os.Exit(1)
	}
}

func childCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs cmd and returns its wall time and the CPU time of it and
// every descendant it waited for.
func measure(cmd *exec.Cmd) (wall, cpu time.Duration, err error) {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	c0, t0 := childCPU(), time.Now()
	err = cmd.Run()
	wall, cpu = time.Since(t0), childCPU()-c0
	if err != nil {
		err = fmt.Errorf("%s: %v\n%s", cmd.Path, err, stderr.String())
	}
	return wall, cpu, err
}

func run(bin string, secs int) error {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		return fmt.Errorf("ffmpeg not found: run `make deps`")
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s missing: run `make build`", bin)
	}
	dir, err := os.MkdirTemp("", "streamd-vod-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	input := filepath.Join(dir, "master.mp4")
	gen := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", fmt.Sprint(secs), "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "192k", input)
	if _, _, err := measure(gen); err != nil {
		return err
	}

	// The wrapper records each ffmpeg command line (NUL-separated
	// arguments) and runs the real ffmpeg.
	rec := filepath.Join(dir, "rec")
	os.MkdirAll(rec, 0o755)
	wrapper := filepath.Join(dir, "ffmpeg-rec")
	script := fmt.Sprintf("#!/bin/sh\nf=$(mktemp %q/cmd-XXXXXXXX)\nprintf '%%s\\0' \"$@\" > \"$f\"\nexec %q \"$@\"\n", rec, ffmpeg)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		return err
	}

	ours := filepath.Join(dir, "ours")
	wall, cpu, err := measure(exec.Command(bin, "transcode", input, "--out", ours, "--ffmpeg", wrapper))
	if err != nil {
		return err
	}

	// Replay the recorded commands by hand: same arguments, outputs in
	// another folder (with the same subfolders, which ffmpeg's dash muxer
	// does not create), skipping the QA decodes (-f null).
	ref := filepath.Join(dir, "ref")
	filepath.WalkDir(ours, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.MkdirAll(strings.Replace(p, ours, ref, 1), 0o755)
		}
		return nil
	})
	files, _ := filepath.Glob(filepath.Join(rec, "cmd-*"))
	type recorded struct {
		mod  time.Time
		args []string
	}
	var cmds []recorded
	for _, f := range files {
		b, _ := os.ReadFile(f)
		fi, _ := os.Stat(f)
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		cmds = append(cmds, recorded{fi.ModTime(), args})
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].mod.Before(cmds[j].mod) })
	var refWall, refCPU time.Duration
	var replayed []string
	for _, c := range cmds {
		joined := strings.Join(c.args, " ")
		if strings.Contains(joined, "-f null") {
			continue // QA: streamd's own check, not part of producing the outputs
		}
		args := make([]string, len(c.args))
		for i, a := range c.args {
			args[i] = strings.ReplaceAll(a, ours, ref)
		}
		w, cp, err := measure(exec.Command(ffmpeg, args...))
		if err != nil {
			return err
		}
		refWall += w
		refCPU += cp
		replayed = append(replayed, "ffmpeg "+strings.ReplaceAll(strings.Join(args, " "), dir, "$TMP"))
	}

	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("streamd VOD benchmark — %s, %d s of 1920x1080p30 H.264 + AAC, default ladder, load %s\n\n",
		time.Now().UTC().Format(time.RFC3339), secs, strings.Fields(string(load))[0])
	media := time.Duration(secs) * time.Second
	fmt.Printf("%-42s %10s %10s %14s\n", "", "wall", "CPU", "hours per hour")
	fmt.Printf("%-42s %9.1fs %9.1fs %13.2fx\n", "streamd transcode (probe, encode, QA, …)", wall.Seconds(), cpu.Seconds(), media.Seconds()/wall.Seconds())
	fmt.Printf("%-42s %9.1fs %9.1fs %13.2fx\n", "the same ffmpeg commands run by hand", refWall.Seconds(), refCPU.Seconds(), media.Seconds()/refWall.Seconds())
	ratio := cpu.Seconds() / refCPU.Seconds()
	note := ""
	if ratio > 1.05 {
		note = fmt.Sprintf("  — misses the ≤ 1.05 goal by %.1f points", (ratio-1.05)*100)
	}
	fmt.Printf("\nCPU ratio streamd / by hand: %.3fx%s\n", ratio, note)
	fmt.Printf("(%d ffmpeg commands recorded, %d replayed; the rest are QA decodes)\n\nreplayed commands:\n", len(cmds), len(replayed))
	for _, r := range replayed {
		fmt.Println("  " + r)
	}
	return nil
}
