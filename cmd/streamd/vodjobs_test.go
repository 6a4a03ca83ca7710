package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/streamd/streamd/internal/testenv"
)

// vodTestJob keeps the encode tiny on two cores: two rungs, ultrafast.
const vodTestJob = `{"rungs":[
 {"name":"240p","height":240,"video_bitrate":"300k","preset":"ultrafast"},
 {"name":"144p","height":144,"video_bitrate":"120k","preset":"ultrafast"}],
 "segment_duration":"1s","audio_bitrate":"64k"}`

func TestUploadVODJobSQLite(t *testing.T) { testUploadVODJob(t, "") }

func TestUploadVODJobPostgres(t *testing.T) { testUploadVODJob(t, testenv.Postgres(t)) }

// testUploadVODJob: a publisher uploads a master with tus, the item goes
// queued → processing → ready, and it plays through the origin; a file
// that is not media ends failed with a readable reason.
func testUploadVODJob(t *testing.T, pgURL string) {
	ffprobe := testenv.FFprobe(t)
	testenv.FFmpeg(t)
	env := map[string]string{}
	if pgURL != "" {
		env["STREAMD_STORAGE_META_DRIVER"], env["STREAMD_STORAGE_META_URL"] = "postgres", pgURL
	}
	m := inProcess(t, env, []byte(vodTestJob), [2]string{"pub", "publisher"})
	base := "http://" + m.HTTPAddr.String()

	token := loginToken(t, base, "pub")
	uploadFile := func(name string) string { return tusUpload(t, base, token, name) }
	get := func(p string) (int, []byte) { return httpGet(t, base+p) }
	waitDone := func(id string) (vodItem, []string) { return waitContent(t, base, "", id) }

	id := uploadFile("h264_aac_360p.mp4")
	it, seen := waitDone(id)
	t.Logf("statuses: %v", seen)
	if it.Status != "ready" || it.Title != "h264_aac_360p" || it.Play == nil ||
		it.Play.HLS != "/vod/"+id+"/index.m3u8" || it.Play.DASH != "/vod/"+id+"/manifest.mpd" {
		t.Fatalf("ready item: %+v (statuses %v)", it, seen)
	}
	c, err := m.Meta.GetContent(context.Background(), id)
	if err != nil || c.OwnerID == "" || !strings.HasSuffix(c.MasterKey, "/h264_aac_360p.mp4") {
		t.Fatalf("stored item: %+v %v", c, err)
	}

	// The master playlist through the origin parses (gohlslib) and a
	// segment of its first rendition decodes (ffprobe).
	code, b := get(it.Play.HLS)
	if code != 200 {
		t.Fatalf("GET %s: %d", it.Play.HLS, code)
	}
	pl, err := playlist.Unmarshal(b)
	if err != nil {
		t.Fatalf("master does not parse: %v\n%s", err, b)
	}
	mv, ok := pl.(*playlist.Multivariant)
	if !ok || len(mv.Variants) != 2 {
		t.Fatalf("want a master with 2 variants:\n%s", b)
	}
	vbase := path.Dir(it.Play.HLS) + "/"
	mediaPath := vbase + mv.Variants[0].URI
	code, b = get(mediaPath)
	if code != 200 {
		t.Fatalf("GET %s: %d", mediaPath, code)
	}
	pl, err = playlist.Unmarshal(b)
	if err != nil {
		t.Fatalf("media playlist does not parse: %v\n%s", err, b)
	}
	media, ok := pl.(*playlist.Media)
	if !ok || len(media.Segments) == 0 || media.Map == nil || !media.Endlist {
		t.Fatalf("want a VOD media playlist with an init segment:\n%s", b)
	}
	mbase := path.Dir(mediaPath) + "/"
	var seg []byte
	for _, u := range []string{media.Map.URI, media.Segments[0].URI} {
		code, b := get(mbase + u)
		if code != 200 {
			t.Fatalf("GET %s: %d", mbase+u, code)
		}
		seg = append(seg, b...)
	}
	f := filepath.Join(t.TempDir(), "seg.mp4")
	if err := os.WriteFile(f, seg, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, frames := ffprobeDecode(t, f); frames == 0 {
		t.Fatalf("the first segment of %s decodes to no frames", mediaPath)
	}
	if code, b := get(it.Play.DASH); code != 200 || !bytes.Contains(b, []byte("<MPD")) {
		t.Fatalf("GET %s: %d", it.Play.DASH, code)
	}
	_ = ffprobe

	// A file that is not media ends failed, with a one-line reason that
	// names the file.
	bad := uploadFile("not_media.txt")
	it, seen = waitDone(bad)
	if it.Status != "failed" || it.Reason == "" || strings.Contains(it.Reason, "\n") ||
		!strings.Contains(it.Reason, "not_media.txt") || it.Play != nil {
		t.Fatalf("broken upload: %+v (statuses %v)", it, seen)
	}
	t.Logf("broken upload: %s", it.Reason)

	// Nothing is left to cancel on either item.
	req, _ := http.NewRequest("DELETE", base+"/api/content/"+bad+"/job", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("DELETE job of a finished item: %d, want 404", resp.StatusCode)
	}
}

// tusUpload sends a testdata file with tus in two PATCHes and returns the
// upload's (and so the content item's) id. meta are more Upload-Metadata
// pairs (key, value, ...).
func tusUpload(t *testing.T, base, token, name string, meta ...string) string {
	t.Helper()
	data, err := os.ReadFile(testenv.Testdata(name))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", base+uploadBase, nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", strconv.Itoa(len(data)))
	md := "filename " + base64.StdEncoding.EncodeToString([]byte(name))
	for i := 0; i+1 < len(meta); i += 2 {
		md += "," + meta[i] + " " + base64.StdEncoding.EncodeToString([]byte(meta[i+1]))
	}
	req.Header.Set("Upload-Metadata", md)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("tus create: %d", resp.StatusCode)
	}
	loc, _ := resp.Location()
	half := len(data) / 2
	for _, part := range []struct{ off, end int }{{0, half}, {half, len(data)}} {
		req, _ := http.NewRequest("PATCH", loc.String(), bytes.NewReader(data[part.off:part.end]))
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Upload-Offset", strconv.Itoa(part.off))
		req.Header.Set("Content-Type", "application/offset+octet-stream")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 {
			t.Fatalf("tus patch at %d: %d", part.off, resp.StatusCode)
		}
	}
	return path.Base(loc.Path)
}

