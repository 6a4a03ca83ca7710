package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/streamd/streamd/internal/testenv"
)

// syncBuffer collects the browser's console output for the failure report.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(&s.b, format, args...)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// libraryState is what the test reads from the page on every poll.
type libraryState struct {
	Items    map[string]string `json:"items"` // text of each library entry, by content id
	Ready    map[string]bool   `json:"ready"` // the entry has the Ready badge and an enabled button
	Current  string            `json:"current"`
	Empty    bool              `json:"empty"`    // "No videos yet" shown
	LibError string            `json:"libError"` // the library's error line
	APIError string            `json:"apiError"` // the channel list's error line
	Time     float64           `json:"time"`
	RState   int               `json:"rstate"`
	Error    string            `json:"error"`
	Status   string            `json:"status"`
	URL      string            `json:"url"`
	Options  []string          `json:"options"` // the quality control's options
	XSS      bool              `json:"xss"`
}

const libraryStateJS = `(() => {
  const v = document.getElementById('video');
  const shown = id => { const e = document.getElementById(id); return e.hidden ? '' : e.textContent; };
  const items = {}, ready = {};
  let current = '';
  for (const li of document.querySelectorAll('#library li')) {
    items[li.dataset.id] = li.textContent;
    const b = li.querySelector('button');
    ready[li.dataset.id] = !!li.querySelector('.badge') && li.querySelector('.badge').textContent === 'Ready' && !!b && !b.disabled;
    if (li.getAttribute('aria-current') === 'true') current = li.dataset.id;
  }
  return {items, ready, current,
    empty: !document.getElementById('libraryempty').hidden,
    libError: shown('libraryerror'), apiError: shown('apierror'),
    time: v.currentTime, rstate: v.readyState, error: shown('error'),
    status: document.getElementById('status').textContent,
    url: document.getElementById('playurl').value,
    options: [...document.querySelectorAll('#quality option')].map(o => o.textContent),
    xss: window.__xss === 1 || !!document.querySelector('#library img, #library b')};
})()`

