package rtmp

import (
	"context"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/handshake"

	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/live"
	"github.com/streamd/streamd/media"
)

// Hostile or broken peers cost only their own connection; a real publisher
// afterwards works.
func TestGarbageAndStalledClients(t *testing.T) {
	t.Parallel()
	const readTimeout = 500 * time.Millisecond
	e := newEnv(t, readTimeout)
	rng := rand.New(rand.NewPCG(1, 2))

	t.Run("random bytes", func(t *testing.T) {
		for i := range 3 {
			c := e.dial()
			junk := make([]byte, 5000)
			for j := range junk {
				junk[j] = byte(rng.Uint32())
			}
			if i == 1 {
				junk[0] = 3 // a valid C0, so the garbage reaches the C1/C2 parsing
			}
			_, _ = c.Write(junk)
			waitServerClose(t, c, 5*time.Second)
		}
	})

	t.Run("truncated handshake", func(t *testing.T) {
		c := e.dial()
		_, _ = c.Write(append([]byte{3}, make([]byte, 700)...)) // C0 + 700 of 1536 C1 bytes
		c.Close()
	})

	t.Run("disconnect mid-chunk", func(t *testing.T) {
		c := e.dial()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := handshake.DoClient(c, false, false); err != nil {
			t.Fatal(err)
		}
		// Chunk type 0 on chunk stream 3: an AMF0 command (type 20) of 200
		// bytes, of which only 50 are sent.
		hdr := []byte{0x03, 0, 0, 0, 0, 0, 200, 20, 0, 0, 0, 0}
		_, _ = c.Write(append(hdr, make([]byte, 50)...))
		c.Close()
	})

	t.Run("garbage after handshake", func(t *testing.T) {
		c := e.dial()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := handshake.DoClient(c, false, false); err != nil {
			t.Fatal(err)
		}
		// A chunk that announces a 16 MB message, then junk.
		hdr := []byte{0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0}
		junk := make([]byte, 4000)
		for j := range junk {
			junk[j] = byte(rng.Uint32())
		}
		_, _ = c.Write(append(hdr, junk...))
		waitServerClose(t, c, 5*time.Second)
	})

	t.Run("stalled before handshake", func(t *testing.T) {
		c := e.dial()
		d := waitServerClose(t, c, 5*time.Second)
		if d < readTimeout*8/10 || d > readTimeout+2*time.Second {
			t.Errorf("silent client dropped after %v, want about %v", d, readTimeout)
		}
	})

	t.Run("stalled after handshake", func(t *testing.T) {
		c := e.dial()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := handshake.DoClient(c, false, false); err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Time{})
		d := waitServerClose(t, c, 5*time.Second)
		if d < readTimeout*8/10 || d > readTimeout+2*time.Second {
			t.Errorf("silent client dropped after %v, want about %v", d, readTimeout)
		}
	})

	waitFor(t, 5*time.Second, "the stall to be logged", func() bool {
		return strings.Contains(e.logs.String(), "no data from publisher for 500ms")
	})

	t.Run("real publisher afterwards", func(t *testing.T) {
		// No -re: the 4 s clip goes in as fast as the link allows.
		ff := startFFmpeg(t, "-i", testenv.Testdata("h264_aac_360p.mp4"), "-c", "copy", "-f", "flv", e.url("/live/"+testKey))
		if err := ff.wait(t, 20*time.Second); err != nil {
			t.Fatalf("ffmpeg failed after the garbage: %v\n%s", err, ff.out.String())
		}
		p := e.waitPub(0, 5*time.Second)
		waitFor(t, 5*time.Second, "publication end", p.isClosed)
		if n := len(p.unitsOf(0)); n < 118 || n > 121 { // 4 s at 30 fps
			t.Errorf("got %d video units, want ~120", n)
		}
	})
}

// Refusals that happen before any media: play requests and bad paths.
func TestRefusedRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)

	try := func(t *testing.T, rawURL string, publish bool) error {
		t.Helper()
		u, err := url.Parse(rawURL)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c := &gortmplib.Client{URL: u, Publish: publish}
		err = c.Initialize(ctx)
		if err == nil {
			c.Close()
		}
		return err
	}

	cases := []struct {
		name    string
		url     string
		publish bool
		log     string
	}{
		{"play", e.url("/live/" + testKey), false, "play request refused"},
		{"play OBS style", e.url("/live#" + testKey), false, "play request refused"},
		{"other app", e.url("/other#" + testKey), true, `the RTMP application is not \"live\"`},
		{"key as app", e.url("/" + testKey), true, `the RTMP application is not \"live\"`},
		{"no key", e.url("/live"), true, "the publish request carries no stream key"},
		{"nested name", e.url("/live/x/" + testKey), true, "the stream name is not a single path element"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := try(t, tc.url, tc.publish); err == nil {
				t.Fatal("request accepted, want refusal")
			}
			waitFor(t, 5*time.Second, "log line "+tc.log, func() bool {
				return strings.Contains(e.logs.String(), tc.log)
			})
		})
	}
	if n := len(e.rec.list()); n != 0 {
		t.Fatalf("%d publications appeared", n)
	}
}

// panicky is a hub listener whose reader panics on the first unit of the
// first publication: it stands for a bug anywhere under the connection's
// goroutine (the RTMP library, a hub reader).
type panicky struct{ armed atomic.Bool }

func (p *panicky) OnPublish(s *live.Stream) { s.AddReader(p) }
func (p *panicky) WriteUnit(*media.Unit) {
	if p.armed.CompareAndSwap(true, false) {
		panic("test panic in a reader")
	}
}
func (p *panicky) Close() {}

// A panic under one connection is logged with a stack, ends only that
// publication (with a reason) and leaves the server serving.
func TestPanicCostsOneConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	pk := &panicky{}
	pk.armed.Store(true)
	e.hub.AddListener(pk)

	publish := func() *ffmpeg {
		return startFFmpeg(t, "-i", testenv.Testdata("h264_aac_360p.mp4"), "-c", "copy", "-f", "flv", e.url("/live/"+testKey))
	}
	first := publish()
	p := e.waitPub(0, 10*time.Second)
	waitFor(t, 5*time.Second, "the first publication to end", p.isClosed)
	_ = first.wait(t, 20*time.Second) // its exit status depends on when it noticed
	logs := e.logs.String()
	if !strings.Contains(logs, "panic in RTMP connection handler") || !strings.Contains(logs, "goroutine ") ||
		!strings.Contains(logs, `reason="internal error (panic); see the server log"`) {
		t.Fatalf("panic not logged with a stack and a reason:\n%s", logs)
	}

	second := publish()
	if err := second.wait(t, 20*time.Second); err != nil {
		t.Fatalf("publisher after the panic failed: %v\n%s", err, second.out.String())
	}
	p2 := e.waitPub(1, 5*time.Second)
	waitFor(t, 5*time.Second, "the second publication to end", p2.isClosed)
	if n := len(p2.unitsOf(0)); n < 118 {
		t.Errorf("second publication got %d video units, want ~120", n)
	}
}
