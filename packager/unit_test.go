package packager

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"

	"github.com/streamd/streamd/media"
)

func TestMediaPlaylistGolden(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 678_900_000, time.UTC)
	m := mediaPlaylist{maxSegments: 3}
	add := func(uri, mapURI string, d time.Duration, at time.Duration, disc bool) {
		m.add(playlistSegment{URI: uri, MapURI: mapURI, Duration: d, ProgramDateTime: t0.Add(at), Discontinuity: disc})
	}
	add("a-0.m4s", "init-a.mp4", 2*time.Second, 0, false)
	add("a-1.m4s", "init-a.mp4", 2002*time.Millisecond, 2*time.Second, false)
	add("b-2.m4s", "init-b.mp4", 1500*time.Millisecond, 10*time.Second, true)
	add("b-3.m4s", "init-b.mp4", 2*time.Second, 11500*time.Millisecond, false)
	m.ended = true
	const want = `#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:1
#EXT-X-MAP:URI="init-a.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-01-02T03:04:07.678Z
#EXTINF:2.002,
a-1.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI="init-b.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-01-02T03:04:15.678Z
#EXTINF:1.500,
b-2.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-01-02T03:04:17.178Z
#EXTINF:2.000,
b-3.m4s
#EXT-X-ENDLIST
`
	if got := string(m.marshal()); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	// Sliding the discontinuity out bumps DISCONTINUITY-SEQUENCE.
	m.add(playlistSegment{URI: "b-4.m4s", MapURI: "init-b.mp4", Duration: time.Second})
	m.add(playlistSegment{URI: "b-5.m4s", MapURI: "init-b.mp4", Duration: time.Second})
	if m.discSequence != 1 || m.mediaSequence != 3 || m.ended || m.nextSequence() != 6 {
		t.Errorf("after slide: disc %d seq %d ended %v", m.discSequence, m.mediaSequence, m.ended)
	}
	if !bytes.Contains(m.marshal(), []byte("#EXT-X-DISCONTINUITY-SEQUENCE:1\n")) {
		t.Errorf("no DISCONTINUITY-SEQUENCE:\n%s", m.marshal())
	}
}

func TestMasterPlaylistGolden(t *testing.T) {
	m := masterPlaylist{Bandwidth: 812345, AverageBandwidth: 700000, Codecs: []string{"avc1.64001f", "mp4a.40.2"},
		Width: 1280, Height: 720, FrameRate: 29.97002997, URI: "source/index.m3u8"}
	const want = `#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=812345,AVERAGE-BANDWIDTH=700000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=29.970
source/index.m3u8
`
	if got := string(m.marshal()); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	audio := masterPlaylist{Bandwidth: 100, Codecs: []string{"opus"}, URI: "source/index.m3u8"}
	if got := string(audio.marshal()); !bytes.Contains([]byte(got), []byte(`#EXT-X-STREAM-INF:BANDWIDTH=100,CODECS="opus"`+"\n")) {
		t.Errorf("audio-only master:\n%s", got)
	}
	n := m
	n.Bandwidth = 850000
	if m.materiallyDifferent(n) {
		t.Error("a 5% bandwidth change is not material")
	}
	n.Bandwidth = 950000
	if !m.materiallyDifferent(n) {
		t.Error("a 17% bandwidth change is material")
	}
	n = m
	n.Height = 1080
	if !m.materiallyDifferent(n) {
		t.Error("a resolution change is material")
	}
}

func TestTargetDuration(t *testing.T) {
	for d, want := range map[time.Duration]int{
		2 * time.Second:                      2,
		2*time.Second + 400*time.Microsecond: 2, // prints as 2.000
		2016 * time.Millisecond:              2, // rounds to nearest (RFC 8216 4.3.3.1)
		2499 * time.Millisecond:              2,
		2500 * time.Millisecond:              3,
		100 * time.Millisecond:               1,
		0:                                    1,
	} {
		if got := targetDurationFor(d); got != want {
			t.Errorf("targetDurationFor(%v) = %d, want %d", d, got, want)
		}
	}
}