// TestLibraryBrowserPlaysVOD: a publisher uploads a master with tus; the
// page, open in Chromium while it encodes, lists it in the library (with a
// failed upload and a pending item whose title and genre are markup) and,
// once the item shows Ready, a click plays it with hls.js in the page's
// player, its renditions offered in the quality control.
func TestLibraryBrowserPlaysVOD(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	chromium := testenv.Chromium(t)
	testenv.FFprobe(t)
	testenv.FFmpeg(t)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	m := inProcess(t, nil, []byte(vodTestJob), [2]string{"pub", "publisher"})
	base := "http://" + m.HTTPAddr.String()

	do := func(method, p, ctype string, body []byte, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, base+p, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := do("POST", "/api/auth/login", "application/json", []byte(`{"username":"pub","password":"a long enough passphrase"}`))
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if tok.AccessToken == "" {
		t.Fatal("no access token")
	}
	bearer := "Bearer " + tok.AccessToken

	// upload sends a file with tus in one PATCH and returns the upload's
	// (and so the content item's) id.
	upload := func(name string) string {
		t.Helper()
		data, err := os.ReadFile(testenv.Testdata(name))
		if err != nil {
			t.Fatal(err)
		}
		resp := do("POST", uploadBase, "", nil, "Tus-Resumable", "1.0.0", "Upload-Length", strconv.Itoa(len(data)),
			"Upload-Metadata", "filename "+base64.StdEncoding.EncodeToString([]byte(name)), "Authorization", bearer)
		resp.Body.Close()
		loc, err := resp.Location()
		if resp.StatusCode != 201 || err != nil {
			t.Fatalf("tus create %s: %d %v", name, resp.StatusCode, err)
		}
		resp = do("PATCH", loc.Path, "application/offset+octet-stream", data,
			"Tus-Resumable", "1.0.0", "Upload-Offset", "0", "Authorization", bearer)
		resp.Body.Close()
		if resp.StatusCode != 204 {
			t.Fatalf("tus patch %s: %d", name, resp.StatusCode)
		}
		return path.Base(loc.Path)
	}
	id := upload("h264_aac_360p.mp4")
	bad := upload("not_media.txt")
	// An item with no upload yet, whose title and genre are markup.
	resp = do("POST", "/api/content", "application/json",
		[]byte(`{"title":"<img src=x onerror=\"window.__xss=1\">","genre":"<b>drama</b>"}`), "Authorization", bearer)
	var pending struct {
		ID string `json:"id"`
	}
	json.NewDecoder(resp.Body).Decode(&pending)
	resp.Body.Close()
	if resp.StatusCode != 201 || pending.ID == "" {
		t.Fatalf("create content: %d", resp.StatusCode)
	}

	// The page is opened while the item encodes: it must pick up the
	// change by itself.
	bctx := openPage(t, ctx, chromium, base+"/")

	var seen []string // the ready item's entry, each time it changed
	waitFor := func(what string, done func(libraryState) bool) libraryState {
		t.Helper()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			s, err := chromedp.Run(bctx, chromedp.Evaluate[libraryState](libraryStateJS))
			if err != nil {
				t.Fatalf("%s: read page: %v (seen %q)", what, err, seen)
			}
			if txt := s.Items[id]; txt != "" && (len(seen) == 0 || seen[len(seen)-1] != txt) {
				seen = append(seen, txt)
			}
			if s.XSS {
				t.Fatalf("library data was inserted as markup: %+v", s)
			}
			if s.Error != "" || s.LibError != "" || s.APIError != "" {
				t.Fatalf("%s: page shows an error: player %q, library %q, channels %q (state %+v)", what, s.Error, s.LibError, s.APIError, s)
			}
			if done(s) {
				return s
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: not within the test's 40 s: state %+v (item seen as %q)", what, s, seen)
			case <-tick.C:
			}
		}
	}

	s := waitFor("library lists the item as Ready", func(s libraryState) bool {
		return s.Ready[id] && strings.HasPrefix(s.Items[bad], "not_mediaFailed: ")
	})
	t.Logf("ready in the page after %.1f s; entry went %q", time.Since(start).Seconds(), seen)
	if got := s.Items[id]; got != "h264_aac_360pReady" {
		t.Errorf("ready entry %q, want title and the Ready badge", got)
	}
	if got := s.Items[bad]; !strings.Contains(got, "not_media.txt") || s.Ready[bad] {
		t.Errorf("failed entry %q (ready %v), want the reason naming the file", got, s.Ready[bad])
	}
	if got, want := s.Items[pending.ID], `<img src=x onerror="window.__xss=1"><b>drama</b> · Waiting for upload`; got != want {
		t.Errorf("pending entry %q, want %q", got, want)
	}
	if len(s.Items) != 3 || s.Empty {
		t.Errorf("library %q (empty note shown %v), want 3 entries", s.Items, s.Empty)
	}
	for _, prev := range seen[:len(seen)-1] {
		if !strings.HasPrefix(prev, "h264_aac_360pProcessing ") && prev != "h264_aac_360pQueued" {
			t.Errorf("before Ready the entry read %q", prev)
		}
	}

	// A click plays it: hls.js loads the master, playback moves on by a
	// second, and the quality control offers Auto and both rungs.
	clickJS := fmt.Sprintf(`(() => {
	  const b = document.querySelector('#library li[data-id=%q] button');
	  if (!b) return false;
	  b.dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true}));
	  return true;
	})()`, id)
	if ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](clickJS)); err != nil || !ok {
		t.Fatalf("click the ready item: %v (found %v)", err, ok)
	}
	first := -1.0
	s = waitFor("the item plays", func(s libraryState) bool {
		if s.RState >= 2 && first < 0 {
			first = s.Time
		}
		return s.RState >= 2 && first >= 0 && s.Time-first >= 1 && len(s.Options) == 3
	})
	t.Logf("playing after %.1f s: currentTime %.2f s, readyState %d, status %q, quality %q",
		time.Since(start).Seconds(), s.Time, s.RState, s.Status, s.Options)
	if s.Current != id {
		t.Errorf("entry marked as playing: %q, want %q", s.Current, id)
	}
	if want := base + "/vod/" + id + "/index.m3u8"; s.URL != want {
		t.Errorf("play URL %q, want %q", s.URL, want)
	}
	if !strings.HasSuffix(s.Status, "“h264_aac_360p”") {
		t.Errorf("status line %q", s.Status)
	}
	if len(s.Options) != 3 || !strings.HasPrefix(s.Options[0], "Auto") ||
		!strings.HasPrefix(s.Options[1], "240p · ") || !strings.HasPrefix(s.Options[2], "144p · ") {
		t.Errorf("quality options %q, want Auto, 240p, 144p", s.Options)
	}
}

// openPage opens url in a fresh headless Chromium that lives as long as
// ctx, and logs the page's console and exceptions if the test fails.
func openPage(t *testing.T, ctx context.Context, chromium, url string) context.Context {
	t.Helper()
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("browser console:\n%s", logs.String())
		}
	})
	actx, acancel := chromedp.NewExecAllocator(ctx, testenv.ChromiumOptions(t, chromium)...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			logs.Printf("console.%s: %s\n", ev.Type, strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			logs.Printf("exception: %s (%s:%d)\n", ev.ExceptionDetails.Text, ev.ExceptionDetails.URL, ev.ExceptionDetails.LineNumber)
		}
	}))
	t.Cleanup(bcancel)
	if err := chromedp.Do(bctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open page: %v", err)
	}
	return bctx
}
