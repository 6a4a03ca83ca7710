package main

import (
	"encoding/json"
	"os/exec"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/streamd/streamd/internal/testenv"
)

func loginToken(t *testing.T, base, username string) string {
	t.Helper()
	code, m := apiJSON(t, "POST", base+"/api/auth/login", "", `{"username":"`+username+`","password":"`+testPassword+`"}`)
	tok, _ := m["access_token"].(string)
	if code != 200 || tok == "" {
		t.Fatalf("login %s: %d %v", username, code, m)
	}
	return tok
}

// TestProtectedCatalogItem: an item uploaded as protected is never served
// without a token; a viewer gets signed HLS and DASH URLs for their tier
// from /api/streaming, both play (gohlslib parses the HLS, ffprobe's DASH
// demuxer reads the MPD and its segments through the origin), renditions
// above the tier are gone from both manifests and refused; the owner can
// make it public again. A channel made protected through the API is
// guarded the same way.
func TestProtectedCatalogItem(t *testing.T) {
	ffprobe := testenv.FFprobe(t)
	testenv.FFmpeg(t)
	m := inProcess(t, map[string]string{"STREAMD_AUTH_TIER_MAX_HEIGHT": "{free: 200, premium: 0, family: 0}"},
		[]byte(vodTestJob), [2]string{"pub", "publisher"}, [2]string{"viewer", "viewer"})
	base := "http://" + m.HTTPAddr.String()
	pub, viewer := loginToken(t, base, "pub"), loginToken(t, base, "viewer")

	id := tusUpload(t, base, pub, "h264_aac_360p.mp4", "visibility", "protected")
	it, seen := waitContent(t, base, pub, id)
	if it.Status != "ready" {
		t.Fatalf("item: %+v (statuses %v)", it, seen)
	}
	vod := "/vod/" + id + "/"
	for _, p := range []string{"index.m3u8", "manifest.mpd", "r1/init.mp4", "r1/media.m3u8", "r0/seg-00001.m4s"} {
		if code, b := httpGet(t, base+vod+p); code != 401 {
			t.Errorf("anonymous GET %s: %d %.80s", p, code, b)
		}
	}
	if code, _ := httpGet(t, base+"/api/content/"+id); code != 401 {
		t.Errorf("anonymous catalog item: %d", code)
	}
	if code, _ := apiJSON(t, "GET", base+"/api/streaming/"+id, "", ""); code != 401 {
		t.Errorf("anonymous streaming URLs: %d", code)
	}

	code, sm := apiJSON(t, "GET", base+"/api/streaming/"+id, viewer, "")
	hls, _ := sm["hls"].(string)
	dash, _ := sm["dash"].(string)
	if code != 200 || sm["kind"] != "content" || sm["protected"] != true || sm["max_height"] != float64(200) ||
		!strings.HasPrefix(hls, vod+"index.m3u8?st=") || !strings.HasPrefix(dash, vod+"manifest.mpd?st=") {
		t.Fatalf("streaming: %d %v", code, sm)
	}
	tok := strings.TrimPrefix(hls, vod+"index.m3u8?st=")

	// HLS: the 240p variant is gone; what is left plays with the token.
	code, b := httpGet(t, base+hls)
	if code != 200 {
		t.Fatalf("signed master: %d %s", code, b)
	}
	pl, err := playlist.Unmarshal(b)
	if err != nil {
		t.Fatalf("signed master: %v\n%s", err, b)
	}
	mv := pl.(*playlist.Multivariant)
	if len(mv.Variants) != 1 || mv.Variants[0].Resolution != "256x144" || !strings.Contains(mv.Variants[0].URI, "st=") {
		t.Fatalf("free viewer's master:\n%s", b)
	}
	media := vod + mv.Variants[0].URI
	code, b = httpGet(t, base+media)
	if code != 200 {
		t.Fatalf("signed media playlist: %d", code)
	}
	pl, err = playlist.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	mp := pl.(*playlist.Media)
	dir := path.Dir(strings.SplitN(media, "?", 2)[0]) + "/"
	for _, u := range []string{mp.Map.URI, mp.Segments[0].URI} {
		if code, _ := httpGet(t, base+dir+u); code != 200 || !strings.Contains(u, "st=") {
			t.Errorf("GET %s: %d", u, code)
		}
	}
	if code, _ := httpGet(t, base+vod+"r0/init.mp4?st="+tok); code != 403 {
		t.Errorf("240p init segment with a free viewer's token: %d, want 403", code)
	}
	forged := tok[:len(tok)-2] + "AA"
	if forged == tok {
		forged = tok[:len(tok)-2] + "BB"
	}
	if code, _ := httpGet(t, base+vod+"index.m3u8?st="+forged); code != 403 {
		t.Errorf("changed token: %d, want 403", code)
	}

	// DASH: a real DASH client reads the signed MPD and its segments.
	out, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "stream=codec_type,height",
		"-of", "json", base+dash).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe of the signed MPD: %v\n%s", err, out)
	}
	var probe struct {
		Streams []struct {
			Type   string `json:"codec_type"`
			Height int    `json:"height"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &probe); err != nil {
		t.Fatalf("ffprobe output: %v\n%s", err, out)
	}
	var heights []int
	audio := 0
	for _, s := range probe.Streams {
		switch s.Type {
		case "video":
			heights = append(heights, s.Height)
		case "audio":
			audio++
		}
	}
	if len(heights) != 1 || heights[0] != 144 || audio != 1 {
		t.Fatalf("DASH through the signed MPD: video heights %v, %d audio, want [144] and 1\n%s", heights, audio, out)
	}
	code, b = httpGet(t, base+dash)
	if code != 200 || strings.Contains(string(b), `height="240"`) {
		t.Fatalf("signed MPD: %d, still lists 240p:\n%s", code, b)
	}

	// A viewer cannot change the item; its owner makes it public, and the
	// origin serves it without a token within a few seconds.
	if code, _ := apiJSON(t, "PUT", base+"/api/content/"+id, viewer, `{"visibility":"public"}`); code != 403 {
		t.Errorf("viewer PUT: %d, want 403", code)
	}
	if code, m := apiJSON(t, "PUT", base+"/api/content/"+id, pub, `{"visibility":"public"}`); code != 200 || m["visibility"] != "public" {
		t.Fatalf("owner PUT: %d %v", code, m)
	}
	waitFor(t, 10*time.Second, "the item served without a token", func() bool {
		code, _ := httpGet(t, base+vod+"index.m3u8")
		return code == 200
	})

	// A channel made protected through the API.
	code, ch := apiJSON(t, "POST", base+"/api/publish/channels", pub, `{"name":"paid","visibility":"protected"}`)
	if code != 201 || ch["visibility"] != "protected" {
		t.Fatalf("create protected channel: %d %v", code, ch)
	}
	if code, _ := httpGet(t, base+"/live/paid/index.m3u8"); code != 401 {
		t.Errorf("anonymous GET of a protected API channel: %d, want 401", code)
	}
	code, sm = apiJSON(t, "GET", base+"/api/streaming/paid", viewer, "")
	if hls, _ := sm["hls"].(string); code != 200 || sm["kind"] != "channel" || !strings.HasPrefix(hls, "/live/paid/index.m3u8?st=") {
		t.Fatalf("streaming of the channel: %d %v", code, sm)
	}
	if code, _ := apiJSON(t, "GET", base+"/api/streaming/nothing-here", viewer, ""); code != 404 {
		t.Errorf("streaming of an unknown id: %d, want 404", code)
	}

	// Log out everywhere: the viewer's signed URLs stop within seconds
	// (the channel is not live: a valid token finds nothing, 404; a
	// revoked one is refused, 403).
	paid, _ := sm["hls"].(string)
	if code, _ := httpGet(t, base+paid); code != 404 {
		t.Fatalf("signed URL of an idle channel: %d, want 404", code)
	}
	if code, _ := apiJSON(t, "POST", base+"/api/auth/logout-all", viewer, ""); code != 204 {
		t.Fatalf("log out everywhere: %d", code)
	}
	waitFor(t, 15*time.Second, "the revoked URL refused", func() bool {
		code, _ := httpGet(t, base+paid)
		return code == 403
	})
	fresh := loginToken(t, base, "viewer")
	code, sm = apiJSON(t, "GET", base+"/api/streaming/paid", fresh, "")
	if hls, _ := sm["hls"].(string); code != 200 {
		t.Fatalf("streaming after logging in again: %d %v", code, sm)
	} else if code, _ := httpGet(t, base+hls); code != 404 {
		t.Errorf("a URL issued after the revocation: %d, want 404 (accepted, nothing live)", code)
	}
}
