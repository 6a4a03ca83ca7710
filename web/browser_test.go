package web_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/live"
	"github.com/streamd/streamd/media"
	"github.com/streamd/streamd/origin"
	"github.com/streamd/streamd/store/fsstore"
	"github.com/streamd/streamd/web"
)

// lockedBuffer collects output written from other goroutines (ffmpeg's
// stderr, server logs, browser console) for the failure report.
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

// pageState is what the test reads from the page on every poll.
type pageState struct {
	MSE      bool     `json:"mse"`      // MediaSource accepts H.264 + AAC in fMP4
	Channels []string `json:"channels"` // text of each list entry
	MainLive bool     `json:"mainLive"` // "main" is listed as live, with a badge
	Time     float64  `json:"time"`
	Ready    int      `json:"ready"`
	Error    string   `json:"error"`  // visible text of the page's error box
	Status   string   `json:"status"` // the status line
	URL      string   `json:"url"`    // the play URL box
	VideoErr string   `json:"videoErr"`
	XSS      bool     `json:"xss"` // the hostile channel name ran as markup
}

const stateJS = `(() => {
  const v = document.getElementById('video');
  const err = document.getElementById('error');
  const items = [...document.querySelectorAll('#channels li')];
  const main = items.find(li => li.dataset.name === 'main');
  return {
    mse: !!(window.MediaSource && MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001f, mp4a.40.2"')),
    channels: items.map(li => li.className + ': ' + li.textContent),
    mainLive: !!main && main.classList.contains('live') && !!main.querySelector('.badge'),
    time: v.currentTime,
    ready: v.readyState,
    error: err.hidden ? '' : err.textContent,
    status: document.getElementById('status').textContent,
    url: document.getElementById('playurl').value,
    videoErr: v.error ? (v.error.code + ' ' + v.error.message) : '',
    xss: window.__xss === 1 || !!document.querySelector('#channels img'),
  };
})()`

// TestBrowserPlaysLive runs the whole delivery path in a real browser:
// ffmpeg writes a live fMP4 HLS into the object store, the origin serves
// it, the page lists the hub's channels and hls.js plays the live one.
func TestBrowserPlaysLive(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	chromium := testenv.Chromium(t)
	ffmpeg := testenv.FFmpeg(t)

	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server, ffmpeg and browser output:\n%s", logs.String())
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	hub := live.NewHub(log, []live.Channel{
		{Name: "main", StreamKey: "main-key"},
		// An offline channel whose name is markup: the page must show it
		// as text.
		{Name: `<img src=x onerror="window.__xss=1">`, StreamKey: "other-key"},
	})
	st, err := hub.Publish("main-key", "rtmp", "127.0.0.1:40000", []*media.Track{
		{ID: 0, Codec: &media.H264{}},
		{ID: 1, Codec: &media.AAC{SampleRate: 48000, Channels: 2}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(nil)

	root := t.TempDir()
	objs, err := fsstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(root, "live", "main")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	// A live, looping fMP4 HLS, written in real time (-re) like the
	// packager would. temp_file makes ffmpeg rename playlists into place,
	// so the origin never serves half a playlist.
	ff := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
		"-re", "-stream_loop", "-1", "-i", testenv.Testdata("h264_aac_720p.mp4"),
		"-c", "copy", "-f", "hls", "-hls_time", "2", "-hls_segment_type", "fmp4",
		"-hls_list_size", "6", "-hls_flags", "delete_segments+temp_file+independent_segments",
		"-hls_fmp4_init_filename", "init.mp4",
		"-hls_segment_filename", filepath.Join(out, "seg_%05d.m4s"),
		filepath.Join(out, "index.m3u8"))
	ff.Stdout, ff.Stderr = &logs, &logs
	ff.WaitDelay = 2 * time.Second
	if err := ff.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		ff.Wait()
	}()

	mux := http.NewServeMux()
	mux.Handle("/live/", origin.New(origin.Config{PlaylistMaxAge: time.Second}, objs, log))
	mux.Handle("/", web.New(hub, log))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	actx, acancel := chromedp.NewExecAllocator(ctx, testenv.ChromiumOptions(t, chromium, chromedp.CombinedOutput(&logs))...)
	defer acancel()
	// Console output, exceptions and browser log entries (CSP violations,
	// failed loads) go to the failure report. The listener must return
	// fast and must not call the browser, so it only formats and writes.
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			fmt.Fprintf(&logs, "console.%s: %s\n", ev.Type, strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			desc := ""
			if d.Exception != nil {
				desc = d.Exception.Description
			}
			fmt.Fprintf(&logs, "exception: %s %s (%s:%d)\n", d.Text, desc, d.URL, d.LineNumber)
		case *cdplog.EventEntryAdded:
			fmt.Fprintf(&logs, "browser %s %s: %s %s\n", ev.Entry.Level, ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
		}
	}))
	defer bcancel()
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatalf("open page: %v", err)
	}

	// Poll the page until the video plays or something fails. The first
	// time the video is ready sets the baseline: playback must then move
	// on by at least half a second, so a stalled first frame (or a
	// player that joined at a late position and froze) does not pass.
	var st0 pageState
	first := -1.0
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		s, err := chromedp.Run(bctx, chromedp.Evaluate[pageState](stateJS))
		if err != nil {
			t.Fatalf("read page state: %v (last state %+v)", err, st0)
		}
		st0 = s
		if s.XSS {
			t.Fatalf("a channel name was inserted as markup: %+v", s)
		}
		if s.Error != "" {
			t.Fatalf("page shows an error: %q (MSE H.264/AAC supported: %v, video error %q, state %+v)", s.Error, s.MSE, s.VideoErr, s)
		}
		if s.MainLive && s.Ready >= 2 && first < 0 {
			first = s.Time
		}
		if s.MainLive && s.Ready >= 2 && s.Time >= 1.5 && s.Time-first >= 0.5 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("video did not play within the budget: MSE H.264/AAC supported: %v; last state %+v", s.MSE, s)
		case <-tick.C:
		}
	}
	t.Logf("playing: currentTime %.2f s, readyState %d, MSE H.264/AAC %v, status %q, list %q", st0.Time, st0.Ready, st0.MSE, st0.Status, st0.Channels)
	if want := "Playing “main”"; st0.Status != want {
		t.Errorf("status line %q, want %q", st0.Status, want)
	}

	// The list shows main first as live with its codecs, the other one
	// offline with its name as literal text.
	if len(st0.Channels) != 2 || !strings.HasPrefix(st0.Channels[0], "live: mainLIVEh264, aac") ||
		st0.Channels[1] != `offline: <img src=x onerror="window.__xss=1">offline` {
		t.Errorf("channel list %q", st0.Channels)
	}
	if want := srv.URL + "/live/main/index.m3u8"; st0.URL != want {
		t.Errorf("play URL %q, want %q", st0.URL, want)
	}
}