// vodItem is a catalog item as GET /api/content/{id} shows it.
type vodItem struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Status   string   `json:"encoding_status"`
	Progress *float64 `json:"encoding_progress"`
	Reason   string   `json:"encoding_reason"`
	Play     *struct {
		HLS  string `json:"hls"`
		DASH string `json:"dash"`
	} `json:"play"`
}

func httpGet(t *testing.T, u string) (int, []byte) { return httpGetAuth(t, u, "") }

// httpGetAuth is a GET with the access token, when not empty.
func httpGetAuth(t *testing.T, u, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// waitContent polls GET /api/content/{id} until the item is ready or
// failed, and returns it with the statuses it went through. token may be
// empty (a public item).
func waitContent(t *testing.T, base, token, id string) (vodItem, []string) {
	t.Helper()
	var seen []string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		code, b := httpGetAuth(t, base+"/api/content/"+id, token)
		if code != 200 {
			t.Fatalf("GET /api/content/%s: %d %s", id, code, b)
		}
		var it vodItem
		if err := json.Unmarshal(b, &it); err != nil {
			t.Fatal(err)
		}
		if len(seen) == 0 || seen[len(seen)-1] != it.Status {
			seen = append(seen, it.Status)
		}
		if it.Status == "processing" && it.Progress == nil {
			t.Errorf("processing without encoding_progress: %s", b)
		}
		if it.Status == "ready" || it.Status == "failed" {
			return it, seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %s after 3 minutes: %s (statuses %v)", it.Status, b, seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
