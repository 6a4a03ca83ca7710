package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/streamd/streamd/internal/testenv"
)

// memberState is what TestBrowserProtectedLibrary reads from the page on
// every poll.
type memberState struct {
	Items     map[string]string `json:"items"`   // text of each library entry, by content id
	Members   map[string]bool   `json:"members"` // the entry has the Members badge
	Ready     map[string]bool   `json:"ready"`   // the entry has the Ready badge and an enabled button
	Current   string            `json:"current"`
	LibError  string            `json:"libError"`
	APIError  string            `json:"apiError"`
	Error     string            `json:"error"` // the player's error line
	Status    string            `json:"status"`
	URL       string            `json:"url"` // the play URL box
	Time      float64           `json:"time"`
	RState    int               `json:"rstate"`
	Auth      string            `json:"auth"`      // the sign-in status line
	AuthError string            `json:"authError"` // the sign-in error line
	SignedIn  bool              `json:"signedIn"`  // Sign out shown, the form hidden
	Stored    bool              `json:"stored"`    // a session is kept in sessionStorage
}

const memberStateJS = `(() => {
  const v = document.getElementById('video');
  const shown = id => { const e = document.getElementById(id); return e.hidden ? '' : e.textContent; };
  const items = {}, members = {}, ready = {};
  let current = '';
  for (const li of document.querySelectorAll('#library li')) {
    const id = li.dataset.id, b = li.querySelector('button');
    const badges = [...li.querySelectorAll('.badge')].map(e => e.textContent);
    items[id] = li.textContent;
    members[id] = badges.includes('Members');
    ready[id] = badges.includes('Ready') && !!b && !b.disabled;
    if (li.getAttribute('aria-current') === 'true') current = id;
  }
  return {items, members, ready, current,
    libError: shown('libraryerror'), apiError: shown('apierror'), error: shown('error'),
    status: document.getElementById('status').textContent,
    url: document.getElementById('playurl').value,
    time: v.currentTime, rstate: v.readyState,
    auth: document.getElementById('authstatus').textContent, authError: shown('autherror'),
    signedIn: !document.getElementById('signout').hidden && document.getElementById('signin').hidden,
    stored: !!sessionStorage.getItem('streamd.session')};
})()`

