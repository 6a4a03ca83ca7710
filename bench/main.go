// Command bench measures streamd's live path and prints the figures the
// README's performance section quotes:
//
//   - time from publisher start to the first playable media playlist;
//   - how late each segment is listed after its last frame arrived
//     (median and p95, from streamd's own histogram);
//   - CPU and memory per passthrough channel at 1, 10 and 50 concurrent
//     RTMP publishers (ffmpeg -re -stream_loop -1 -c copy).
//
// Usage: go run ./bench [-bin bin/streamd] [-publishers 1,10,50] [-measure 30s]
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "bin/streamd", "streamd binary")
	clip := flag.String("clip", "testdata/h264_aac_360p.mp4", "clip every publisher loops (2 s GOP)")
	pubs := flag.String("publishers", "1,10,50", "publisher counts for the load figures")
	measure := flag.Duration("measure", 30*time.Second, "CPU measurement window per load step")
	warmup := flag.Duration("warmup", 8*time.Second, "time after the last publisher starts before measuring")
	startRuns := flag.Int("start-runs", 5, "publish-to-first-playlist runs")
	flag.Parse()
	if err := run(*bin, *clip, *pubs, *measure, *warmup, *startRuns); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(bin, clip, pubs string, measure, warmup time.Duration, startRuns int) error {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		return errors.New("ffmpeg not found: run `make deps`")
	}
	fmt.Printf("streamd live benchmark — %s, clip %s, %d CPUs\n\n", time.Now().UTC().Format(time.RFC3339), clip, numCPU())

	// 1. Publish → first playlist, and segment listing delay.
	var firsts []float64
	var delays histogram
	for i := 0; i < startRuns; i++ {
		s, err := startStreamd(bin, 1)
		if err != nil {
			return err
		}
		t0 := time.Now()
		ff := publisher(clip, s.rtmp, s.keys[0])
		if err := ff.Start(); err != nil {
			s.stop()
			return err
		}
		err = pollUntil(15*time.Second, func() bool { return get(s.url("/live/c0/source/index.m3u8")) == 200 })
		first := time.Since(t0).Seconds()
		if err == nil {
			firsts = append(firsts, first)
			// Let a few more segments through for the delay histogram.
			time.Sleep(10 * time.Second)
			h, herr := scrapeHistogram(s.url("/metrics"), "streamd_segment_publish_delay_seconds")
			if herr == nil {
				delays.add(h)
			}
		}
		ff.Process.Kill()
		ff.Wait()
		s.stop()
		if err != nil {
			return fmt.Errorf("first playlist: %w", err)
		}
	}
	sort.Float64s(firsts)
	fmt.Printf("publish → first media playlist (%d runs): median %.2f s, min %.2f s, max %.2f s   target ≤ 2.50 s  (MediaMTX v1.20 here: 8.2 s → ratio %.2fx)\n",
		len(firsts), median(firsts), firsts[0], firsts[len(firsts)-1], 8.2/median(firsts))
	fmt.Printf("segment listed after its last frame arrived (%d segments): median %.1f ms, p95 %.1f ms   target ≤ 50 ms median  (MediaMTX: 150 ms)\n",
		delays.count(), delays.quantile(0.5)*1000, delays.quantile(0.95)*1000)
	if m := median(firsts); m > 2.5 {
		fmt.Printf("first playlist MISSES the 2.5 s target by %.2f s\n", m-2.5)
	}
	if d := delays.quantile(0.5) * 1000; d > 50 {
		fmt.Printf("segment delay MISSES the 50 ms target by %.1f ms\n", d-50)
	}
	fmt.Println()

	// 2. CPU and memory per passthrough channel.
	fmt.Printf("%-11s %-14s %-18s %-16s %-14s\n", "publishers", "CPU total", "CPU per channel", "RSS total", "RSS per channel")
	for _, f := range strings.Split(pubs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("bad -publishers entry %q", f)
		}
		if err := loadStep(bin, clip, n, measure, warmup); err != nil {
			return err
		}
	}
	fmt.Println("\ntargets at 50 publishers: ≤ 0.35 % of a core and ≤ 4 MiB per channel (MediaMTX v1.20 here: 0.67 %, 22 MiB)")
	return nil
}

func loadStep(bin, clip string, n int, measure, warmup time.Duration) error {
	s, err := startStreamd(bin, n)
	if err != nil {
		return err
	}
	defer s.stop()
	time.Sleep(time.Second)
	baseRSS := rssBytes(s.cmd.Process.Pid)
	var ffs []*exec.Cmd
	defer func() {
		for _, ff := range ffs {
			ff.Process.Kill()
			ff.Wait()
		}
	}()
	for i := 0; i < n; i++ {
		ff := publisher(clip, s.rtmp, s.keys[i])
		if err := ff.Start(); err != nil {
			return err
		}
		ffs = append(ffs, ff)
		time.Sleep(50 * time.Millisecond) // spread GOPs a little, as real encoders are
	}
	time.Sleep(warmup)
	live := 0
	for i := 0; i < n; i++ {
		if get(s.url(fmt.Sprintf("/live/c%d/source/index.m3u8", i))) == 200 {
			live++
		}
	}
	c0 := cpuSeconds(s.cmd.Process.Pid)
	t0 := time.Now()
	time.Sleep(measure)
	cpu := (cpuSeconds(s.cmd.Process.Pid) - c0) / time.Since(t0).Seconds()
	rss := rssBytes(s.cmd.Process.Pid)
	perRSS := float64(rss-baseRSS) / float64(n)
	fmt.Printf("%-11d %-14s %-18s %-16s %-14s  (%d/%d channels had a playlist)\n", n,
		fmt.Sprintf("%.2f %%", cpu*100), fmt.Sprintf("%.3f %%", cpu*100/float64(n)),
		fmt.Sprintf("%.1f MiB", float64(rss)/(1<<20)), fmt.Sprintf("%.2f MiB", perRSS/(1<<20)), live, n)
	if n == 50 {
		// The targets are stated for 50 publishers.
		if pc := cpu * 100 / float64(n); pc > 0.35 {
			fmt.Printf("            CPU per channel MISSES the 0.35 %% target by %.0f %%\n", (pc/0.35-1)*100)
		}
		if mib := perRSS / (1 << 20); mib > 4 {
			fmt.Printf("            memory per channel MISSES the 4 MiB target by %.0f %%\n", (mib/4-1)*100)
		}
	}
	return nil
}

