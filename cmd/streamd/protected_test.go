package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/streamd/streamd/internal/testenv"
)

func apiJSON(t *testing.T, method, u, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// TestProtectedLadderChannel: a protected channel plays only through the
// signed URL /api/streaming gives a logged-in viewer; the URL's token
// reaches every playlist and segment, and a free viewer does not get the
// renditions above the tier's height.
func TestProtectedLadderChannel(t *testing.T) {
	testenv.FFmpeg(t)
	s := startServer(t,
		"STREAMD_LADDERS="+abrLadder,
		"STREAMD_CHANNELS=[{name: main, stream_key: "+testKey+", ladder: abr, protected: true}]",
		"STREAMD_AUTH_TIER_MAX_HEIGHT={free: 400, premium: 0, family: 0}",
	)
	publishLoop(t, "h264_aac_720p.mp4", "-f", "flv", "rtmp://"+s.rtmp+"/live/"+testKey)

	code, _ := apiJSON(t, "POST", s.url("/api/auth/register"), "", `{"email":"v@example.com","username":"viewer1","password":"a long enough passphrase"}`)
	if code != 201 {
		t.Fatalf("register: %d", code)
	}
	code, m := apiJSON(t, "POST", s.url("/api/auth/login"), "", `{"username":"viewer1","password":"a long enough passphrase"}`)
	tok, _ := m["access_token"].(string)
	if code != 200 || tok == "" {
		t.Fatalf("login: %d %v", code, m)
	}
	if code, _ := apiJSON(t, "GET", s.url("/api/streaming/main"), "", ""); code != 401 {
		t.Errorf("anonymous streaming URL: %d", code)
	}
	code, m = apiJSON(t, "GET", s.url("/api/streaming/main"), tok, "")
	hls, _ := m["hls"].(string)
	if code != 200 || !strings.Contains(hls, "?st=") || m["max_height"] != float64(400) {
		t.Fatalf("streaming: %d %v", code, m)
	}

	if resp, _ := s.get(t, "/live/main/index.m3u8"); resp.StatusCode != 401 {
		t.Errorf("master without a token: %d", resp.StatusCode)
	}
	if resp, _ := s.get(t, "/live/main/index.m3u8?st=v1.forged.token"); resp.StatusCode != 403 {
		t.Errorf("master with a forged token: %d", resp.StatusCode)
	}
	var mv *playlist.Multivariant
	waitFor(t, 40*time.Second, "the signed master", func() bool {
		resp, b := s.get(t, hls)
		if resp.StatusCode != 200 {
			return false
		}
		pl, err := playlist.Unmarshal(b)
		if err != nil {
			t.Fatalf("signed master: %v\n%s", err, b)
		}
		mv = pl.(*playlist.Multivariant)
		return true
	})
	// 720p source and 480p are above the free tier's 400 lines: only 360p.
	if len(mv.Variants) != 1 || !strings.HasPrefix(mv.Variants[0].URI, "360p/index.m3u8?st=") {
		t.Fatalf("free viewer's variants: %+v", mv.Variants)
	}
	st := mv.Variants[0].URI[strings.Index(mv.Variants[0].URI, "?"):]
	resp, b := s.get(t, "/live/main/"+mv.Variants[0].URI)
	if resp.StatusCode != 200 {
		t.Fatalf("360p playlist: %d", resp.StatusCode)
	}
	mp, err := playlist.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	media := mp.(*playlist.Media)
	for _, seg := range media.Segments {
		if !strings.Contains(seg.URI, "st=") {
			t.Fatalf("segment URI without the token: %s", seg.URI)
		}
	}
	u, _ := url.Parse(media.Segments[0].URI)
	if resp, _ := s.get(t, path.Join("/live/main/360p", u.Path)+"?"+u.RawQuery); resp.StatusCode != 200 {
		t.Errorf("segment with the token: %d", resp.StatusCode)
	}
	if resp, _ := s.get(t, path.Join("/live/main/360p", u.Path)); resp.StatusCode != 401 {
		t.Errorf("segment without the token: %d", resp.StatusCode)
	}
	if resp, _ := s.get(t, "/live/main/480p/index.m3u8"+st); resp.StatusCode != 403 {
		t.Errorf("480p with a free viewer's token: %d", resp.StatusCode)
	}
	// Neither the playback token nor the access token reaches the log.
	logs := s.Logs()
	for name, secret := range map[string]string{"playback token": strings.TrimPrefix(st, "?st="), "access token": tok} {
		if strings.Contains(logs, secret) {
			t.Errorf("the server log contains the %s", name)
		}
	}
}
