package packager

import (
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// TestRenditionsShareOneMaster feeds the same clip as the source (through
// the hub) and as a second rendition (through Rendition, as a transcoder
// does, at a lower bitrate by dropping nothing but labelling it "low"),
// restarts the rendition once, and checks the master lists both variants,
// highest bandwidth first, each with its own media playlist.
func TestRenditionsShareOneMaster(t *testing.T) {
	hi := demux(t, "h264_aac_720p.mp4")
	lo := demux(t, "h264_aac_360p.mp4")
	e := newEnv(t, Config{EndGrace: 200 * time.Millisecond})

	s, err := e.hub.Publish("key", "test", "127.0.0.1", hi.tracks)
	if err != nil {
		t.Fatal(err)
	}
	r := e.p.Rendition(testChannel, "360p")
	r.Start(lo.tracks, false)
	// Restart at the second keyframe (2 s), as a restarted encoder's
	// output starts with one.
	restartAt, keyframes := -1, 0
	for i, u := range lo.units {
		if u.Track.Codec.IsVideo() && u.RandomAccess {
			if keyframes++; keyframes == 2 {
				restartAt = i
				break
			}
		}
	}
	for i, u := range lo.units {
		if i == restartAt {
			// An encoder restart mid-stream: new run, discontinuity.
			r.Start(lo.tracks, true)
		}
		u.Received = time.Now()
		r.WriteUnit(u)
	}
	r.Close()
	for _, u := range hi.units {
		u.Received = time.Now()
		s.WriteUnit(u)
	}
	s.Close(nil)
	waitFor(t, "ENDLIST", 5*time.Second, func() bool {
		st, _ := e.p.Stats(testChannel)
		return st.Ended
	})

	raw := e.read("live/" + testChannel + "/index.m3u8")
	pl, err := playlist.Unmarshal(raw)
	if err != nil {
		t.Fatalf("master: %v\n%s", err, raw)
	}
	mv := pl.(*playlist.Multivariant)
	if len(mv.Variants) != 2 {
		t.Fatalf("want 2 variants:\n%s", raw)
	}
	if mv.Variants[0].URI != "source/index.m3u8" || mv.Variants[1].URI != "360p/index.m3u8" ||
		mv.Variants[0].Bandwidth <= mv.Variants[1].Bandwidth {
		t.Errorf("variants not highest first:\n%s", raw)
	}
	if mv.Variants[1].Resolution != "640x360" || mv.Variants[0].Resolution != "1280x720" {
		t.Errorf("resolutions:\n%s", raw)
	}

	waitFor(t, "rendition ENDLIST", 5*time.Second, func() bool {
		return strings.Contains(string(e.read("live/"+testChannel+"/360p/index.m3u8")), "#EXT-X-ENDLIST")
	})
	lowRaw := string(e.read("live/" + testChannel + "/360p/index.m3u8"))
	if strings.Count(lowRaw, "#EXT-X-DISCONTINUITY\n") != 1 || strings.Count(lowRaw, "#EXT-X-MAP:") != 2 {
		t.Errorf("restart must give one discontinuity and a new init:\n%s", lowRaw)
	}
	// The source's playlist is its own.
	if m, _ := e.media(); len(m.Segments) != 3 {
		t.Errorf("source has %d segments", len(m.Segments))
	}
}

func TestMasterWithSharedAudioGroup(t *testing.T) {
	v := []masterPlaylist{
		{Bandwidth: 500_000, AverageBandwidth: 400_000, Codecs: []string{"avc1.64001e"}, Width: 640, Height: 360, FrameRate: 30, URI: "360p/index.m3u8"},
		{Bandwidth: 1_000_000, AverageBandwidth: 900_000, Codecs: []string{"avc1.64001f"}, Width: 854, Height: 480, FrameRate: 30, URI: "480p/index.m3u8"},
	}
	a := &masterPlaylist{Bandwidth: 130_000, AverageBandwidth: 128_000, Codecs: []string{"mp4a.40.2"}, URI: "audio/index.m3u8"}
	got := string(marshalMaster(v, a))
	want := `#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="audio",DEFAULT=YES,AUTOSELECT=YES,URI="audio/index.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=1130000,AVERAGE-BANDWIDTH=1028000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=854x480,FRAME-RATE=30.000,AUDIO="audio"
480p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=630000,AVERAGE-BANDWIDTH=528000,CODECS="avc1.64001e,mp4a.40.2",RESOLUTION=640x360,FRAME-RATE=30.000,AUDIO="audio"
360p/index.m3u8
`
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if _, err := playlist.Unmarshal([]byte(got)); err != nil {
		t.Fatalf("gohlslib refuses it: %v", err)
	}
}