type streamd struct {
	cmd  *exec.Cmd
	http string
	rtmp string
	keys []string
	dir  string
	done chan struct{}
}

func (s *streamd) url(p string) string { return "http://" + s.http + p }

func (s *streamd) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	os.RemoveAll(s.dir)
}

func startStreamd(bin string, channels int) (*streamd, error) {
	dir, err := os.MkdirTemp("", "streamd-bench")
	if err != nil {
		return nil, err
	}
	s := &streamd{dir: dir, done: make(chan struct{})}
	var chans []string
	for i := 0; i < channels; i++ {
		k := fmt.Sprintf("benchkey%04d", i)
		s.keys = append(s.keys, k)
		chans = append(chans, fmt.Sprintf("{name: c%d, stream_key: %s}", i, k))
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(),
		"STREAMD_HTTP_ADDR=127.0.0.1:0", "STREAMD_RTMP_ADDR=127.0.0.1:0", "STREAMD_RTSP_ADDR=",
		"STREAMD_RTSP_UDP_RTP_ADDR=", "STREAMD_RTSP_UDP_RTCP_ADDR=",
		"STREAMD_DATA_DIR="+filepath.Join(dir, "data"), "STREAMD_STORAGE_OBJECTS_PATH="+filepath.Join(dir, "objects"),
		"STREAMD_LOG_FORMAT=json",
		"STREAMD_CHANNELS=["+strings.Join(chans, ",")+"]")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s.cmd = cmd
	started := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "streamd started" {
				started <- m
			}
		}
		cmd.Wait()
		close(s.done)
	}()
	select {
	case m := <-started:
		s.http, _ = m["http"].(string)
		s.rtmp, _ = m["rtmp"].(string)
		return s, nil
	case <-s.done:
		return nil, errors.New("streamd exited at start")
	case <-time.After(20 * time.Second):
		s.stop()
		return nil, errors.New("streamd did not start")
	}
}

func publisher(clip, rtmpAddr, key string) *exec.Cmd {
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", clip,
		"-c", "copy", "-f", "flv", "rtmp://"+rtmpAddr+"/live/"+key)
	cmd.Stderr = io.Discard
	return cmd
}

func get(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func pollUntil(d time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %s", d)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// cpuSeconds reads user+system time of a process from /proc.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

func rssBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return bytes.Count(b, []byte("processor\t:"))
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	return v[len(v)/2]
}

// histogram is a cumulative Prometheus histogram: upper bounds → counts.
type histogram struct {
	bounds []float64
	counts []float64
}

func (h *histogram) add(o histogram) {
	if len(h.bounds) == 0 {
		h.bounds = o.bounds
		h.counts = make([]float64, len(o.counts))
	}
	for i := range o.counts {
		if i < len(h.counts) {
			h.counts[i] += o.counts[i]
		}
	}
}

func (h *histogram) count() int {
	if len(h.counts) == 0 {
		return 0
	}
	return int(h.counts[len(h.counts)-1])
}

// quantile interpolates linearly inside the bucket holding q.
func (h *histogram) quantile(q float64) float64 {
	total := float64(h.count())
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	prevB, prevC := 0.0, 0.0
	for i, c := range h.counts {
		if c >= rank {
			b := h.bounds[i]
			if math.IsInf(b, 1) {
				return prevB
			}
			if c == prevC {
				return b
			}
			return prevB + (b-prevB)*(rank-prevC)/(c-prevC)
		}
		prevB, prevC = h.bounds[i], c
	}
	return prevB
}

func scrapeHistogram(url, name string) (histogram, error) {
	resp, err := http.Get(url)
	if err != nil {
		return histogram{}, err
	}
	defer resp.Body.Close()
	var h histogram
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name+"_bucket{") {
			continue
		}
		i := strings.Index(l, `le="`)
		j := strings.Index(l[i+4:], `"`)
		le := l[i+4 : i+4+j]
		b := math.Inf(1)
		if le != "+Inf" {
			b, _ = strconv.ParseFloat(le, 64)
		}
		c, _ := strconv.ParseFloat(strings.Fields(l)[len(strings.Fields(l))-1], 64)
		h.bounds = append(h.bounds, b)
		h.counts = append(h.counts, c)
	}
	if len(h.bounds) == 0 {
		return h, fmt.Errorf("%s not found in /metrics", name)
	}
	return h, nil
}
