package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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
	Height   int      `json:"height"` // video.videoHeight: the rendition on screen
	Error    string   `json:"error"`  // visible text of the page's error box
	Status   string   `json:"status"` // the status line
	URL      string   `json:"url"`    // the play URL box
	VideoErr string   `json:"videoErr"`
	XSS      bool     `json:"xss"` // the hostile channel name ran as markup

	Quality        bool     `json:"quality"`        // the quality control is shown
	QualityLabel   string   `json:"qualityLabel"`   // its label's text
	QualityOptions []string `json:"qualityOptions"` // text of each option
	QualityChosen  string   `json:"qualityChosen"`  // text of the selected option
	QualityNote    bool     `json:"qualityNote"`    // the native-playback note is shown

	Auth      string `json:"auth"`      // the sign-in status line
	AuthError string `json:"authError"` // visible text of the sign-in error line
	SignedIn  bool   `json:"signedIn"`  // the Sign out button is shown, the form is not
	MFAShown  bool   `json:"mfaShown"`  // the code field is shown
	URLShown  bool   `json:"urlShown"`  // the play URL box is shown
	Stored    string `json:"stored"`    // the session as kept in sessionStorage
}

const stateJS = `(() => {
  const v = document.getElementById('video');
  const err = document.getElementById('error');
  const items = [...document.querySelectorAll('#channels li')];
  const main = items.find(li => li.dataset.name === 'main');
  const q = document.getElementById('quality');
  const qlabel = document.querySelector('label[for="quality"]');
  return {
    mse: !!(window.MediaSource && MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001f, mp4a.40.2"')),
    channels: items.map(li => li.className + ': ' + li.textContent),
    mainLive: !!main && main.classList.contains('live') && !!main.querySelector('.badge'),
    time: v.currentTime,
    ready: v.readyState,
    height: v.videoHeight,
    error: err.hidden ? '' : err.textContent,
    status: document.getElementById('status').textContent,
    url: document.getElementById('playurl').value,
    videoErr: v.error ? (v.error.code + ' ' + v.error.message) : '',
    xss: window.__xss === 1 || !!document.querySelector('#channels img'),
    quality: !!q.offsetParent,
    qualityLabel: qlabel ? qlabel.textContent : '',
    qualityOptions: [...q.options].map(o => o.textContent),
    qualityChosen: q.selectedIndex >= 0 ? q.options[q.selectedIndex].textContent : '',
    qualityNote: !!document.getElementById('qualitynote').offsetParent,
    auth: document.getElementById('authstatus').textContent,
    authError: document.getElementById('autherror').hidden ? '' : document.getElementById('autherror').textContent,
    signedIn: !document.getElementById('signout').hidden && document.getElementById('signin').hidden,
    mfaShown: !!document.getElementById('mfacode').offsetParent,
    urlShown: !document.getElementById('urlbox').hidden,
    stored: sessionStorage.getItem('streamd.session') || '',
  };
})()`

// browserEnv is one run of the whole delivery path: ffmpeg writes a live
// fMP4 HLS into the object store, the origin serves it, and a browser tab
// has the page open.
type browserEnv struct {
	tab  context.Context // the browser tab; done when the budget runs out
	url  string          // the test server's
	logs *lockedBuffer
	api  *stubAPI
}

// startBrowser sets up a browserEnv within budget. Channel "main" is
// live; ffmpeg reads testdata/h264_aac_720p.mp4 in a loop, in real time
// (-re) like a publisher would, and output gives the rest of its
// arguments for the channel's folder in the store. Everything is torn
// down by t.Cleanup, the browser first and ffmpeg before the folders go.
func startBrowser(t *testing.T, budget time.Duration, output func(dir string) []string) *browserEnv {
	t.Helper()
	return startBrowserWith(t, budget, false, output)
}