// Parameter sets of testdata/h264_aac_360p.mp4 (x264, Main@3.0, 640x360,
// VUI timing 30 fps).
var (
	testSPS = mustHex("674d401eeca05017fcb80880000003008000001e078b16cb")
	testPPS = mustHex("68efbc80")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestCodecHelpers(t *testing.T) {
	p, err := paramsFor(&media.H264{SPS: testSPS, PPS: testPPS})
	if err != nil {
		t.Fatal(err)
	}
	if p.codecStr != "avc1.4d401e" || p.width != 640 || p.height != 360 || p.fps != 30 || p.timescale != 90000 {
		t.Errorf("h264 params %+v", p)
	}
	if formatResolution(p.width, p.height) != "640x360" || formatResolution(0, 360) != "" {
		t.Error("formatResolution")
	}
	if formatFrameRate(30) != "30.000" || formatFrameRate(30000.0/1001) != "29.970" {
		t.Error("formatFrameRate")
	}

	for _, tc := range []struct {
		asc  mpeg4audio.AudioSpecificConfig
		want string
	}{
		{mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 44100, ChannelConfig: 2}, "mp4a.40.2"},
		{mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelConfig: 1}, "mp4a.40.2"},
	} {
		cfg, err := tc.asc.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		p, err := paramsFor(&media.AAC{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		if p.codecStr != tc.want || p.timescale != uint32(tc.asc.SampleRate) || p.aacFrame != 1024 {
			t.Errorf("aac %+v", p)
		}
	}
	if p, err := paramsFor(&media.Opus{Channels: 2}); err != nil || p.codecStr != "opus" || p.timescale != 48000 {
		t.Errorf("opus %+v %v", p, err)
	}
	for _, bad := range []media.Codec{nil, &media.H264{}, &media.H264{SPS: []byte{0x67, 1, 2, 3}, PPS: testPPS}, &media.AAC{Config: []byte{0xff}}, &media.H265{}} {
		if _, err := paramsFor(bad); err == nil {
			t.Errorf("paramsFor(%#v) accepted", bad)
		}
	}
}

// FuzzSegmenter drives the segmenter with arbitrary unit sequences: it
// must never panic, and whatever it emits must parse back as fMP4.
func FuzzSegmenter(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{7, 0x80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0x81, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 33, 33, 0, 1, 2, 3})
	f.Add(bytes.Repeat([]byte{3, 0x81, 0x10, 0x00, 0x10, 0x00, 1, 0xfc, 0x02, 0x00, 0x04, 0x00}, 40))
	f.Add(bytes.Repeat([]byte{5, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0}, 20))
	f.Add(bytes.Repeat([]byte{6, 0x42, 0x00, 0x00, 0x01, 0x00, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x01}, 30))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		mix := data[0]
		data = data[1:]
		var tracks []*media.Track
		if mix&1 != 0 {
			tracks = append(tracks, &media.Track{ID: len(tracks), Codec: &media.H264{SPS: testSPS, PPS: testPPS}})
		}
		if mix&2 != 0 {
			tracks = append(tracks, &media.Track{ID: len(tracks), Codec: &media.AAC{Config: []byte{0x12, 0x10}}})
		}
		if mix&4 != 0 {
			tracks = append(tracks, &media.Track{ID: len(tracks), Codec: &media.Opus{Channels: 2}})
		}
		if mix&8 != 0 {
			// A video track with garbage parameters must be left out, not
			// take the others down.
			tracks = append(tracks, &media.Track{ID: len(tracks), Codec: &media.H264{SPS: []byte{0x67, 0xff}, PPS: []byte{0x68}}})
		}
		target := time.Duration(1+mix>>4) * 100 * time.Millisecond
		s, _, err := newSegmenter(tracks, target)
		if err != nil {
			return
		}
		check := func(seg *Segment) {
			if seg == nil {
				return
			}
			var parts fmp4.Parts
			if err := parts.Unmarshal(seg.Data); err != nil {
				t.Fatalf("segment does not parse: %v", err)
			}
		}
		var init fmp4.Init
		if err := init.Unmarshal(bytes.NewReader(s.init)); err != nil {
			t.Fatalf("init does not parse: %v", err)
		}
		var clock time.Duration
		for len(data) >= 4 {
			// Each unit: track, flags, a signed DTS step (ms), a PTS offset
			// (ms) and up to 15 payload bytes.
			tr := tracks[int(data[0])%len(tracks)]
			flags := data[1]
			clock += time.Duration(int8(data[2])) * time.Millisecond
			ptsOff := time.Duration(int8(data[3])) * time.Millisecond
			data = data[4:]
			n := min(int(flags&0x0f), len(data))
			payload := data[:n]
			data = data[n:]
			u := &media.Unit{Track: tr, DTS: clock, PTS: clock + ptsOff, RandomAccess: flags&0x80 != 0, Received: time.Unix(0, 0).Add(clock)}
			if flags&0x40 != 0 && n > 1 {
				u.Payload = [][]byte{payload[:n/2], payload[n/2:]}
			} else {
				u.Payload = [][]byte{payload}
			}
			segs, _ := s.push(u)
			for _, seg := range segs {
				check(seg)
			}
		}
		check(s.flush())
	})
}

