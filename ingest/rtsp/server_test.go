package rtsp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/live"
	"github.com/streamd/streamd/media"
)

const testKey = "secretkey123"

// lockedBuffer collects log output written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// recorder is a hub Listener that attaches a reader to every publication.
type recorder struct {
	mu      sync.Mutex
	streams []*recStream
}

func (r *recorder) OnPublish(s *live.Stream) {
	rs := &recStream{stream: s}
	r.mu.Lock()
	r.streams = append(r.streams, rs)
	r.mu.Unlock()
	s.AddReader(rs)
}

func (r *recorder) all() []*recStream {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*recStream(nil), r.streams...)
}

type recStream struct {
	stream *live.Stream

	mu     sync.Mutex
	units  []*media.Unit
	closed int
}

func (r *recStream) WriteUnit(u *media.Unit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.units = append(r.units, u)
}

func (r *recStream) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed++
}

func (r *recStream) snapshot() ([]*media.Unit, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*media.Unit(nil), r.units...), r.closed
}

type env struct {
	srv  *Server
	hub  *live.Hub
	rec  *recorder
	logs *lockedBuffer
	url  string
}

// startEnv runs a server with a real hub. With udp, it binds a free even/odd
// UDP port pair on 127.0.0.1. Every test also checks, at cleanup, that the
// stream key never reached the log.
func startEnv(t *testing.T, udp bool) *env {
	t.Helper()
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	hub := live.NewHub(log, []live.Channel{{Name: "main", StreamKey: testKey}})
	rec := &recorder{}
	hub.AddListener(rec)

	var srv *Server
	for attempt := 0; ; attempt++ {
		srv = &Server{Addr: "127.0.0.1:0", Hub: hub, Log: log, ReadTimeout: 3 * time.Second}
		if udp {
			p := 20000 + 2*rand.IntN(20000)
			srv.UDPRTPAddr = "127.0.0.1:" + strconv.Itoa(p)
			srv.UDPRTCPAddr = "127.0.0.1:" + strconv.Itoa(p+1)
		}
		err := srv.Start()
		if err == nil {
			break
		}
		var le *ListenError
		if !udp || !errors.As(err, &le) || attempt > 50 {
			t.Fatalf("start: %v", err)
		}
	}
	t.Cleanup(func() {
		srv.Close()
		if out := logs.String(); strings.Contains(out, testKey) {
			t.Errorf("stream key leaked into the log:\n%s", out)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return &env{srv: srv, hub: hub, rec: rec, logs: logs,
		url: "rtsp://" + srv.ListenAddr().String() + "/live/"}
}

// ffmpegPublish runs ffmpeg publishing file to url and returns its error
// and stderr. extra goes before -i (e.g. -re, -stream_loop).
func ffmpegPublish(ctx context.Context, t *testing.T, url, transport, file string, extra ...string) (error, string) {
	t.Helper()
	ff := testenv.FFmpeg(t)
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error"}
	args = append(args, extra...)
	args = append(args, "-i", testenv.Testdata(file), "-c", "copy", "-f", "rtsp", "-rtsp_transport", transport, url)
	cmd := exec.CommandContext(ctx, ff, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	return err, stderr.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func unitsOf(units []*media.Unit, id int) []*media.Unit {
	var out []*media.Unit
	for _, u := range units {
		if u.Track.ID == id {
			out = append(out, u)
		}
	}
	return out
}

func checkMonotonic(t *testing.T, name string, units []*media.Unit) {
	t.Helper()
	for i := 1; i < len(units); i++ {
		if units[i].DTS <= units[i-1].DTS {
			t.Fatalf("%s: DTS not increasing at unit %d: %v after %v", name, i, units[i].DTS, units[i-1].DTS)
		}
		if units[i].PTS < units[i].DTS {
			t.Fatalf("%s: PTS %v < DTS %v at unit %d", name, units[i].PTS, units[i].DTS, i)
		}
	}
}

func checkVideo(t *testing.T, units []*media.Unit, wantDur time.Duration, isH265 bool) {
	t.Helper()
	if len(units) == 0 {
		t.Fatal("no video units")
	}
	if !units[0].RandomAccess {
		t.Fatal("first video unit is not random access")
	}
	checkMonotonic(t, "video", units)
	var maxPTS time.Duration
	for _, u := range units {
		maxPTS = max(maxPTS, u.PTS)
		for _, n := range u.Payload {
			if len(n) == 0 {
				t.Fatal("empty NAL unit")
			}
			if (!isH265 && n[0]&0x1f == 9) || (isH265 && (n[0]>>1)&0x3f == 35) {
				t.Fatal("access unit delimiter not stripped")
			}
		}
	}
	span := maxPTS - units[0].PTS
	frameDur := time.Second / 30
	if span < wantDur-3*frameDur || span > wantDur+frameDur {
		t.Fatalf("video spans %v, want about %v", span, wantDur)
	}
	if n := len(units); n < int(wantDur/frameDur)-3 {
		t.Fatalf("got %d video units, want about %d", n, wantDur/frameDur)
	}
}

func checkAudio(t *testing.T, units []*media.Unit, frameDur time.Duration) {
	t.Helper()
	if len(units) == 0 {
		t.Fatal("no audio units")
	}
	checkMonotonic(t, "audio", units)
	for i, u := range units {
		if len(u.Payload) != 1 || len(u.Payload[0]) == 0 || !u.RandomAccess || u.PTS != u.DTS {
			t.Fatalf("audio unit %d: %d payloads, RA=%v PTS=%v DTS=%v", i, len(u.Payload), u.RandomAccess, u.PTS, u.DTS)
		}
		if i > 0 {
			if d := u.PTS - units[i-1].PTS; d < frameDur-time.Millisecond || d > frameDur+time.Millisecond {
				t.Fatalf("audio unit %d is %v after the previous one, want one frame (%v)", i, d, frameDur)
			}
		}
	}
}

// checkAligned: the first video and audio units are presented together
// (the clips start both at 0), and the publication starts at zero.
func checkAligned(t *testing.T, v, a []*media.Unit) {
	t.Helper()
	d := v[0].PTS - a[0].PTS
	if d < 0 {
		d = -d
	}
	t.Logf("first video PTS %v DTS %v, first audio PTS %v", v[0].PTS, v[0].DTS, a[0].PTS)
	if d > 100*time.Millisecond {
		t.Fatalf("first video PTS %v and first audio PTS %v are %v apart", v[0].PTS, a[0].PTS, d)
	}
	if min(v[0].DTS, a[0].DTS) != 0 {
		t.Fatalf("publication does not start at zero: video DTS %v audio DTS %v", v[0].DTS, a[0].DTS)
	}
}

// published waits for the single publication of the test and its end.
func finished(t *testing.T, e *env) *recStream {
	t.Helper()
	waitFor(t, 10*time.Second, "publication to end", func() bool {
		s := e.rec.all()
		if len(s) != 1 {
			return false
		}
		_, closed := s[0].snapshot()
		return closed > 0
	})
	rs := e.rec.all()[0]
	// The hub only frees the channel after Close: a clean end means a
	// publisher may start again right away.
	waitFor(t, 5*time.Second, "channel to be free", func() bool {
		return !e.hub.Status()[0].Live
	})
	return rs
}

func TestPublishH264AAC(t *testing.T) {
	for _, transport := range []string{"tcp", "udp"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, transport == "udp")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err, stderr := ffmpegPublish(ctx, t, e.url+testKey, transport, "h264_aac_720p.mp4", "-re"); err != nil {
				t.Fatalf("ffmpeg: %v\n%s", err, stderr)
			}
			rs := finished(t, e)
			units, closed := rs.snapshot()
			if closed != 1 {
				t.Fatalf("reader closed %d times", closed)
			}
			if rs.stream.Protocol != "rtsp" || rs.stream.Channel != "main" {
				t.Fatalf("stream %s/%s", rs.stream.Protocol, rs.stream.Channel)
			}
			tracks := rs.stream.Tracks
			if len(tracks) != 2 {
				t.Fatalf("got %d tracks", len(tracks))
			}
			var vID, aID = -1, -1
			for i, tr := range tracks {
				if tr.ID != i {
					t.Fatalf("track %d has ID %d", i, tr.ID)
				}
				switch c := tr.Codec.(type) {
				case *media.H264:
					vID = i
					if len(c.SPS) == 0 || len(c.PPS) == 0 || c.SPS[0]&0x1f != 7 || c.PPS[0]&0x1f != 8 {
						t.Fatalf("bad H.264 parameter sets: %x %x", c.SPS, c.PPS)
					}
				case *media.AAC:
					aID = i
					if c.SampleRate != 48000 || c.Channels != 2 || len(c.Config) < 2 {
						t.Fatalf("AAC %+v", c)
					}
				default:
					t.Fatalf("unexpected codec %s", tr.Codec.Name())
				}
			}
			if vID < 0 || aID < 0 {
				t.Fatal("missing H.264 or AAC track")
			}
			v, a := unitsOf(units, vID), unitsOf(units, aID)
			checkVideo(t, v, 6*time.Second, false)
			checkAudio(t, a, 1024*time.Second/48000)
			checkAligned(t, v, a)
			if want := "transport=" + strings.ToUpper(transport); !strings.Contains(e.logs.String(), want) {
				t.Fatalf("log does not show %s", want)
			}
		})
	}
}

func TestPublishH265Opus(t *testing.T) {
	t.Parallel()
	e := startEnv(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err, stderr := ffmpegPublish(ctx, t, e.url+testKey, "tcp", "hevc_opus_360p.mkv", "-re"); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, stderr)
	}
	rs := finished(t, e)
	units, _ := rs.snapshot()
	tracks := rs.stream.Tracks
	if len(tracks) != 2 {
		t.Fatalf("got %d tracks", len(tracks))
	}
	vID, aID := -1, -1
	for i, tr := range tracks {
		switch c := tr.Codec.(type) {
		case *media.H265:
			vID = i
			if len(c.VPS) == 0 || len(c.SPS) == 0 || len(c.PPS) == 0 ||
				(c.VPS[0]>>1)&0x3f != 32 || (c.SPS[0]>>1)&0x3f != 33 || (c.PPS[0]>>1)&0x3f != 34 {
				t.Fatalf("bad H.265 parameter sets")
			}
		case *media.Opus:
			aID = i
			if c.Channels != 2 {
				t.Fatalf("opus channels %d", c.Channels)
			}
		default:
			t.Fatalf("unexpected codec %s", tr.Codec.Name())
		}
	}
	if vID < 0 || aID < 0 {
		t.Fatal("missing H.265 or Opus track")
	}
	v, a := unitsOf(units, vID), unitsOf(units, aID)
	checkVideo(t, v, 4*time.Second, true)
	checkAudio(t, a, 20*time.Millisecond)
	checkAligned(t, v, a)
}

func TestUnknownKeyRefused(t *testing.T) {
	t.Parallel()
	e := startEnv(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const wrong = "wrongkey987"
	err, stderr := ffmpegPublish(ctx, t, e.url+wrong, "tcp", "h264_aac_360p.mp4")
	if err == nil {
		t.Fatal("ffmpeg succeeded with an unknown key")
	}
	if !strings.Contains(stderr, "404") {
		t.Errorf("ffmpeg did not report 404: %s", stderr)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "unknown stream key") || !strings.Contains(logs, "level=WARN") ||
		!strings.Contains(logs, "remote=127.0.0.1:") {
		t.Fatalf("refusal not logged at WARN with the remote address:\n%s", logs)
	}
	if strings.Contains(logs, wrong) {
		t.Fatalf("the refused key is in the log:\n%s", logs)
	}
	if len(e.rec.all()) != 0 {
		t.Fatal("a publication started")
	}
}

func TestBusyChannelRefused(t *testing.T) {
	t.Parallel()
	e := startEnv(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	firstCtx, stopFirst := context.WithCancel(ctx)
	firstDone := make(chan struct{})
	go func() {
		defer close(firstDone)
		ffmpegPublish(firstCtx, t, e.url+testKey, "tcp", "h264_aac_360p.mp4", "-re", "-stream_loop", "-1")
	}()
	defer func() { stopFirst(); <-firstDone }()

	waitFor(t, 10*time.Second, "first publication to send units", func() bool {
		s := e.rec.all()
		if len(s) != 1 {
			return false
		}
		u, _ := s[0].snapshot()
		return len(u) > 10
	})
	first := e.rec.all()[0]

	err, stderr := ffmpegPublish(ctx, t, e.url+testKey, "tcp", "h264_aac_360p.mp4")
	if err == nil {
		t.Fatal("second publisher was accepted")
	}
	if !strings.Contains(stderr, "503") {
		t.Errorf("ffmpeg did not report 503: %s", stderr)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "channel already has a publisher") || !strings.Contains(logs, "channel=main") {
		t.Fatalf("busy refusal not logged with the channel:\n%s", logs)
	}

	// The first publisher is unaffected.
	before, _ := first.snapshot()
	waitFor(t, 5*time.Second, "first publication to keep going", func() bool {
		u, closed := first.snapshot()
		return closed == 0 && len(u) > len(before)+30
	})
	if n := len(e.rec.all()); n != 1 {
		t.Fatalf("%d publications", n)
	}
}

// rtspConn is a hand-driven RTSP client for the robustness tests: it can
// stop anywhere a real but broken publisher might.
type rtspConn struct {
	t    *testing.T
	c    net.Conn
	r    *bufio.Reader
	cseq int
}

func dialRTSP(t *testing.T, addr string) *rtspConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rtspConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rtspConn) do(method, url string, hdr map[string]string, body string) (int, map[string]string) {
	rc.t.Helper()
	rc.cseq++
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s RTSP/1.0\r\nCSeq: %d\r\n", method, url, rc.cseq)
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	if _, err := rc.c.Write([]byte(b.String())); err != nil {
		rc.t.Fatal(err)
	}
	status, err := rc.r.ReadString('\n')
	if err != nil {
		rc.t.Fatalf("%s: %v", method, err)
	}
	f := strings.Fields(status)
	if len(f) < 2 {
		rc.t.Fatalf("bad status line %q", status)
	}
	code, _ := strconv.Atoi(f[1])
	headers := map[string]string{}
	for {
		line, err := rc.r.ReadString('\n')
		if err != nil {
			rc.t.Fatal(err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			headers[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	if n, _ := strconv.Atoi(headers["content-length"]); n > 0 {
		buf := make([]byte, n)
		if _, err := rc.r.Read(buf); err != nil {
			rc.t.Fatal(err)
		}
	}
	return code, headers
}

// Real SPS/PPS of testdata/h264_aac_360p.mp4.
const testSDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n" +
	"a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z01AHuygUBf8uAiAAAADAIAAAB4HixbL,aO+8gA==\r\n" +
	"a=control:trackID=0\r\n" +
	"m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n" +
	"a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190\r\n" +
	"a=control:trackID=1\r\n"

// recordTCP performs ANNOUNCE, SETUP x2 and RECORD with interleaved transport.
func recordTCP(t *testing.T, e *env, rc *rtspConn) {
	t.Helper()
	url := e.url + testKey
	if code, _ := rc.do("ANNOUNCE", url, map[string]string{"Content-Type": "application/sdp"}, testSDP); code != 200 {
		t.Fatalf("ANNOUNCE: %d", code)
	}
	var session string
	for i := range 2 {
		h := map[string]string{"Transport": fmt.Sprintf("RTP/AVP/TCP;unicast;interleaved=%d-%d;mode=record", 2*i, 2*i+1)}
		if session != "" {
			h["Session"] = session
		}
		code, hdr := rc.do("SETUP", fmt.Sprintf("%s/trackID=%d", url, i), h, "")
		if code != 200 {
			t.Fatalf("SETUP: %d", code)
		}
		session, _, _ = strings.Cut(hdr["session"], ";")
	}
	if code, _ := rc.do("RECORD", url, map[string]string{"Session": session}, ""); code != 200 {
		t.Fatalf("RECORD: %d", code)
	}
}

// interleaved wraps an RTP packet for channel ch.
func interleaved(ch byte, pkt []byte) []byte {
	return append([]byte{'$', ch, byte(len(pkt) >> 8), byte(len(pkt))}, pkt...)
}

func rtpPacket(pt byte, seq uint16, ts uint32, marker bool, payload []byte) []byte {
	b := []byte{0x80, pt, byte(seq >> 8), byte(seq), byte(ts >> 24), byte(ts >> 16), byte(ts >> 8), byte(ts), 0, 0, 0, 1}
	if marker {
		b[1] |= 0x80
	}
	return append(b, payload...)
}

func TestRobustness(t *testing.T) {
	t.Parallel()
	e := startEnv(t, false)
	addr := e.srv.ListenAddr().String()

	// Garbage, binary and text.
	for _, junk := range []string{
		"\x00\x01\x02\xff\xfe garbage \r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"ANNOUNCE rtsp://x/live/" + testKey + " RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 99999999\r\n\r\nabc",
		"ANNOUNCE /live/" + testKey + "#frag RTSP/1.0\r\nCSeq: 1\r\n\r\n",
		"ANNOUNCE rtsp://x/live/" + testKey + " HTTP/9\r\nCSeq: 1\r\n\r\n",
		"$\x00\xff\xff" + strings.Repeat("z", 100),
		strings.Repeat("A", 70000),
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(junk))
		c.Close()
	}

	// A half request left hanging while a real publisher works.
	stalled, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	stalled.Write([]byte("ANNOUNCE rtsp://x/live/" + testKey + " RTSP/1.0\r\nCSeq: 1\r\nContent-Le"))

	// Reading is refused with 405.
	rc := dialRTSP(t, addr)
	if code, _ := rc.do("DESCRIBE", e.url+testKey, nil, ""); code != 405 {
		t.Fatalf("DESCRIBE: %d, want 405", code)
	}
	if code, _ := rc.do("SETUP", e.url+testKey+"/trackID=0", map[string]string{"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}, ""); code != 405 {
		t.Fatalf("player SETUP: %d, want 405", code)
	}
	// Wrong path shape.
	if code, _ := dialRTSP(t, addr).do("ANNOUNCE", "rtsp://"+addr+"/other/"+testKey, map[string]string{"Content-Type": "application/sdp"}, testSDP); code != 404 {
		t.Fatalf("ANNOUNCE on a bad path: %d, want 404", code)
	}

	// A publisher sending nonsense RTP, then disconnecting mid-frame: it
	// costs only its own session, whose stream is closed exactly once.
	pub := dialRTSP(t, addr)
	recordTCP(t, e, pub)
	rng := rand.New(rand.NewPCG(1, 2))
	seq := uint16(0)
	var burst []byte
	for i := range 400 {
		payload := make([]byte, rng.IntN(60))
		for j := range payload {
			payload[j] = byte(rng.Uint32())
		}
		// Steer some packets into the interesting NAL types (STAP-A,
		// FU-A, IDR, SPS) so the depacketizers see more than noise.
		if len(payload) > 0 && i%2 == 0 {
			payload[0] = []byte{24, 28, 0x65, 0x67, 0x68, 0x09}[i%6]
		}
		ch := byte(0)
		pt := byte(96)
		if i%3 == 0 {
			ch, pt = 2, 97
		}
		seq++
		burst = append(burst, interleaved(ch, rtpPacket(pt, seq, uint32(i*3000), i%4 == 0, payload))...)
	}
	// RTCP garbage too.
	burst = append(burst, interleaved(1, []byte{0x80, 200, 0, 1, 9, 9, 9, 9})...)
	// Then half a frame, and the connection drops.
	burst = append(burst, '$', 0, 0x05, 0xdc, 0x80, 0x60)
	if _, err := pub.c.Write(burst); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "garbage publication to start", func() bool { return len(e.rec.all()) == 1 })
	pub.c.Close()
	waitFor(t, 10*time.Second, "garbage publication to end", func() bool {
		_, closed := e.rec.all()[0].snapshot()
		return closed == 1 && !e.hub.Status()[0].Live
	})

	// The server survived all of it: a real publisher works.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err, stderr := ffmpegPublish(ctx, t, e.url+testKey, "tcp", "h264_aac_360p.mp4"); err != nil {
		t.Fatalf("ffmpeg after garbage: %v\n%s", err, stderr)
	}
	waitFor(t, 10*time.Second, "real publication to end", func() bool {
		s := e.rec.all()
		if len(s) != 2 {
			return false
		}
		_, closed := s[1].snapshot()
		return closed == 1
	})
	units, _ := e.rec.all()[1].snapshot()
	if len(units) < 100 {
		t.Fatalf("only %d units from the real publisher", len(units))
	}
	if _, closed := e.rec.all()[0].snapshot(); closed != 1 {
		t.Fatalf("garbage publication closed %d times", closed)
	}
	if !strings.Contains(e.logs.String(), "undecodable") {
		t.Errorf("the nonsense RTP was not seen by the depacketizers:\n%s", e.logs.String())
	}
	if strings.Contains(e.logs.String(), "panic") {
		t.Fatalf("a callback panicked:\n%s", e.logs.String())
	}
}

// A session that announces and never records must not hold the channel.
func TestAnnounceWithoutRecordReleasesChannel(t *testing.T) {
	t.Parallel()
	e := startEnv(t, false)
	rc := dialRTSP(t, e.srv.ListenAddr().String())
	if code, _ := rc.do("ANNOUNCE", e.url+testKey, map[string]string{"Content-Type": "application/sdp"}, testSDP); code != 200 {
		t.Fatalf("ANNOUNCE: %d", code)
	}
	waitFor(t, 2*time.Second, "channel to go live", func() bool { return e.hub.Status()[0].Live })
	// Keep the connection alive with requests that are not RECORD.
	deadline := time.Now().Add(e.srv.ReadTimeout + 3*time.Second)
	for e.hub.Status()[0].Live {
		if time.Now().After(deadline) {
			t.Fatal("channel still held by a session that never recorded")
		}
		rc.c.Write([]byte("OPTIONS " + e.url + testKey + " RTSP/1.0\r\nCSeq: 99\r\n\r\n"))
		time.Sleep(200 * time.Millisecond)
	}
	_, closed := e.rec.all()[0].snapshot()
	if closed != 1 {
		t.Fatalf("stream closed %d times", closed)
	}
	if !strings.Contains(e.logs.String(), errNoRecord.Error()) {
		t.Fatalf("no reason logged:\n%s", e.logs.String())
	}
}

func TestStartErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hub := live.NewHub(slog.New(slog.DiscardHandler), nil)
	s := &Server{Addr: ln.Addr().String(), Hub: hub}
	err = s.Start()
	if err == nil {
		s.Close()
		t.Fatal("started on a busy port")
	}
	want := "rtsp.addr " + ln.Addr().String() + ": address already in use"
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	s.Close() // harmless after a failed Start

	for _, tc := range []struct{ rtp, rtcp string }{
		{"127.0.0.1:9001", ""},
		{"127.0.0.1:9000", "127.0.0.1:9003"},
		{"", "127.0.0.1:9001"},
	} {
		s := &Server{Addr: "127.0.0.1:0", UDPRTPAddr: tc.rtp, UDPRTCPAddr: tc.rtcp, Hub: hub}
		if err := s.Start(); err == nil || !strings.Contains(err.Error(), "rtsp.udp_") {
			s.Close()
			t.Fatalf("%+v: error %v", tc, err)
		}
	}
}

// A publisher whose SDP has no sprop-parameter-sets: the channel is
// published once SPS/PPS arrive in band, with them as the track's
// parameters, and the first unit is the keyframe that carried them.
func TestInBandParameterSets(t *testing.T) {
	t.Parallel()
	e := startEnv(t, false)
	ff := testenv.FFmpeg(t)
	out, err := exec.Command(ff, "-hide_banner", "-loglevel", "error", "-i", testenv.Testdata("h264_aac_360p.mp4"),
		"-c:v", "copy", "-bsf:v", "h264_mp4toannexb", "-frames:v", "1", "-an", "-f", "h264", "-").Output()
	if err != nil {
		t.Fatal(err)
	}
	var au h264.AnnexB
	if err := au.Unmarshal(out); err != nil {
		t.Fatal(err)
	}
	var sps, pps []byte
	for _, n := range au {
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			sps = n
		case h264.NALUTypePPS:
			pps = n
		}
	}
	if sps == nil || pps == nil {
		t.Fatal("no SPS/PPS in the first frame")
	}

	// Unknown keys are still refused in ANNOUNCE on this path.
	noParams := strings.Replace(testSDP, "; sprop-parameter-sets=Z01AHuygUBf8uAiAAAADAIAAAB4HixbL,aO+8gA==", "", 1)
	noParams = noParams[:strings.Index(noParams, "m=audio")]
	bad := dialRTSP(t, e.srv.ListenAddr().String())
	if code, _ := bad.do("ANNOUNCE", e.url+"nope", map[string]string{"Content-Type": "application/sdp"}, noParams); code != 404 {
		t.Fatalf("ANNOUNCE with unknown key: %d", code)
	}

	rc := dialRTSP(t, e.srv.ListenAddr().String())
	url := e.url + testKey
	if code, _ := rc.do("ANNOUNCE", url, map[string]string{"Content-Type": "application/sdp"}, noParams); code != 200 {
		t.Fatalf("ANNOUNCE: %d", code)
	}
	code, hdr := rc.do("SETUP", url+"/trackID=0", map[string]string{"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record"}, "")
	if code != 200 {
		t.Fatalf("SETUP: %d", code)
	}
	session, _, _ := strings.Cut(hdr["session"], ";")
	if code, _ := rc.do("RECORD", url, map[string]string{"Session": session}, ""); code != 200 {
		t.Fatalf("RECORD: %d", code)
	}
	if len(e.rec.all()) != 0 {
		t.Fatal("published before parameter sets were known")
	}

	enc, err := (&format.H264{PayloadTyp: 96, PacketizationMode: 1}).CreateEncoder()
	if err != nil {
		t.Fatal(err)
	}
	pkts, err := enc.Encode(au)
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	for _, p := range pkts {
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		buf = append(buf, interleaved(0, b)...)
	}
	if _, err := rc.c.Write(buf); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "first unit", func() bool {
		s := e.rec.all()
		if len(s) != 1 {
			return false
		}
		u, _ := s[0].snapshot()
		return len(u) == 1
	})
	rs := e.rec.all()[0]
	c := rs.stream.Tracks[0].Codec.(*media.H264)
	if !bytes.Equal(c.SPS, sps) || !bytes.Equal(c.PPS, pps) {
		t.Fatal("track parameters are not the in-band SPS/PPS")
	}
	units, _ := rs.snapshot()
	if !units[0].RandomAccess || units[0].DTS != 0 {
		t.Fatalf("first unit RA=%v DTS=%v", units[0].RandomAccess, units[0].DTS)
	}
	rc.c.Close()
	waitFor(t, 5*time.Second, "publication to end", func() bool {
		_, closed := rs.snapshot()
		return closed == 1
	})
}