// startBrowserWith is startBrowser with channel "main" protected or not:
// protected, the origin wants the stub API's playback tokens for it and
// the stub's /api/streaming gives them only to a signed-in viewer.
func startBrowserWith(t *testing.T, budget time.Duration, protected bool, output func(dir string) []string) *browserEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	chromium := testenv.Chromium(t)
	ffmpeg := testenv.FFmpeg(t)

	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server, ffmpeg and browser output:\n%s", logs.String())
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), budget)
	t.Cleanup(cancel)

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
	t.Cleanup(func() { st.Close(nil) })

	root := t.TempDir()
	objs, err := fsstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(root, "live", "main")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-hide_banner", "-nostdin", "-loglevel", "error",
		"-re", "-stream_loop", "-1", "-i", testenv.Testdata("h264_aac_720p.mp4")}, output(out)...)
	ff := exec.CommandContext(ctx, ffmpeg, args...)
	ff.Stdout, ff.Stderr = logs, logs
	ff.WaitDelay = 2 * time.Second
	if err := ff.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		ff.Wait()
	})

	stub := &stubAPI{protected: protected}
	oc := origin.Config{PlaylistMaxAge: time.Second}
	if protected {
		oc.Guard = stub
	}
	mux := http.NewServeMux()
	mux.Handle("/live/", origin.New(oc, objs, log))
	stub.register(mux)
	mux.Handle("/", web.New(hub, log))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	actx, acancel := chromedp.NewExecAllocator(ctx, testenv.ChromiumOptions(t, chromium, chromedp.CombinedOutput(logs))...)
	t.Cleanup(acancel)
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
			fmt.Fprintf(logs, "console.%s: %s\n", ev.Type, strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			desc := ""
			if d.Exception != nil {
				desc = d.Exception.Description
			}
			fmt.Fprintf(logs, "exception: %s %s (%s:%d)\n", d.Text, desc, d.URL, d.LineNumber)
		case *cdplog.EventEntryAdded:
			fmt.Fprintf(logs, "browser %s %s: %s %s\n", ev.Entry.Level, ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
		}
	}))
	t.Cleanup(bcancel)
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatalf("open page: %v", err)
	}
	return &browserEnv{tab: bctx, url: srv.URL, logs: logs, api: stub}
}

// waitFor polls the page every 250 ms until done accepts its state, and
// returns that state. It fails the test if the page shows an error or ran
// a channel name as markup, or if done has not accepted a state within
// the given time (or the test's budget).
func (e *browserEnv) waitFor(t *testing.T, within time.Duration, what string, done func(pageState) bool) pageState {
	t.Helper()
	return e.poll(t, within, what, true, done)
}

// poll is waitFor, where a shown error fails the test only if noErrors.
func (e *browserEnv) poll(t *testing.T, within time.Duration, what string, noErrors bool, done func(pageState) bool) pageState {
	t.Helper()
	deadline := time.After(within)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last pageState
	for {
		s, err := chromedp.Run(e.tab, chromedp.Evaluate[pageState](stateJS))
		if err != nil {
			t.Fatalf("%s: read page state: %v (last state %+v)", what, err, last)
		}
		last = s
		if s.XSS {
			t.Fatalf("a channel name was inserted as markup: %+v", s)
		}
		if noErrors && s.Error != "" {
			t.Fatalf("%s: page shows an error: %q (MSE H.264/AAC supported: %v, video error %q, state %+v)", what, s.Error, s.MSE, s.VideoErr, s)
		}
		if done(s) {
			return s
		}
		select {
		case <-e.tab.Done():
			t.Fatalf("%s: not within the test's budget: MSE H.264/AAC supported: %v; last state %+v", what, s.MSE, s)
		case <-deadline:
			t.Fatalf("%s: not within %v: MSE H.264/AAC supported: %v; last state %+v", what, within, s.MSE, s)
		case <-tick.C:
		}
	}
}