// The segmenter emits sample durations from DTS deltas for video and from
// the codec for audio, and tfdt from the real DTS.
func TestSegmenterTiming(t *testing.T) {
	v := &media.Track{ID: 0, Codec: &media.H264{SPS: testSPS, PPS: testPPS}}
	a := &media.Track{ID: 1, Codec: &media.AAC{Config: []byte{0x11, 0x90}}} // LC 48 kHz stereo
	s, _, err := newSegmenter([]*media.Track{v, a}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	idr := [][]byte{{0x65, 1, 2, 3}}
	p := [][]byte{{0x41, 1, 2, 3}}
	var segs []*Segment
	// Audio before the first keyframe is dropped.
	if _, drop := s.push(&media.Unit{Track: a, DTS: 0, PTS: 0, RandomAccess: true, Payload: [][]byte{{1}}}); drop != dropBeforeKeyframe {
		t.Errorf("drop = %q", drop)
	}
	frame := time.Second / 30
	aframe := 1024 * time.Second / 48000
	var at time.Duration
	for i := range 150 {
		dts := time.Duration(i) * frame
		for ; at <= dts; at += aframe {
			if at >= 10*time.Millisecond {
				out, _ := s.push(&media.Unit{Track: a, DTS: at, PTS: at, RandomAccess: true, Payload: [][]byte{{0x21, byte(i)}}})
				segs = append(segs, out...)
			}
		}
		u := &media.Unit{Track: v, DTS: dts, PTS: dts + 2*frame, RandomAccess: i%60 == 0, Payload: p}
		if i%60 == 0 {
			u.Payload = idr
		}
		out, drop := s.push(u)
		if drop != "" {
			t.Fatalf("unit %d dropped: %s", i, drop)
		}
		segs = append(segs, out...)
	}
	// Duplicate DTS and empty payloads are refused.
	if _, drop := s.push(&media.Unit{Track: v, DTS: 149 * frame, PTS: 149 * frame, Payload: p}); drop != dropNonMonotonic {
		t.Errorf("drop = %q", drop)
	}
	if _, drop := s.push(&media.Unit{Track: v, DTS: 150 * frame, PTS: 150 * frame, Payload: [][]byte{{}}}); drop != dropEmpty {
		t.Errorf("drop = %q", drop)
	}
	segs = append(segs, s.flush())
	if len(segs) != 3 {
		t.Fatalf("%d segments", len(segs))
	}
	wantDur := []time.Duration{2 * time.Second, 2 * time.Second, time.Second}
	for i, seg := range segs {
		if seg.Duration != wantDur[i] || seg.Timescale != 90000 || seg.Seq != uint32(i+1) || !seg.Independent {
			t.Errorf("segment %d: %+v", i, *seg)
		}
		var parts fmp4.Parts
		if err := parts.Unmarshal(seg.Data); err != nil {
			t.Fatal(err)
		}
		vt, at := parts[0].Tracks[0], parts[0].Tracks[1]
		if vt.BaseTime != uint64(i)*180000 {
			t.Errorf("segment %d video tfdt %d", i, vt.BaseTime)
		}
		for _, smp := range vt.Samples {
			if smp.Duration != 3000 || smp.PTSOffset != 6000 {
				t.Fatalf("video sample duration %d offset %d", smp.Duration, smp.PTSOffset)
			}
			if binary.BigEndian.Uint32(smp.Payload) != 4 {
				t.Fatal("video sample not length-prefixed")
			}
		}
		for _, smp := range at.Samples {
			if smp.Duration != 1024 {
				t.Fatalf("audio sample duration %d", smp.Duration)
			}
		}
		if i == 0 && at.BaseTime != 1024 {
			t.Errorf("audio tfdt %d, want the real DTS of the first kept frame (1024)", at.BaseTime)
		}
	}
}