// TestBrowserProtectedLibrary: a publisher uploads one item as protected
// and one public; in Chromium, the page lists only the public one until a
// viewer signs in through its form, then the protected one too, with the
// Members badge, also after a reload, and a click plays it from a signed
// URL. Signing out takes it away again, and a wrong password is refused
// with one readable line.
func TestBrowserProtectedLibrary(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	chromium := testenv.Chromium(t)
	testenv.FFprobe(t)
	testenv.FFmpeg(t)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	m := inProcess(t, nil, []byte(vodTestJob), [2]string{"pub", "publisher"}, [2]string{"viewer", "viewer"})
	base := "http://" + m.HTTPAddr.String()
	pub := loginToken(t, base, "pub")
	prot := tusUpload(t, base, pub, "h264_aac_360p.mp4", "visibility", "protected")
	public := tusUpload(t, base, pub, "h264_aac_360p.mp4")
	for _, id := range []string{prot, public} {
		if it, seen := waitContent(t, base, pub, id); it.Status != "ready" {
			t.Fatalf("item %s: %+v (statuses %v)", id, it, seen)
		}
	}
	t.Logf("both items ready after %.1f s", time.Since(start).Seconds())

	bctx := openPage(t, ctx, chromium, base+"/")

	// waitFor polls the page until done accepts its state. The library's
	// and the channel list's error lines always fail the test, the
	// player's unless playerError allows it.
	waitFor := func(what string, playerError bool, done func(memberState) bool) memberState {
		t.Helper()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			s, err := chromedp.Run(bctx, chromedp.Evaluate[memberState](memberStateJS))
			if err != nil {
				t.Fatalf("%s: read page: %v", what, err)
			}
			if s.LibError != "" || s.APIError != "" || (s.Error != "" && !playerError) {
				t.Fatalf("%s: page shows an error: player %q, library %q, channels %q (state %+v)", what, s.Error, s.LibError, s.APIError, s)
			}
			if done(s) {
				return s
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: not within the test's 60 s: state %+v", what, s)
			case <-tick.C:
			}
		}
	}
	signIn := func(login, password string) {
		t.Helper()
		if err := chromedp.Do(bctx,
			chromedp.Clear(chromedp.ID("login")),
			chromedp.SendKeys(chromedp.ID("login"), login),
			chromedp.Clear(chromedp.ID("password")),
			chromedp.SendKeys(chromedp.ID("password"), password),
			chromedp.Click(chromedp.ID("signinbtn")),
		); err != nil {
			t.Fatalf("sign in as %s: %v", login, err)
		}
	}

	// Anonymous: the public item only.
	s := waitFor("the public item listed", false, func(s memberState) bool { return s.Ready[public] })
	if _, ok := s.Items[prot]; ok || len(s.Items) != 1 || s.Members[public] || s.SignedIn || s.Stored {
		t.Fatalf("anonymous library %q (members badges %v), signed in %v, stored session %v; want only %s, no badge",
			s.Items, s.Members, s.SignedIn, s.Stored, public)
	}

	// Signed in through the form: the protected item shows up, marked.
	signIn("viewer", testPassword)
	s = waitFor("signed in, the protected item listed", false, func(s memberState) bool { return s.SignedIn && s.Ready[prot] })
	t.Logf("signed in after %.1f s: %q, library %q", time.Since(start).Seconds(), s.Auth, s.Items)
	if !strings.HasPrefix(s.Auth, "Signed in as viewer (") || s.AuthError != "" || !s.Stored {
		t.Errorf("sign-in status %q, error line %q, session stored %v", s.Auth, s.AuthError, s.Stored)
	}
	if !s.Members[prot] || s.Members[public] || s.Items[prot] != "h264_aac_360pReadyMembers" || len(s.Items) != 2 {
		t.Errorf("library %q, Members badges %v: want the badge on %s only", s.Items, s.Members, prot)
	}

	// The session lives in the tab: a reload keeps it.
	if err := chromedp.Do(bctx, chromedp.Reload()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	s = waitFor("still signed in after a reload", false, func(s memberState) bool { return s.SignedIn && s.Ready[prot] })
	if !strings.HasPrefix(s.Auth, "Signed in as viewer (") {
		t.Errorf("after a reload: sign-in status %q", s.Auth)
	}

	// A click plays it, from a signed URL.
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#library li[data-id=%q] button`, prot)))); err != nil {
		t.Fatalf("click the protected item: %v", err)
	}
	s = waitFor("the protected item plays", false, func(s memberState) bool { return s.RState >= 2 && s.Time > 1 })
	t.Logf("playing after %.1f s: currentTime %.2f s, status %q", time.Since(start).Seconds(), s.Time, s.Status)
	if want := base + "/vod/" + prot + "/index.m3u8?st="; !strings.HasPrefix(s.URL, want) || len(s.URL) <= len(want) {
		t.Errorf("play URL %q, want %s<token>", s.URL, want)
	}
	if s.Current != prot || !strings.HasSuffix(s.Status, "“h264_aac_360p”") {
		t.Errorf("entry marked as playing %q (want %s), status %q", s.Current, prot, s.Status)
	}

	// Sign out: the protected item goes, and so does its signed URL.
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.ID("signout"))); err != nil {
		t.Fatalf("sign out: %v", err)
	}
	s = waitFor("signed out, the protected item gone", true, func(s memberState) bool {
		_, listed := s.Items[prot]
		return !s.SignedIn && !listed && s.Ready[public]
	})
	if s.Stored || s.URL != "" || s.Error != "Sign in to watch “h264_aac_360p”." {
		t.Errorf("signed out: session stored %v, play URL %q, player error %q", s.Stored, s.URL, s.Error)
	}

	// A wrong password: the error line, still signed out.
	signIn("viewer", "not the passphrase")
	s = waitFor("a wrong password refused", true, func(s memberState) bool { return s.AuthError != "" })
	if s.AuthError != "wrong login or password" || s.SignedIn || s.Stored {
		t.Errorf("wrong password: error line %q, signed in %v, session stored %v", s.AuthError, s.SignedIn, s.Stored)
	}
	if _, listed := s.Items[prot]; listed {
		t.Errorf("protected item listed after a failed sign-in: %q", s.Items)
	}
	t.Logf("done after %.1f s", time.Since(start).Seconds())
}
