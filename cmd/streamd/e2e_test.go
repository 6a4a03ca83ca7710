package main

// End-to-end tests: they build the streamd binary, run it on loopback
// ports chosen by the kernel, publish with real ffmpeg over RTMP and RTSP
// and check what a player gets from the origin.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/streamd/streamd/internal/testenv"
)

const testKey = "e2e-secret-key-4711"

var binPath string

func TestMain(m *testing.M) {
	code := func() int {
		flag.Parse()
		if !testing.Short() {
			dir, err := os.MkdirTemp("", "streamd-bin")
			if err != nil {
				panic(err)
			}
			defer os.RemoveAll(dir)
			binPath = filepath.Join(dir, "streamd")
			out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "building streamd: %v\n%s", err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// server is a running streamd binary.
type server struct {
	cmd        *exec.Cmd
	http       string // host:port
	rtmp, rtsp string
	objects    string
	mu         sync.Mutex
	logs       bytes.Buffer
	stdout     bytes.Buffer
	exited     chan struct{}
}

func (s *server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// freeUDPPair finds an even port P on 127.0.0.1 with P+1 also free.
func freeUDPPair(t *testing.T) (int, int) {
	t.Helper()
	for i := 0; i < 100; i++ {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
		if p%2 == 1 {
			p++
		}
		if p+1 > 65535 {
			continue
		}
		a, err1 := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		b, err2 := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p+1))
		if a != nil {
			a.Close()
		}
		if b != nil {
			b.Close()
		}
		if err1 == nil && err2 == nil {
			return p, p + 1
		}
	}
	t.Fatal("no free UDP port pair")
	return 0, 0
}

func startServer(t *testing.T, env ...string) *server {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	dir := t.TempDir()
	rtp, rtcp := freeUDPPair(t)
	s := &server{objects: filepath.Join(dir, "objects"), exited: make(chan struct{})}
	cmd := exec.Command(binPath, "serve")
	cmd.Env = append(os.Environ(),
		"STREAMD_HTTP_ADDR=127.0.0.1:0",
		"STREAMD_RTMP_ADDR=127.0.0.1:0",
		"STREAMD_RTSP_ADDR=127.0.0.1:0",
		fmt.Sprintf("STREAMD_RTSP_UDP_RTP_ADDR=127.0.0.1:%d", rtp),
		fmt.Sprintf("STREAMD_RTSP_UDP_RTCP_ADDR=127.0.0.1:%d", rtcp),
		"STREAMD_DATA_DIR="+filepath.Join(dir, "data"),
		"STREAMD_STORAGE_OBJECTS_PATH="+s.objects,
		"STREAMD_LOG_FORMAT=json",
		"STREAMD_LOG_LEVEL=debug",
		"STREAMD_LIVE_END_GRACE=2s",
		"STREAMD_CHANNELS=[{name: main, stream_key: "+testKey+"}, {name: other}]",
	)
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = &lockedWriter{mu: &s.mu, w: &s.stdout}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd = cmd
	started := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			s.mu.Lock()
			s.logs.Write(line)
			s.logs.WriteByte('\n')
			s.mu.Unlock()
			var m map[string]any
			if json.Unmarshal(line, &m) == nil && m["msg"] == "streamd started" {
				started <- m
			}
		}
		cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-s.exited
			t.Errorf("streamd did not stop within 15 s of SIGINT")
		}
		if t.Failed() {
			t.Logf("streamd logs:\n%s", s.Logs())
		}
	})
	select {
	case m := <-started:
		s.http, _ = m["http"].(string)
		s.rtmp, _ = m["rtmp"].(string)
		s.rtsp, _ = m["rtsp"].(string)
	case <-s.exited:
		t.Fatalf("streamd exited at start:\n%s", s.Logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("streamd did not start:\n%s", s.Logs())
	}
	return s
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (s *server) url(p string) string { return "http://" + s.http + p }

func (s *server) get(t *testing.T, p string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(s.url(p))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// waitFor polls cond every 50 ms until it returns true or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// publish runs ffmpeg sending a testdata clip in real time; loop repeats
// it until the test ends.
func publish(t *testing.T, clip string, out ...string) *exec.Cmd {
	t.Helper()
	return publishArgs(t, clip, false, out...)
}

func publishLoop(t *testing.T, clip string, out ...string) *exec.Cmd {
	t.Helper()
	return publishArgs(t, clip, true, out...)
}

func publishArgs(t *testing.T, clip string, loop bool, out ...string) *exec.Cmd {
	t.Helper()
	args := []string{"-hide_banner", "-loglevel", "error", "-re"}
	if loop {
		args = append(args, "-stream_loop", "-1")
	}
	args = append(args, "-i", testenv.Testdata(clip), "-c", "copy")
	args = append(args, out...)
	cmd := exec.Command(testenv.FFmpeg(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

func mediaPlaylist(t *testing.T, s *server, p string) *playlist.Media {
	t.Helper()
	resp, b := s.get(t, p)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", p, resp.StatusCode)
	}
	pl, err := playlist.Unmarshal(b)
	if err != nil {
		t.Fatalf("media playlist does not parse: %v\n%s", err, b)
	}
	m, ok := pl.(*playlist.Media)
	if !ok {
		t.Fatalf("%s is not a media playlist:\n%s", p, b)
	}
	return m
}

func master(t *testing.T, s *server, ch string) *playlist.Multivariant {
	t.Helper()
	resp, b := s.get(t, "/live/"+ch+"/index.m3u8")
	if resp.StatusCode != 200 {
		t.Fatalf("master: %d", resp.StatusCode)
	}
	pl, err := playlist.Unmarshal(b)
	if err != nil {
		t.Fatalf("master does not parse: %v\n%s", err, b)
	}
	mv, ok := pl.(*playlist.Multivariant)
	if !ok {
		t.Fatalf("not a master playlist:\n%s", b)
	}
	return mv
}

// ffprobeDuration decodes a file fully and returns its duration in seconds
// and the number of video frames decoded.
func ffprobeDecode(t *testing.T, file string) (dur float64, frames int) {
	t.Helper()
	out, err := exec.Command(testenv.FFprobe(t), "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames:format=duration", "-of", "json", file).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", file, err, out)
	}
	var r struct {
		Streams []struct {
			Frames string `json:"nb_read_frames"`
		}
		Format struct {
			Duration string
		}
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("ffprobe output: %v\n%s", err, out)
	}
	dur, _ = strconv.ParseFloat(r.Format.Duration, 64)
	if len(r.Streams) > 0 {
		frames, _ = strconv.Atoi(r.Streams[0].Frames)
	}
	return dur, frames
}

// checkEndedStream waits for ENDLIST and checks every segment through the
// origin: each decodes (init + segment), durations add up to what was sent.
func checkEndedStream(t *testing.T, s *server, ch string, wantSeconds float64, wantCodecs []string) *playlist.Media {
	t.Helper()
	mv := master(t, s, ch)
	if len(mv.Variants) != 1 {
		t.Fatalf("want one variant, got %d", len(mv.Variants))
	}
	v := mv.Variants[0]
	for _, c := range wantCodecs {
		found := false
		for _, got := range v.Codecs {
			found = found || got == c
		}
		if !found {
			t.Errorf("master CODECS %v lacks %s", v.Codecs, c)
		}
	}
	if v.Bandwidth <= 0 {
		t.Errorf("BANDWIDTH %d", v.Bandwidth)
	}
	mediaPath := path.Join("/live", ch, v.URI)
	var mp *playlist.Media
	waitFor(t, 20*time.Second, "EXT-X-ENDLIST", func() bool {
		mp = mediaPlaylist(t, s, mediaPath)
		return mp.Endlist
	})
	dir := t.TempDir()
	var total time.Duration
	for i, seg := range mp.Segments {
		total += seg.Duration
		if seg.Duration > time.Duration(mp.TargetDuration)*time.Second+time.Millisecond*500 {
			t.Errorf("segment %s lasts %s, more than TARGETDURATION %d", seg.URI, seg.Duration, mp.TargetDuration)
		}
		// The init segment in effect: the playlist's MAP (last one for
		// streams with discontinuities is the one the segment follows).
		initURI := mp.Map.URI
		_, initB := s.get(t, path.Join(path.Dir(mediaPath), initURI))
		resp, segB := s.get(t, path.Join(path.Dir(mediaPath), seg.URI))
		if resp.StatusCode != 200 {
			t.Fatalf("segment %s: %d", seg.URI, resp.StatusCode)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("segment Cache-Control %q", cc)
		}
		f := filepath.Join(dir, fmt.Sprintf("seg%d.mp4", i))
		os.WriteFile(f, append(initB, segB...), 0o644)
		d, frames := ffprobeDecode(t, f)
		if frames == 0 || d <= 0 {
			t.Errorf("segment %s: %d frames, %.3f s", seg.URI, frames, d)
		}
	}
	if got := total.Seconds(); got < wantSeconds-0.25 || got > wantSeconds+0.25 {
		t.Errorf("playlist lists %.3f s, sent %.3f s", got, wantSeconds)
	}
	return mp
}

func TestRTMPPublishToHLS(t *testing.T) {
	s := startServer(t)
	start := time.Now()
	ff := publish(t, "h264_aac_720p.mp4", "-f", "flv", "rtmp://"+s.rtmp+"/live/"+testKey)
	waitFor(t, 15*time.Second, "the first playlist", func() bool {
		resp, _ := s.get(t, "/live/main/index.m3u8")
		return resp.StatusCode == 200
	})
	t.Logf("first playlist %.2f s after ffmpeg started", time.Since(start).Seconds())

	resp, _ := s.get(t, "/live/main/index.m3u8")
	if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.apple.mpegurl" {
		t.Errorf("playlist Content-Type %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=1") {
		t.Errorf("playlist Cache-Control %q", cc)
	}
	mv := master(t, s, "main")
	if v := mv.Variants[0]; v.Resolution != "1280x720" || v.FrameRate == nil || *v.FrameRate < 29.9 || *v.FrameRate > 30.1 {
		t.Errorf("variant resolution %q frame rate %v", v.Resolution, v.FrameRate)
	}
	// The web page's API says the channel is live.
	_, b := s.get(t, "/api/channels")
	if !strings.Contains(string(b), `"live":true`) {
		t.Errorf("/api/channels does not show a live channel: %s", b)
	}
	if err := ff.Wait(); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	mp := checkEndedStream(t, s, "main", 6, []string{"avc1.64001f", "mp4a.40.2"})
	// PROGRAM-DATE-TIME of the first segment is when its first frame was
	// sent (ffmpeg -re), not when the server got around to it.
	if dt := mp.Segments[0].DateTime; dt == nil || dt.Sub(start).Abs() > 700*time.Millisecond {
		t.Errorf("first PROGRAM-DATE-TIME %v, publisher started %v", dt, start)
	}
	if strings.Contains(s.Logs(), testKey) {
		t.Error("the stream key appears in the logs")
	}
}

func TestRTSPPublishToHLS(t *testing.T) {
	for _, transport := range []string{"tcp", "udp"} {
		t.Run(transport, func(t *testing.T) {
			s := startServer(t)
			ff := publish(t, "h264_aac_360p.mp4", "-f", "rtsp", "-rtsp_transport", transport, "rtsp://"+s.rtsp+"/live/"+testKey)
			if err := ff.Wait(); err != nil {
				t.Fatalf("ffmpeg: %v", err)
			}
			checkEndedStream(t, s, "main", 4, []string{"avc1.4d401e", "mp4a.40.2"})
			if strings.Contains(s.Logs(), testKey) {
				t.Error("the stream key appears in the logs")
			}
		})
	}
}

func TestWrongKeyRefused(t *testing.T) {
	s := startServer(t)
	const bad = "not-the-right-key-99"
	for _, out := range [][]string{
		{"-f", "flv", "rtmp://" + s.rtmp + "/live/" + bad},
		{"-f", "rtsp", "-rtsp_transport", "tcp", "rtsp://" + s.rtsp + "/live/" + bad},
	} {
		ff := publish(t, "h264_aac_360p.mp4", out...)
		done := make(chan error, 1)
		go func() { done <- ff.Wait() }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s: ffmpeg succeeded with a wrong key", out[1])
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%s: ffmpeg still running with a wrong key", out[1])
		}
	}
	resp, _ := s.get(t, "/live/main/index.m3u8")
	if resp.StatusCode != 404 {
		t.Errorf("a playlist exists after refused publishes: %d", resp.StatusCode)
	}
	if strings.Contains(s.Logs(), bad) {
		t.Error("a refused key appears in the logs")
	}
	if !strings.Contains(s.Logs(), "127.0.0.1") {
		t.Error("refusals are not logged with the remote address")
	}
}

func TestReconnectGivesDiscontinuity(t *testing.T) {
	s := startServer(t, "STREAMD_LIVE_END_GRACE=6s")
	for i := 0; i < 2; i++ {
		ff := publish(t, "h264_aac_360p.mp4", "-f", "flv", "rtmp://"+s.rtmp+"/live/"+testKey)
		if err := ff.Wait(); err != nil {
			t.Fatalf("ffmpeg %d: %v", i, err)
		}
		if i == 0 {
			mp := mediaPlaylist(t, s, "/live/main/source/index.m3u8")
			if mp.Endlist {
				t.Fatal("ENDLIST before the grace period passed")
			}
		}
	}
	mp := checkEndedStream(t, s, "main", 8, []string{"avc1.4d401e", "mp4a.40.2"})
	disc := 0
	for _, seg := range mp.Segments {
		if seg.Discontinuity {
			disc++
		}
	}
	if disc != 1 {
		t.Errorf("want 1 discontinuity, got %d", disc)
	}
}

func TestBusyChannelRefusesSecondPublisher(t *testing.T) {
	s := startServer(t)
	first := publish(t, "h264_aac_720p.mp4", "-f", "flv", "rtmp://"+s.rtmp+"/live/"+testKey)
	waitFor(t, 15*time.Second, "channel live", func() bool {
		_, b := s.get(t, "/api/channels")
		return strings.Contains(string(b), `"live":true`)
	})
	second := publish(t, "h264_aac_360p.mp4", "-f", "rtsp", "-rtsp_transport", "tcp", "rtsp://"+s.rtsp+"/live/"+testKey)
	if err := second.Wait(); err == nil {
		t.Error("second publisher was accepted")
	}
	if err := first.Wait(); err != nil {
		t.Errorf("first publisher was disturbed: %v", err)
	}
	checkEndedStream(t, s, "main", 6, []string{"avc1.64001f"})
}

func TestOriginRefusesTraversal(t *testing.T) {
	s := startServer(t)
	for _, p := range []string{"/live/../../etc/passwd", "/live/main/..%2f..%2fdata", "/live/%2e%2e/x"} {
		c, err := net.Dial("tcp", s.http)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", p)
		b, _ := io.ReadAll(c)
		c.Close()
		line := strings.SplitN(string(b), "\r\n", 2)[0]
		if !strings.Contains(line, " 400 ") && !strings.Contains(line, " 404 ") {
			t.Errorf("%s: %s", p, line)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if resp, _ := s.get(t, p); resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	if resp, b := s.get(t, "/metrics"); resp.StatusCode != 200 || !bytes.Contains(b, []byte("go_goroutines")) {
		t.Errorf("/metrics: %d", resp.StatusCode)
	}
}