// waitPlaying waits until "main" plays: the first poll that finds the
// video ready sets the baseline, and playback must then move on by at
// least half a second, so a stalled first frame (or a player that joined
// at a late position and froze) does not pass. extra must hold as well.
func (e *browserEnv) waitPlaying(t *testing.T, within time.Duration, what string, extra func(pageState) bool) pageState {
	t.Helper()
	first := -1.0
	return e.waitFor(t, within, what, func(s pageState) bool {
		if !s.MainLive || s.Ready < 2 {
			return false
		}
		if first < 0 {
			first = s.Time
		}
		return s.Time >= 1.5 && s.Time-first >= 0.5 && (extra == nil || extra(s))
	})
}

// TestBrowserPlaysLive runs the whole delivery path in a real browser:
// ffmpeg writes a live fMP4 HLS into the object store, the origin serves
// it, the page lists the hub's channels and hls.js plays the live one.
func TestBrowserPlaysLive(t *testing.T) {
	e := startBrowser(t, 40*time.Second, liveCopy)
	st0 := e.waitPlaying(t, time.Minute, "video plays", nil)
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
	if want := e.url + "/live/main/index.m3u8"; st0.URL != want {
		t.Errorf("play URL %q, want %q", st0.URL, want)
	}
	// The page asked /api/streaming for that URL.
	if n := e.api.count(func(a *stubAPI) int { return a.streaming }); n < 1 {
		t.Errorf("/api/streaming asked %d times", n)
	}
	// One rendition: nothing to choose, and hls.js (not native HLS) plays.
	if st0.Quality || st0.QualityNote {
		t.Errorf("single rendition: quality control shown %v (options %q), native note shown %v", st0.Quality, st0.QualityOptions, st0.QualityNote)
	}
}

// liveCopy is ffmpeg's output for a single-rendition live channel: the
// source copied into fMP4 HLS of 2 s segments.
func liveCopy(out string) []string {
	// temp_file makes ffmpeg rename playlists into place, so the origin
	// never serves half a playlist.
	return []string{
		"-c", "copy", "-f", "hls", "-hls_time", "2", "-hls_segment_type", "fmp4",
		"-hls_list_size", "6", "-hls_flags", "delete_segments+temp_file+independent_segments",
		"-hls_fmp4_init_filename", "init.mp4",
		"-hls_segment_filename", filepath.Join(out, "seg_%05d.m4s"),
		filepath.Join(out, "index.m3u8"),
	}
}

// chooseJS picks the quality option whose text starts with %q, as a
// viewer would: set the value, then fire "change".
const chooseJS = `((prefix) => {
  const q = document.getElementById('quality');
  const o = [...q.options].find(o => o.textContent.startsWith(prefix));
  if (!o) return false;
  q.value = o.value;
  q.dispatchEvent(new Event('change', {bubbles: true}));
  return true;
})(%q)`

func (e *browserEnv) choose(t *testing.T, prefix string) {
	t.Helper()
	ok, err := chromedp.Run(e.tab, chromedp.Evaluate[bool](fmt.Sprintf(chooseJS, prefix)))
	if err != nil || !ok {
		t.Fatalf("choose quality %q: %v (found %v)", prefix, err, ok)
	}
}

var autoPlaying = regexp.MustCompile(`^Auto \((360|240)p\)$`)

