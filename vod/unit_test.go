package vod

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamd/streamd/transcode"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./vod -run Transcode -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test ./vod -run Transcode -update rewrites it)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// ffprobeJSON is a trimmed real `ffprobe -show_format -show_streams` of
// a phone clip: rotation in the display matrix, VFR, two audio languages
// (one twice), cover art, a text and a bitmap subtitle.
const ffprobeJSON = `{
 "streams": [
  {"index": 0, "codec_name": "h264", "codec_type": "video", "width": 1920, "height": 1080,
   "sample_aspect_ratio": "1:1", "field_order": "progressive", "r_frame_rate": "30/1", "avg_frame_rate": "28101/1000",
   "duration": "10.000000", "disposition": {"default": 1, "attached_pic": 0},
   "side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}]},
  {"index": 1, "codec_name": "aac", "codec_type": "audio", "sample_rate": "44100", "channels": 2,
   "duration": "10.010000", "disposition": {"default": 0}, "tags": {"language": "eng"}},
  {"index": 2, "codec_name": "ac3", "codec_type": "audio", "sample_rate": "48000", "channels": 6,
   "disposition": {"default": 1}, "tags": {"language": "eng"}},
  {"index": 3, "codec_name": "aac", "codec_type": "audio", "sample_rate": "48000", "channels": 2,
   "disposition": {"default": 0}, "tags": {"language": "fra"}},
  {"index": 4, "codec_name": "mjpeg", "codec_type": "video", "width": 600, "height": 600,
   "disposition": {"attached_pic": 1}},
  {"index": 5, "codec_name": "subrip", "codec_type": "subtitle", "tags": {"language": "eng"}},
  {"index": 6, "codec_name": "hdmv_pgs_subtitle", "codec_type": "subtitle", "tags": {"language": "deu"}},
  {"index": 7, "codec_name": "mov_text", "codec_type": "subtitle", "tags": {"language": "eng"}}
 ],
 "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "10.010000"}
}`

