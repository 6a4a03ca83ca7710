package rtmp

import (
	"errors"
	"math"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/media"
)

// ffmpeg publishes the 6 s 720p H.264/AAC clip in real time, the way a
// broadcaster would; the hub must see both tracks and every frame.
func TestFFmpegPublishH264AAC(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	ff := startFFmpeg(t, "-re", "-i", testenv.Testdata("h264_aac_720p.mp4"), "-c", "copy", "-f", "flv", e.url("/live/"+testKey))
	if err := ff.wait(t, 30*time.Second); err != nil {
		t.Fatalf("ffmpeg failed: %v\n%s", err, ff.out.String())
	}
	p := e.waitPub(0, 5*time.Second)
	waitFor(t, 5*time.Second, "publication end", p.isClosed)

	if len(p.tracks) != 2 {
		t.Fatalf("got %d tracks, want 2 (H.264 + AAC)", len(p.tracks))
	}
	for i, tr := range p.tracks {
		if tr.ID != i {
			t.Errorf("track %d has ID %d", i, tr.ID)
		}
	}
	h, ok := p.tracks[0].Codec.(*media.H264)
	if !ok || len(h.SPS) == 0 || len(h.PPS) == 0 || h.SPS[0]&0x1f != 7 || h.PPS[0]&0x1f != 8 {
		t.Fatalf("track 0 is %#v, want H.264 with SPS and PPS", p.tracks[0].Codec)
	}
	a, ok := p.tracks[1].Codec.(*media.AAC)
	if !ok {
		t.Fatalf("track 1 is %T, want AAC", p.tracks[1].Codec)
	}
	if a.SampleRate != 48000 || a.Channels != 2 || len(a.Config) < 2 {
		t.Errorf("AAC track = %+v, want 48000 Hz stereo with an AudioSpecificConfig", a)
	}

	video := p.unitsOf(0)
	// 6 s at 30 fps = 180 pictures; all of them must arrive.
	if len(video) < 178 || len(video) > 181 {
		t.Errorf("got %d video units, want ~180", len(video))
	}
	if len(video) == 0 || !video[0].RandomAccess {
		t.Fatal("first video unit is not a random access point")
	}
	keyframes := 0
	for i, u := range video {
		if u.RandomAccess {
			keyframes++
		}
		if i > 0 && u.DTS <= video[i-1].DTS {
			t.Fatalf("video DTS does not increase at unit %d: %v after %v", i, u.DTS, video[i-1].DTS)
		}
		if u.PTS < u.DTS {
			t.Fatalf("video unit %d has PTS %v < DTS %v", i, u.PTS, u.DTS)
		}
		if u.Received.IsZero() {
			t.Fatal("video unit without Received time")
		}
		for _, n := range u.Payload {
			if len(n) == 0 {
				t.Fatal("empty NAL unit")
			}
		}
	}
	if keyframes != 3 { // 2 s GOP over 6 s
		t.Errorf("got %d random access video units, want 3", keyframes)
	}
	// Duration = span of DTS plus one frame; tolerance 100 ms.
	dur := video[len(video)-1].DTS - video[0].DTS + time.Second/30
	if math.Abs(float64(dur-6*time.Second)) > float64(100*time.Millisecond) {
		t.Errorf("video lasts %v, want 6s ± 100ms", dur)
	}

	audio := p.unitsOf(1)
	// 6 s at 48 kHz in 1024-sample AAC frames ≈ 281.
	if len(audio) < 276 || len(audio) > 284 {
		t.Errorf("got %d audio units, want ~281", len(audio))
	}
	for i, u := range audio {
		if len(u.Payload) != 1 || len(u.Payload[0]) == 0 {
			t.Fatalf("audio unit %d has %d payloads, want exactly one frame", i, len(u.Payload))
		}
		// A raw AAC frame, not ADTS (whose sync word would be 0xFFF).
		if len(u.Payload[0]) > 1 && u.Payload[0][0] == 0xff && u.Payload[0][1]&0xf0 == 0xf0 {
			t.Fatalf("audio unit %d looks like ADTS", i)
		}
		if !u.RandomAccess || u.DTS != u.PTS {
			t.Fatalf("audio unit %d: RandomAccess=%v PTS=%v DTS=%v", i, u.RandomAccess, u.PTS, u.DTS)
		}
		if i > 0 && u.DTS < audio[i-1].DTS {
			t.Fatalf("audio DTS goes back at unit %d", i)
		}
	}

	// ffmpeg unpublishes cleanly: the hub logs the end without a reason.
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(line, "publish ended") && strings.Contains(line, "reason=") {
			t.Errorf("clean unpublish logged with a reason: %s", line)
		}
	}
}

// An unknown key is refused at the protocol level; the attempted key never
// reaches the log, the remote address does.
func TestUnknownKeyRefused(t *testing.T) {
	t.Parallel()
	const wrongKey = "wrongkey-7f3a9c"
	e := newEnv(t, 0, wrongKey, "wrongkey")
	ff := startFFmpeg(t, "-re", "-i", testenv.Testdata("h264_aac_360p.mp4"), "-t", "2", "-c", "copy", "-f", "flv", e.url("/live/"+wrongKey))
	if err := ff.wait(t, 20*time.Second); err == nil {
		t.Fatalf("ffmpeg exited 0 publishing with an unknown key\n%s", ff.out.String())
	}
	if n := len(e.rec.list()); n != 0 {
		t.Fatalf("%d publications appeared for an unknown key", n)
	}
	for _, st := range e.hub.Status() {
		if st.Live {
			t.Fatalf("channel %s is live", st.Name)
		}
	}
	logs := e.logs.String()
	var line string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "unknown stream key") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no log line about the unknown key:\n%s", logs)
	}
	if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "remote=127.0.0.1:") || !strings.Contains(line, "component=rtmp") {
		t.Errorf("refusal log line lacks level/remote/component: %s", line)
	}
}