// TestBrowserQuality plays a live channel with two renditions (an ABR
// ladder of 360p and 240p, as ffmpeg writes it with a master playlist)
// and drives the quality control: it lists Auto and both levels, a chosen
// level ends up on screen, and Auto hands the choice back to hls.js.
func TestBrowserQuality(t *testing.T) {
	e := startBrowser(t, 45*time.Second, func(out string) []string {
		// Two renditions from one decode, muxed video+audio each, under
		// live/main/360p/ and live/main/240p/, with the master playlist
		// at live/main/index.m3u8. Same GOP on both (2 s at 30 fps, no
		// scene-cut keyframes) so their segments line up for switching.
		// ffmpeg 5.1 appends the variant's number to the init name
		// (init_0.mp4, init_1.mp4).
		return []string{
			"-filter_complex", "[0:v]split=2[a][b];[a]scale=-2:360[v0];[b]scale=-2:240[v1]",
			"-map", "[v0]", "-map", "0:a", "-map", "[v1]", "-map", "0:a",
			"-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
			"-b:v:0", "600k", "-b:v:1", "300k", "-c:a", "aac", "-b:a", "64k",
			"-f", "hls", "-hls_time", "2", "-hls_segment_type", "fmp4",
			"-hls_list_size", "6", "-hls_flags", "delete_segments+temp_file+independent_segments",
			"-master_pl_name", "index.m3u8",
			"-var_stream_map", "v:0,a:0,name:360p v:1,a:1,name:240p",
			"-hls_fmp4_init_filename", "init.mp4",
			"-hls_segment_filename", filepath.Join(out, "%v", "seg_%05d.m4s"),
			filepath.Join(out, "%v", "index.m3u8"),
		}
	})

	// Plays, with the control listing Auto and both levels, highest first.
	s := e.waitPlaying(t, 25*time.Second, "video plays with a quality control", func(s pageState) bool {
		return s.Quality && len(s.QualityOptions) == 3
	})
	t.Logf("playing: currentTime %.2f s, %dp, quality options %q", s.Time, s.Height, s.QualityOptions)
	if s.QualityLabel != "Quality" || s.QualityNote {
		t.Errorf("quality label %q, native note shown %v", s.QualityLabel, s.QualityNote)
	}
	if !strings.HasPrefix(s.QualityOptions[0], "Auto") || s.QualityChosen != s.QualityOptions[0] ||
		!strings.HasPrefix(s.QualityOptions[1], "360p · ") || !strings.HasSuffix(s.QualityOptions[1], "b/s") ||
		!strings.HasPrefix(s.QualityOptions[2], "240p · ") || !strings.HasSuffix(s.QualityOptions[2], "b/s") {
		t.Errorf("quality options %q (chosen %q), want Auto, 360p · …b/s, 240p · …b/s", s.QualityOptions, s.QualityChosen)
	}
	// On Auto the control names the level on screen.
	s = e.waitFor(t, 5*time.Second, "Auto shows the playing level", func(s pageState) bool {
		return len(s.QualityOptions) > 0 && autoPlaying.MatchString(s.QualityOptions[0])
	})
	if want := fmt.Sprintf("Auto (%dp)", s.Height); s.Height != 0 && s.QualityOptions[0] != want {
		t.Logf("Auto label %q while the video is %dp (a switch in flight?)", s.QualityOptions[0], s.Height)
	}

	// 240p: hls.js switches, and the video keeps playing at 240 lines.
	e.choose(t, "240p")
	at := -1.0
	s = e.waitFor(t, 15*time.Second, "switch to 240p", func(s pageState) bool {
		if s.Height == 240 && at < 0 {
			at = s.Time
		}
		return s.Height == 240 && at >= 0 && s.Time-at >= 0.5
	})
	if !strings.HasPrefix(s.QualityChosen, "240p") || s.QualityOptions[0] != "Auto" {
		t.Errorf("after choosing 240p: chosen %q, options %q", s.QualityChosen, s.QualityOptions)
	}
	t.Logf("switched: currentTime %.2f s, %dp", s.Time, s.Height)

	// Auto again: the control says so and names the level on screen, and
	// hls.js takes over. Over loopback its bandwidth estimate is far above
	// both levels, so it goes back up to 360p (in well under a second
	// here); staying at 240p would mean the choice did not go back to it.
	e.choose(t, "Auto")
	at = s.Time
	s = e.waitFor(t, 15*time.Second, "back to Auto, at 360p", func(s pageState) bool {
		return s.QualityChosen == "Auto (360p)" && s.Height == 360 && s.Time-at >= 1
	})
	t.Logf("auto: currentTime %.2f s, %dp, chosen %q", s.Time, s.Height, s.QualityChosen)
}