func TestTranscodeProbeParse(t *testing.T) {
	m, err := parseProbe([]byte(ffprobeJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.check("clip.mp4"); err != nil {
		t.Fatal(err)
	}
	v := m.Video
	if v == nil || v.Index != 0 || v.Width != 1920 || v.Height != 1080 {
		t.Fatalf("video: %+v (the cover art must not be taken for the video)", v)
	}
	// The matrix says -90 (counter-clockwise): a quarter turn clockwise.
	if v.Rotation != 90 || !v.VFR || v.FPS() != 30 || v.Interlaced() {
		t.Fatalf("rotation %d vfr %v fps %g interlaced %v", v.Rotation, v.VFR, v.FPS(), v.Interlaced())
	}
	if len(m.Audio) != 3 || m.Audio[1].Channels != 6 || m.Audio[2].Language != "fra" {
		t.Fatalf("audio: %+v", m.Audio)
	}
	if len(m.Subtitles) != 3 || !m.Subtitles[0].Text || m.Subtitles[1].Text {
		t.Fatalf("subtitles: %+v", m.Subtitles)
	}
	if m.Duration != 10010*time.Millisecond {
		t.Fatalf("duration %v", m.Duration)
	}
	for _, c := range []struct {
		tag    string
		matrix float64
		has    bool
		want   int
	}{{"90", 0, false, 90}, {"270", 0, false, 270}, {"", 90, true, 270}, {"", -90, true, 90}, {"", 180, true, 180}, {"", 0, false, 0}} {
		if got := rotation(c.tag, func() (float64, bool) { return c.matrix, c.has }); got != c.want {
			t.Errorf("rotation(tag %q, matrix %v) = %d, want %d", c.tag, c.matrix, got, c.want)
		}
	}
	if (&VideoStream{VFR: true, RFrameRate: 90000, AvgFrameRate: 29.3}).FPS() != 30000.0/1001 {
		t.Error("a VFR clip with a timebase-like r_frame_rate should get the next standard rate above its average")
	}
}

func TestTranscodeProbeRejects(t *testing.T) {
	for _, c := range []struct {
		name, json string
		code       Code
		msg        string
	}{
		{"no streams", `{"streams":[{"index":0,"codec_type":"data","codec_name":"bin_data"}],"format":{"duration":"3"}}`, CodeNoStreams, "no video and no audio"},
		{"only cover art", `{"streams":[{"index":0,"codec_type":"video","codec_name":"png","width":1,"height":1,"disposition":{"attached_pic":1}}],"format":{"duration":"3"}}`, CodeNoStreams, "no video and no audio"},
		{"unknown video codec", `{"streams":[{"index":0,"codec_type":"video","codec_name":"none","width":640,"height":360}],"format":{"duration":"3"}}`, CodeUnsupported, "unsupported video codec"},
		{"unknown audio codec", `{"streams":[{"index":0,"codec_type":"audio","codec_name":""}],"format":{"duration":"3"}}`, CodeUnsupported, "unsupported audio codec"},
		{"no duration", `{"streams":[{"index":0,"codec_type":"video","codec_name":"h264","width":640,"height":360}],"format":{"duration":"N/A"}}`, CodeTruncated, "no duration"},
		{"no size", `{"streams":[{"index":0,"codec_type":"video","codec_name":"h264"}],"format":{"duration":"3"}}`, CodeTruncated, "no picture size"},
	} {
		m, err := parseProbe([]byte(c.json))
		if err == nil {
			err = m.check("in.mp4")
		}
		if ErrorCode(err) != c.code || !strings.Contains(Reason(err), c.msg) || strings.Contains(Reason(err), "\n") {
			t.Errorf("%s: got %v (%s), want %s containing %q on one line", c.name, err, ErrorCode(err), c.code, c.msg)
		}
	}
	for _, c := range []struct {
		stderr string
		code   Code
	}{
		{"[mov,mp4,m4a,3gp,3g2,mj2 @ 0x1] moov atom not found\nin.mp4: Invalid data found when processing input", CodeTruncated},
		{"in.txt: Invalid data found when processing input", CodeNotMedia},
		{"[mov @ 0x1] stream 0, offset 0x30: partial file", CodeTruncated},
	} {
		if e := probeFailure("in", c.stderr); e.Code != c.code {
			t.Errorf("%q: %s, want %s", c.stderr, e.Code, c.code)
		}
	}
}

func TestTranscodeJobFile(t *testing.T) {
	j, err := ParseJob([]byte(`{"ladder":"default","segment_duration":"6s","thumbnail_interval":"5s","audio_bitrate":"96k"}`))
	if err != nil {
		t.Fatal(err)
	}
	if j.SegmentDuration != 6*time.Second || j.ThumbnailInterval != 5*time.Second || j.Ladder.Audio.Bitrate != "96k" || j.Ladder.Rungs[0].Name != "2160p" {
		t.Fatalf("%+v", j)
	}
	j, err = ParseJob([]byte(`{"rungs":[{"name":"540p","height":540,"video_bitrate":"2000k","preset":"ultrafast"}]}`))
	if err != nil || len(j.Ladder.Rungs) != 1 || j.SegmentDuration != DefaultSegmentDuration {
		t.Fatalf("%+v %v", j, err)
	}
	for _, c := range []struct{ json, msg string }{
		{`{"ladder":"default","rungs":[{"name":"x","height":2,"video_bitrate":"1k"}]}`, "exclusive"},
		{`{"ladder":"huge"}`, `unknown ladder "huge"`},
		{`{"segment_length":"4s"}`, `unknown field "segment_length"`},
		{`{"segment_duration":"4"}`, "segment_duration"},
		{`{"rungs":[{"name":"720p","height":721,"video_bitrate":"fast"}]}`, "rungs[0].height: 721 is odd"},
		{`{"rungs":[{"name":"720p","height":720,"video_bitrate":"fast"}]}`, "rungs[0].video_bitrate"},
	} {
		_, err := ParseJob([]byte(c.json))
		if ErrorCode(err) != CodeInvalidJob || !strings.Contains(Reason(err), c.msg) {
			t.Errorf("%s: %v, want %q", c.json, err, c.msg)
		}
	}
	if err := DefaultLadder().Validate(); err != nil {
		t.Fatal(err)
	}
}

func src(w, h int, fps float64, rot int) *Media {
	return &Media{Duration: 60 * time.Second, Video: &VideoStream{Index: 0, Codec: "h264", Width: w, Height: h,
		RFrameRate: fps, AvgFrameRate: fps, FieldOrder: "progressive", Rotation: rot, Duration: 60 * time.Second},
		Audio: []AudioStream{{Index: 1, Codec: "aac", Language: "und", Channels: 2, SampleRate: 48000}}}
}

func sizes(p *Plan) string {
	var s []string
	for _, r := range p.Video {
		s = append(s, r.Name+"="+strconv.Itoa(r.Width)+"x"+strconv.Itoa(r.Height)+"@"+rateString(r.FPS))
	}
	return strings.Join(s, " ")
}

func TestTranscodePlanLadder(t *testing.T) {
	job := DefaultJob()
	for _, c := range []struct {
		name string
		m    *Media
		want string
	}{
		{"4K60 gets the whole ladder, 480p and 360p capped at 30",
			src(3840, 2160, 60, 0), "2160p=3840x2160@60 1080p=1920x1080@60 720p=1280x720@60 480p=854x480@30 360p=640x360@30"},
		{"720p is never upscaled", src(1280, 720, 30000.0/1001, 0), "720p=1280x720@30000/1001 480p=854x480@30000/1001 360p=640x360@30000/1001"},
		{"a phone's portrait 1080p stays portrait", src(1920, 1080, 30, 90), "1080p=1080x1920@30 720p=720x1280@30 480p=480x854@30 360p=360x640@30"},
		{"4:3 keeps its aspect", src(640, 480, 25, 0), "480p=640x480@25 360p=480x360@25"},
		{"a tiny source gets one rendition at its own size", src(320, 180, 25, 0), "360p=320x180@25"},
	} {
		if got := sizes(NewPlan(c.m, job)); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

func TestTranscodePlanTracks(t *testing.T) {
	m, _ := parseProbe([]byte(ffprobeJSON))
	p := NewPlan(m, DefaultJob())
	// One audio per language; of the two English tracks the default one.
	if len(p.Audio) != 2 || p.Audio[0].Index != 2 || p.Audio[1].Language != "fra" || p.DefaultAudio != 0 {
		t.Fatalf("audio: %+v default %d", p.Audio, p.DefaultAudio)
	}
	// Text tracks only (the PGS one needs OCR), unique names.
	if len(p.Subtitles) != 2 || p.Subtitles[0].Name != "eng" || p.Subtitles[1].Name != "eng-2" {
		t.Fatalf("subtitles: %+v", p.Subtitles)
	}
	if p.AudioCodec.SampleRate != 48000 || p.AudioCodec.Channels != 2 {
		t.Fatalf("audio codec %+v", p.AudioCodec)
	}
	if p.Poster.At != 1001*time.Millisecond || p.Poster.Width != 1080 || p.Poster.Height != 1920 {
		t.Fatalf("poster %+v", p.Poster)
	}
	if th := p.Thumbnails; th.Width != 90 || th.Height != 160 || th.Interval != time.Second || th.Count != 11 || th.Cols != 10 || th.Rows != 2 {
		t.Fatalf("thumbnails %+v", th)
	}
	long := planThumbnails(2*time.Hour, 0, 1920, 1080)
	if long.Interval != 18*time.Second || long.Count > 400 {
		t.Fatalf("2 h: %+v", long)
	}
}

// goldenPlan is the phone clip of ffprobeJSON, interlaced, on a two-rung
// ladder: every branch of the argument builders at once.
func goldenPlan(t *testing.T) *Plan {
	m, err := parseProbe([]byte(ffprobeJSON))
	if err != nil {
		t.Fatal(err)
	}
	m.Video.FieldOrder = "tt"
	m.Video.VFR, m.Video.AvgFrameRate = false, 30
	job := DefaultJob()
	job.Ladder.Rungs = []transcode.Rung{
		{Name: "720p", Height: 720, VideoBitrate: "3000k", MaxBitrate: "3210k", Framerate: 60, Preset: "fast"},
		{Name: "360p", Height: 360, VideoBitrate: "800k", Framerate: 24, Preset: "fast"},
	}
	return NewPlan(m, job)
}

func TestTranscodeArgsGolden(t *testing.T) {
	p := goldenPlan(t)
	golden(t, "package_args.golden", strings.Join(PackageArgs(p, "/in/clip.mp4", "/out", transcode.X264{}, 3), "\n")+"\n")
	golden(t, "poster_args.golden", strings.Join(PosterArgs(p, "/in/clip.mp4", "/out"), "\n")+"\n")
	// Audio only: no filter graph, no thumbnails, audio sets from id 0.
	m := &Media{Duration: 5 * time.Second, Audio: []AudioStream{{Index: 0, Codec: "mp3", Language: "und", Channels: 1, SampleRate: 44100}}}
	golden(t, "package_args_audio_only.golden", strings.Join(PackageArgs(NewPlan(m, DefaultJob()), "/in/a.mp3", "/out", transcode.X264{}, 3), "\n")+"\n")
}

func TestTranscodeManifestsGolden(t *testing.T) {
	p := goldenPlan(t)
	video := []Rendition{
		{Rep: 0, Kind: "video", Name: "720p", Width: 720, Height: 1280, FPS: 30, Codecs: "avc1.64001f", PeakBitrate: 3100000, AverageBitrate: 2900000},
		{Rep: 1, Kind: "video", Name: "360p", Width: 360, Height: 640, FPS: 24, Codecs: "avc1.64001e", PeakBitrate: 820000, AverageBitrate: 790000},
	}
	audio := []Rendition{
		{Rep: 2, Kind: "audio", Name: "eng", Language: "eng", Codecs: "mp4a.40.2", PeakBitrate: 131000, AverageBitrate: 128500},
		{Rep: 3, Kind: "audio", Name: "fra", Language: "fra", Codecs: "mp4a.40.2", PeakBitrate: 132000, AverageBitrate: 128000},
	}
	golden(t, "master.m3u8.golden", Master(p, video, audio))
	golden(t, "text_sets.mpd.golden", TextAdaptationSets(p, 3))
	golden(t, "thumbnails.vtt.golden", ThumbnailsTrack(p.Thumbnails, p.Media.Duration))
	golden(t, "subtitles.m3u8.golden", SubtitlePlaylist("eng.vtt", p.Media.Duration))
	pa := *p
	pa.Video, pa.Subtitles = nil, nil
	golden(t, "master_audio_only.m3u8.golden", Master(&pa, nil, audio))
}

func TestTranscodeRateString(t *testing.T) {
	for in, want := range map[float64]string{30000.0 / 1001: "30000/1001", 24000.0 / 1001: "24000/1001", 60000.0 / 1001: "60000/1001", 25: "25", 30: "30", 12.5: "12.5"} {
		if got := rateString(in); got != want {
			t.Errorf("rateString(%v) = %s, want %s", in, got, want)
		}
	}
}