// A second publisher on a live channel is refused and the first one keeps
// going; then Close ends the first with a reason and does not hang.
func TestBusyChannelAndClose(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	first := startFFmpeg(t, "-re", "-stream_loop", "-1", "-i", testenv.Testdata("h264_aac_360p.mp4"), "-c", "copy", "-f", "flv", e.url("/live/"+testKey))
	p := e.waitPub(0, 15*time.Second)
	waitFor(t, 10*time.Second, "units from the first publisher", func() bool { return p.unitCount() > 10 })

	second := startFFmpeg(t, "-re", "-i", testenv.Testdata("h264_aac_360p.mp4"), "-c", "copy", "-f", "flv", e.url("/live/"+testKey))
	if err := second.wait(t, 20*time.Second); err == nil {
		t.Fatalf("second publisher exited 0 on a busy channel\n%s", second.out.String())
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "publish refused: channel is already live") || !strings.Contains(logs, "channel=main") {
		t.Errorf("no clear busy refusal in the log:\n%s", logs)
	}

	n := p.unitCount()
	waitFor(t, 10*time.Second, "the first publisher to keep going", func() bool { return p.unitCount() > n+30 })
	if p.isClosed() || first.exited() {
		t.Fatal("the first publication ended after the second publisher was refused")
	}
	if got := len(e.rec.list()); got != 1 {
		t.Fatalf("%d publications, want 1", got)
	}

	// A silent connection as well, so Close has more than one kind of
	// connection to tear down.
	idle := e.dial()
	_ = idle

	closed := make(chan struct{})
	go func() { e.srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Server.Close hangs")
	}
	if !p.isClosed() {
		t.Fatal("publication still open after Close")
	}
	if !strings.Contains(e.logs.String(), "reason=\"server shutting down\"") {
		t.Errorf("publication end after Close not logged with its reason:\n%s", e.logs.String())
	}
	if _, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
		t.Error("server still accepts connections after Close")
	}
}

func TestStartListenError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e := newEnv(t, 0)
	s := &Server{Addr: ln.Addr().String(), Hub: e.hub}
	err = s.Start()
	if err == nil {
		s.Close()
		t.Fatal("Start succeeded on a busy port")
	}
	want := "rtmp.addr " + ln.Addr().String() + ": address already in use"
	if err.Error() != want || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Start error = %q, want %q wrapping EADDRINUSE", err, want)
	}
	s.Close() // must not hang or panic on a server that never started
}

// Tracks in codecs streamd cannot use are dropped with a log line; a
// publication with none left is refused.
func TestUnsupportedCodecs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	src := testenv.Testdata("h264_aac_360p.mp4")

	// H.264 + 16-bit PCM (FLV "LPCM"): the video stays, the audio goes.
	ff := startFFmpeg(t, "-i", src, "-c:v", "copy", "-c:a", "pcm_s16le", "-ar", "44100", "-f", "flv", e.url("/live/"+testKey))
	if err := ff.wait(t, 20*time.Second); err != nil {
		t.Fatalf("ffmpeg failed: %v\n%s", err, ff.out.String())
	}
	p := e.waitPub(0, 5*time.Second)
	waitFor(t, 5*time.Second, "publication end", p.isClosed)
	if len(p.tracks) != 1 || p.tracks[0].ID != 0 {
		t.Fatalf("got %d tracks, want only the H.264 one", len(p.tracks))
	}
	if _, ok := p.tracks[0].Codec.(*media.H264); !ok {
		t.Fatalf("track 0 is %T", p.tracks[0].Codec)
	}
	if u, _ := p.snapshot(); len(u) < 118 {
		t.Errorf("got %d units, want the ~120 video ones", len(u))
	}
	if !strings.Contains(e.logs.String(), `msg="ignoring track" component=rtmp`) || !strings.Contains(e.logs.String(), "codec=lpcm") {
		t.Errorf("dropped track not logged")
	}

	// PCM only: nothing usable, refused. The refusal comes after the ~2 s
	// track probe, so -re keeps ffmpeg sending until then; without it the
	// whole clip is already written and ffmpeg may exit 0 before it reads
	// the refusal.
	ff = startFFmpeg(t, "-re", "-i", src, "-vn", "-c:a", "pcm_s16le", "-ar", "44100", "-f", "flv", e.url("/live/"+testKey))
	if err := ff.wait(t, 20*time.Second); err == nil {
		t.Fatalf("ffmpeg exited 0 publishing no usable track\n%s", ff.out.String())
	}
	if !strings.Contains(e.logs.String(), "publish refused: no supported track") {
		t.Errorf("refusal not logged")
	}
	if n := len(e.rec.list()); n != 1 {
		t.Errorf("%d publications, want 1", n)
	}
}
