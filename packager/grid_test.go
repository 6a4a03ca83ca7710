package packager

import (
	"testing"
	"time"

	"github.com/streamd/streamd/media"
)

const aacFrame = 1024 * time.Second / 48000

// hourOfLadder feeds one hour of a ladder's output — a 30 fps video
// rendition with a keyframe every 2 s and the shared AAC audio rendition
// starting audioOffset after the video — through two segmenters joined by
// a cutGrid, the video reaching the packager videoLag after the audio (as
// the encoder's outputs do). It returns both renditions' segments.
func hourOfLadder(t *testing.T, audioOffset, videoLag time.Duration) (video, audio []*Segment) {
	t.Helper()
	vt := &media.Track{ID: 0, Codec: &media.H264{SPS: testSPS, PPS: testPPS}}
	at := &media.Track{ID: 1, Codec: &media.AAC{Config: []byte{0x11, 0x90}}} // LC 48 kHz stereo
	vs, _, err := newSegmenter([]*media.Track{vt}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	as, _, err := newSegmenter([]*media.Track{at}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var g cutGrid
	vs.onBoundary = func(b time.Duration) { g.publish("720p", b) }
	as.follow = &g

	frame := time.Second / 30
	idr, p := [][]byte{{0x65, 1}}, [][]byte{{0x41, 1}}
	next := audioOffset
	for i := 0; time.Duration(i)*frame < time.Hour; i++ {
		dts := time.Duration(i) * frame
		// Audio up to videoLag ahead of the video the packager has seen.
		for ; next <= dts+videoLag; next += aacFrame {
			if next < 0 {
				continue
			}
			segs, drop := as.push(&media.Unit{Track: at, DTS: next, PTS: next, RandomAccess: true, Payload: [][]byte{{0x21, 0x10}}})
			if drop != "" && drop != dropBeforeKeyframe {
				t.Fatalf("audio at %v dropped: %s", next, drop)
			}
			audio = append(audio, segs...)
		}
		u := &media.Unit{Track: vt, DTS: dts, PTS: dts + 2*frame, RandomAccess: i%60 == 0, Payload: p}
		if i%60 == 0 {
			u.Payload = idr
		}
		segs, drop := vs.push(u)
		if drop != "" {
			t.Fatalf("video %d dropped: %s", i, drop)
		}
		video = append(video, segs...)
	}
	if s := vs.flush(); s != nil {
		video = append(video, s)
	}
	if s := as.flush(); s != nil {
		audio = append(audio, s)
	}
	return video, audio
}

// A ladder's audio segments start within one AAC frame of the matching
// video segment for a whole hour, so media sequence N is the same time
// range in every rendition.
func TestAudioFollowsVideoBoundaries(t *testing.T) {
	for _, tc := range []struct {
		name          string
		offset, lag   time.Duration
		wantFirstDiff time.Duration
	}{
		{"audio first, video lagging", -15 * time.Millisecond, 120 * time.Millisecond, aacFrame / 2},
		{"audio 40 ms late", 40 * time.Millisecond, 0, 40*time.Millisecond + aacFrame},
		{"in step", 0, 0, aacFrame / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			video, audio := hourOfLadder(t, tc.offset, tc.lag)
			if len(video) < 1800 || len(audio) < len(video)-1 || len(audio) > len(video) {
				t.Fatalf("%d video and %d audio segments", len(video), len(audio))
			}
			for i, a := range audio {
				v := video[i]
				limit := aacFrame
				if i == 0 {
					limit = tc.wantFirstDiff
				}
				if d := (a.Start - v.Start).Abs(); d > limit {
					t.Fatalf("segment %d: audio starts at %v, video at %v (%v apart)", i, a.Start, v.Start, d)
				}
				if i+1 < len(audio) {
					if end, vEnd := a.Start+a.Duration, v.Start+v.Duration; (end - vEnd).Abs() > aacFrame {
						t.Fatalf("segment %d: audio ends at %v, video at %v", i, end, vEnd)
					}
				}
			}
		})
	}
}

// Without a video to follow, audio cuts on its own 2 s grid at the
// nearest frame: boundaries never drift.
func TestAudioOnlyGridDoesNotDrift(t *testing.T) {
	at := &media.Track{ID: 1, Codec: &media.AAC{Config: []byte{0x11, 0x90}}}
	s, _, err := newSegmenter([]*media.Track{at}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var segs []*Segment
	for ts := time.Duration(0); ts < time.Hour; ts += aacFrame {
		out, drop := s.push(&media.Unit{Track: at, DTS: ts, PTS: ts, RandomAccess: true, Payload: [][]byte{{0x21, 0x10}}})
		if drop != "" {
			t.Fatalf("dropped: %s", drop)
		}
		segs = append(segs, out...)
	}
	if len(segs) != 1800 {
		t.Fatalf("%d segments", len(segs))
	}
	for i, seg := range segs {
		want := time.Duration(i) * 2 * time.Second
		if d := (seg.Start - want).Abs(); d > aacFrame/2 {
			t.Fatalf("segment %d starts at %v, want %v ± half a frame", i, seg.Start, want)
		}
		if seg.StartTS != uint64((seg.Start*48000+time.Second/2)/time.Second) {
			t.Fatalf("segment %d: StartTS %d for %v", i, seg.StartTS, seg.Start)
		}
	}
}

// The grid follows the first encoded rendition and restarts on a timeline
// that goes backwards.
func TestCutGridLeader(t *testing.T) {
	var g cutGrid
	g.publish(SourceRendition, time.Second)
	g.publish("720p", 2*time.Second)
	g.publish(SourceRendition, 3*time.Second) // the encoded rung leads now
	g.publish("360p", 3*time.Second)
	if b, ok := g.after(2 * time.Second); ok {
		t.Fatalf("boundary %v from a follower", b)
	}
	g.publish("720p", 4*time.Second)
	g.publish("720p", time.Second) // restart on an earlier timeline
	if b, ok := g.atOrBefore(5 * time.Second); !ok || b != time.Second {
		t.Fatalf("atOrBefore = %v, %v", b, ok)
	}
	g.reset()
	if _, ok := g.after(0); ok {
		t.Fatal("boundaries after reset")
	}
}