// stubAPI is the part of streamd's API the page uses for signing in and
// playing, enough to drive it: one account (viewer, password "secret",
// tier free; with mfa set, it then wants the code "123456"; user "locked"
// is rate limited), rotating refresh tokens, and /api/streaming. With protected
// set, channel "main" needs a playback token, which /api/streaming gives
// only to a signed-in viewer ("t1", "t2", ...), and the stub is the
// origin's guard for it; otherwise /api/streaming gives the plain
// public URL. The library (/api/content) is not stubbed.
type stubAPI struct {
	protected bool

	mu        sync.Mutex
	mfa       bool   // the account wants a TOTP code after its password
	seq       int    // token pairs issued
	access    string // the access token that works ("": none)
	refresh   string // the refresh token that works
	refreshes int    // refreshes granted
	logouts   int
	streaming int // GET /api/streaming calls
	playback  int // playback tokens issued
	minValid  int // playback tokens "t<n>" with n below this are refused (expired)
}

func (a *stubAPI) count(f func(*stubAPI) int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return f(a)
}

// expire makes the access token and every playback token issued so far
// stop working, as time would; the refresh token still works.
func (a *stubAPI) expire() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.access = ""
	a.minValid = a.playback + 1
}

// Protected and Verify make the stub the origin's Guard.
func (a *stubAPI) Protected(ctx context.Context, key string) (bool, error) {
	return strings.HasPrefix(key, "live/main/"), nil
}

func (a *stubAPI) Verify(_ context.Context, token, path, clientIP string) (origin.Grant, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(token, "t"))
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil || !strings.HasPrefix(token, "t") || n < 1 || n > a.playback {
		return origin.Grant{}, errors.New("bad token")
	}
	if n < a.minValid {
		return origin.Grant{}, errors.New("expired")
	}
	return origin.Grant{}, nil
}

func stubJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func stubError(w http.ResponseWriter, code int, msg string) {
	stubJSON(w, code, map[string]any{"error": map[string]string{"code": "unauthenticated", "message": msg}})
}

// pair issues a new token pair; the old one stops working. a.mu is held.
func (a *stubAPI) pair() map[string]any {
	a.seq++
	a.access, a.refresh = "a"+strconv.Itoa(a.seq), "r"+strconv.Itoa(a.seq)
	return map[string]any{"access_token": a.access, "refresh_token": a.refresh, "token_type": "Bearer", "expires_in": 900}
}

// bearer reports whether r carries the working access token, and whether
// it carries one at all. a.mu is held.
func (a *stubAPI) bearer(r *http.Request) (ok, sent bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return false, false
	}
	return a.access != "" && h == "Bearer "+a.access, true
}

func (a *stubAPI) register(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/auth/login", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Username, Email, Password string }
		json.NewDecoder(r.Body).Decode(&in)
		a.mu.Lock()
		defer a.mu.Unlock()
		switch {
		case in.Username == "locked":
			w.Header().Set("Retry-After", "42")
			stubJSON(w, 429, map[string]any{"error": map[string]string{"code": "rate_limited", "message": "too many failed logins; try again later"}})
		case in.Username != "viewer" || in.Password != "secret":
			stubError(w, 401, "wrong username or password")
		case a.mfa:
			stubJSON(w, 200, map[string]any{"mfa_required": true, "mfa_token": "m1", "expires_in": 300})
		default:
			stubJSON(w, 200, a.pair())
		}
	})
	mux.HandleFunc("POST /api/auth/mfa/verify", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			MFAToken string `json:"mfa_token"`
			Code     string `json:"code"`
		}
		json.NewDecoder(r.Body).Decode(&in)
		a.mu.Lock()
		defer a.mu.Unlock()
		if !a.mfa || in.MFAToken != "m1" || in.Code != "123456" {
			stubError(w, 401, "invalid or expired MFA challenge")
			return
		}
		stubJSON(w, 200, a.pair())
	})
	mux.HandleFunc("POST /api/auth/refresh", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			RefreshToken string `json:"refresh_token"`
		}
		json.NewDecoder(r.Body).Decode(&in)
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.refresh == "" || in.RefreshToken != a.refresh {
			stubError(w, 401, "invalid refresh token")
			return
		}
		a.refreshes++
		stubJSON(w, 200, a.pair())
	})
	mux.HandleFunc("POST /api/auth/logout", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if ok, _ := a.bearer(r); !ok {
			stubError(w, 401, "invalid token")
			return
		}
		a.logouts++
		a.access, a.refresh = "", ""
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /api/users/me", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if ok, _ := a.bearer(r); !ok {
			stubError(w, 401, "invalid token")
			return
		}
		stubJSON(w, 200, map[string]any{"id": "u1", "email": "viewer@example.com", "username": "viewer", "role": "viewer", "tier": "free"})
	})
	mux.HandleFunc("GET /api/streaming/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		a.mu.Lock()
		defer a.mu.Unlock()
		a.streaming++
		ok, sent := a.bearer(r)
		if sent && !ok {
			stubError(w, 401, "invalid or expired token")
			return
		}
		if !a.protected {
			stubJSON(w, 200, map[string]any{"id": id, "kind": "channel", "protected": false, "hls": web.PlayURL(id)})
			return
		}
		if !ok {
			stubError(w, 401, "log in to play this channel")
			return
		}
		a.playback++
		stubJSON(w, 200, map[string]any{"id": id, "kind": "channel", "protected": true,
			"hls": web.PlayURL(id) + "?st=t" + strconv.Itoa(a.playback), "expires_at": time.Now().Add(time.Hour)})
	})
}

