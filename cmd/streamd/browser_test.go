package main

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/streamd/streamd/internal/testenv"
)

// TestBrowserPlaysPublishedChannel is the newcomer's path end to end:
// ffmpeg publishes over RTMP to the binary, and headless Chromium opens
// the web page, sees the channel live and plays streamd's own CMAF HLS.
func TestBrowserPlaysPublishedChannel(t *testing.T) {
	s := startServer(t)
	publishLoop(t, "h264_aac_720p.mp4", "-f", "flv", "rtmp://"+s.rtmp+"/live/"+testKey)
	browserPlays(t, s, 1)
}

// TestBrowserPlaysLadderChannel: a laddered channel (video renditions plus
// the shared audio group) plays in Chromium, and the page offers its
// renditions.
func TestBrowserPlaysLadderChannel(t *testing.T) {
	s := abrServer(t)
	publishLoop(t, "h264_aac_720p.mp4", "-f", "flv", "rtmp://"+s.rtmp+"/live/"+testKey)
	browserPlays(t, s, 3)
}

func browserPlays(t *testing.T, s *server, levels int) {
	chromium := testenv.Chromium(t)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx, testenv.ChromiumOptions(t, chromium)...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	if err := chromedp.Do(bctx, chromedp.Navigate(s.url("/"))); err != nil {
		t.Fatalf("open page: %v", err)
	}
	type state struct {
		Listed bool    `json:"listed"`
		Time   float64 `json:"time"`
		Ready  int     `json:"ready"`
		Error  string  `json:"error"`
		Levels int     `json:"levels"`
		Audio  bool    `json:"audio"`
	}
	const js = `(() => {
		const v = document.getElementById('video');
		const e = document.getElementById('error');
		const items = [...document.querySelectorAll('#channels li')].map(li => li.textContent);
		return {listed: items.some(t => t.includes('main') && t.includes('LIVE')),
			time: v.currentTime, ready: v.readyState, error: e.hidden ? '' : e.textContent,
			levels: Math.max(document.querySelectorAll('#quality option').length - 1, 1),
			audio: (v.webkitAudioDecodedByteCount || 0) > 0};
	})()`
	first := -1.0
	var st state
	for {
		var err error
		st, err = chromedp.Run(bctx, chromedp.Evaluate[state](js))
		if err != nil {
			t.Fatalf("read page: %v", err)
		}
		if st.Error != "" {
			t.Fatalf("page shows an error: %q", st.Error)
		}
		if st.Listed && st.Ready >= 2 && first < 0 {
			first = st.Time
		}
		if st.Listed && st.Ready >= 2 && st.Time-first >= 1.5 && st.Levels == levels && st.Audio {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("channel not played within 60 s; last state %+v", st)
		case <-time.After(250 * time.Millisecond):
		}
	}
	t.Logf("playing streamd's HLS in Chromium: currentTime %.2f s, %d renditions offered, audio decoded", st.Time, st.Levels)
}