// signIn fills the sign-in form and submits it, as a viewer would.
func (e *browserEnv) signIn(t *testing.T, login, password string) {
	t.Helper()
	if err := chromedp.Do(e.tab,
		chromedp.SetValue(chromedp.ID("login"), login),
		chromedp.SetValue(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("signinbtn")),
	); err != nil {
		t.Fatalf("sign in as %s: %v", login, err)
	}
}

// enterCode fills the sign-in form's code field and submits it.
func (e *browserEnv) enterCode(t *testing.T, code string) {
	t.Helper()
	if err := chromedp.Do(e.tab,
		chromedp.SetValue(chromedp.ID("mfacode"), code),
		chromedp.Click(chromedp.ID("signinbtn")),
	); err != nil {
		t.Fatalf("enter code: %v", err)
	}
}

// TestBrowserSignedPlayback plays a protected live channel through the
// page: anonymous, /api/streaming wants a sign-in and the page says so; a
// wrong password and a rate limit are one readable line each; signing in
// takes the password, then a TOTP code; signed in, the channel plays from
// the signed URL. When both the signed URL and the access token expire
// mid-play, the page refreshes its session (rotating the refresh token),
// gets a new signed URL and plays on; signing out stops it and ends the
// server's session.
func TestBrowserSignedPlayback(t *testing.T) {
	e := startBrowserWith(t, 60*time.Second, true, liveCopy)
	signInToWatch := "Sign in to watch “main”."

	// The channel is picked by itself, but not played.
	s := e.poll(t, 15*time.Second, "asks to sign in", false, func(s pageState) bool { return s.Error != "" })
	if s.Error != signInToWatch || s.URLShown || s.Ready != 0 || s.SignedIn {
		t.Fatalf("anonymous: error %q, URL box shown %v (%q), readyState %d, signed in %v", s.Error, s.URLShown, s.URL, s.Ready, s.SignedIn)
	}

	e.signIn(t, "viewer", "wrong")
	s = e.poll(t, 10*time.Second, "wrong password refused", false, func(s pageState) bool { return s.AuthError != "" })
	if s.AuthError != "wrong username or password" || s.SignedIn || s.Stored != "" || strings.Contains(s.Auth, "Signed in") {
		t.Fatalf("wrong password: error line %q, signed in %v, status %q, stored %q", s.AuthError, s.SignedIn, s.Auth, s.Stored)
	}

	e.signIn(t, "locked", "secret")
	s = e.poll(t, 10*time.Second, "rate limited", false, func(s pageState) bool { return strings.HasPrefix(s.AuthError, "Too many") })
	if want := "Too many attempts, try again in 42 s"; s.AuthError != want || s.SignedIn {
		t.Fatalf("rate limited: error line %q (want %q), signed in %v", s.AuthError, want, s.SignedIn)
	}

	// The right password, then the account's TOTP code: a wrong one
	// first.
	e.api.mu.Lock()
	e.api.mfa = true
	e.api.mu.Unlock()
	e.signIn(t, "viewer", "secret")
	s = e.poll(t, 10*time.Second, "code asked for", false, func(s pageState) bool { return s.MFAShown })
	if s.AuthError != "" || s.SignedIn || !strings.HasPrefix(s.Auth, "Enter the code") {
		t.Fatalf("code asked for: error line %q, signed in %v, status %q", s.AuthError, s.SignedIn, s.Auth)
	}
	e.enterCode(t, "654321")
	s = e.poll(t, 10*time.Second, "wrong code refused", false, func(s pageState) bool { return s.AuthError != "" })
	if s.AuthError != "invalid or expired MFA challenge" || s.SignedIn || !s.MFAShown {
		t.Fatalf("wrong code: error line %q, signed in %v, code field shown %v", s.AuthError, s.SignedIn, s.MFAShown)
	}
	e.enterCode(t, "123456")
	s = e.poll(t, 10*time.Second, "signed in", false, func(s pageState) bool { return s.SignedIn })
	if s.Auth != "Signed in as viewer (free)" || s.AuthError != "" || s.MFAShown || !strings.Contains(s.Stored, `"r1"`) {
		t.Errorf("signed in: status %q, error line %q, stored session %q", s.Auth, s.AuthError, s.Stored)
	}
	s = e.waitPlaying(t, 30*time.Second, "plays once signed in", nil)
	if want := e.url + "/live/main/index.m3u8?st=t1"; s.URL != want {
		t.Errorf("play URL %q, want %q", s.URL, want)
	}
	t.Logf("playing signed: currentTime %.2f s, URL %q", s.Time, s.URL)

	// Mid-play, the signed URL and the access token expire. The origin
	// refuses the next playlist reload (403); the page asks
	// /api/streaming again, gets a 401 for its access token, refreshes
	// the session once and plays on from the live edge with a new URL.
	e.api.expire()
	s = e.waitFor(t, 20*time.Second, "a new signed URL", func(s pageState) bool { return s.URL != "" && !strings.HasSuffix(s.URL, "st=t1") })
	if want := e.url + "/live/main/index.m3u8?st=t2"; s.URL != want {
		t.Errorf("renewed play URL %q, want %q", s.URL, want)
	}
	s = e.waitPlaying(t, 20*time.Second, "plays on with the new URL", nil)
	if n := e.api.count(func(a *stubAPI) int { return a.refreshes }); n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
	if !strings.Contains(s.Stored, `"r2"`) || strings.Contains(s.Stored, `"r1"`) || !s.SignedIn {
		t.Errorf("after the refresh: stored session %q, signed in %v", s.Stored, s.SignedIn)
	}
	t.Logf("renewed: currentTime %.2f s, URL %q", s.Time, s.URL)

	// Sign out: the channel stops, the signed URL goes, the server's
	// session ends.
	if err := chromedp.Do(e.tab, chromedp.Click(chromedp.ID("signout"))); err != nil {
		t.Fatalf("sign out: %v", err)
	}
	s = e.poll(t, 10*time.Second, "signed out", false, func(s pageState) bool { return !s.SignedIn && s.Error != "" })
	if s.Error != signInToWatch || s.URLShown || s.Stored != "" || s.Ready != 0 {
		t.Errorf("signed out: error %q, URL box shown %v, stored %q, readyState %d", s.Error, s.URLShown, s.Stored, s.Ready)
	}
	e.poll(t, 5*time.Second, "server session ended", false, func(pageState) bool {
		return e.api.count(func(a *stubAPI) int { return a.logouts }) == 1
	})
}
