package packager

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// playlistSegment is one segment as the playlist writer sees it: already
// stored, with the URIs relative to the media playlist.
type playlistSegment struct {
	URI             string
	MapURI          string // the init segment of the segment's run
	Duration        time.Duration
	ProgramDateTime time.Time
	// Discontinuity marks a break before this segment: a new publication,
	// or a segment lost on the way to the store.
	Discontinuity bool
}

// mediaPlaylist is the state of a sliding-window media playlist.
type mediaPlaylist struct {
	maxSegments    int
	targetDuration int // seconds, never decreases
	mediaSequence  uint64
	discSequence   uint64
	segments       []playlistSegment
	ended          bool
}

// add appends a segment and returns those that slid out of the window.
func (m *mediaPlaylist) add(s playlistSegment) []playlistSegment {
	m.ended = false
	m.segments = append(m.segments, s)
	if td := targetDurationFor(s.Duration); td > m.targetDuration {
		m.targetDuration = td
	}
	var out []playlistSegment
	for len(m.segments) > max(m.maxSegments, 1) {
		old := m.segments[0]
		// A discontinuity tag leaving the window must be counted so that
		// players can still line up discontinuity domains across reloads.
		if old.Discontinuity {
			m.discSequence++
		}
		out = append(out, old)
		m.segments = m.segments[1:]
		m.mediaSequence++
	}
	// Re-slice into a fresh array now and then so the backing array does
	// not keep growing with the stream's length.
	if cap(m.segments) > 4*max(m.maxSegments, 1) {
		m.segments = append([]playlistSegment(nil), m.segments...)
	}
	return out
}

// nextSequence is the media sequence number the next added segment gets.
func (m *mediaPlaylist) nextSequence() uint64 {
	return m.mediaSequence + uint64(len(m.segments))
}

// targetDurationFor is the integer target a segment needs. RFC 8216
// 4.3.3.1 compares the EXTINF *rounded to the nearest integer* with the
// target, so a 2.016 s segment (a keyframe a frame late) still fits a
// target of 2; rounding up would raise the target mid-stream, which the
// spec forbids and which makes players recompute their live edge.
func targetDurationFor(d time.Duration) int {
	ms := d.Round(time.Millisecond).Milliseconds()
	return max(int(math.Floor(float64(ms)/1000+0.5)), 1)
}

// marshal renders the playlist. The MAP tag is repeated wherever the init
// segment changes, which (within one channel) happens only after a
// discontinuity.
func (m *mediaPlaylist) marshal() []byte {
	var b bytes.Buffer
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n")
	fmt.Fprintf(&b, "#EXT-X-TARGETDURATION:%d\n", max(m.targetDuration, 1))
	fmt.Fprintf(&b, "#EXT-X-MEDIA-SEQUENCE:%d\n", m.mediaSequence)
	if m.discSequence > 0 {
		fmt.Fprintf(&b, "#EXT-X-DISCONTINUITY-SEQUENCE:%d\n", m.discSequence)
	}
	curMap := ""
	for _, s := range m.segments {
		// The tag stays even on the window's first segment: it counts
		// towards that segment's discontinuity sequence number until it
		// slides out and DISCONTINUITY-SEQUENCE takes over.
		if s.Discontinuity {
			b.WriteString("#EXT-X-DISCONTINUITY\n")
		}
		if s.MapURI != curMap {
			fmt.Fprintf(&b, "#EXT-X-MAP:URI=%q\n", s.MapURI)
			curMap = s.MapURI
		}
		if !s.ProgramDateTime.IsZero() {
			b.WriteString("#EXT-X-PROGRAM-DATE-TIME:" + s.ProgramDateTime.UTC().Format("2006-01-02T15:04:05.000Z") + "\n")
		}
		fmt.Fprintf(&b, "#EXTINF:%.3f,\n", s.Duration.Seconds())
		b.WriteString(s.URI + "\n")
	}
	if m.ended {
		b.WriteString("#EXT-X-ENDLIST\n")
	}
	return b.Bytes()
}

// masterPlaylist is one variant of the multivariant playlist: one
// rendition's EXT-X-STREAM-INF.
type masterPlaylist struct {
	// AudioGroup names the EXT-X-MEDIA audio group the variant plays its
	// sound from ("" : the audio is muxed in, or there is none).
	AudioGroup       string
	Bandwidth        int
	AverageBandwidth int
	Codecs           []string
	Width, Height    int
	FrameRate        float64 // 0: unknown or audio-only
	URI              string
}

func (m masterPlaylist) marshal() []byte { return marshalMaster([]masterPlaylist{m}, nil) }

// audioGroup is the GROUP-ID of a channel's shared audio rendition.
const audioGroup = "audio"

// marshalMaster writes the multivariant playlist. Variants come highest
// bandwidth first: Safari starts with the first variant listed, and a
// broadcaster's viewers on good networks should start sharp; hls.js and
// other adaptive players measure the first segment and step down at once
// when the network cannot keep up. Ties keep the given order.
//
// audio, when not nil, is the channel's shared audio rendition: it becomes
// one EXT-X-MEDIA entry of group "audio", and every video variant refers
// to it, its CODECS and BANDWIDTH counting the audio too (RFC 8216 4.3.4.2:
// BANDWIDTH covers every rendition the variant plays at once).
func marshalMaster(vs []masterPlaylist, audio *masterPlaylist) []byte {
	vs = append([]masterPlaylist(nil), vs...)
	if audio != nil {
		for i := range vs {
			vs[i].Bandwidth += audio.Bandwidth
			if vs[i].AverageBandwidth > 0 {
				vs[i].AverageBandwidth += audio.AverageBandwidth
			}
			vs[i].Codecs = append(append([]string(nil), vs[i].Codecs...), audio.Codecs...)
			vs[i].AudioGroup = audioGroup
		}
	}
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].Bandwidth > vs[j].Bandwidth })
	var b bytes.Buffer
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n")
	if audio != nil {
		fmt.Fprintf(&b, "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=%q,NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,URI=%q\n", audioGroup, audio.URI)
	}
	for _, m := range vs {
		m.marshalVariant(&b)
	}
	return b.Bytes()
}

func (m masterPlaylist) marshalVariant(b *bytes.Buffer) {
	attrs := []string{"BANDWIDTH=" + strconv.Itoa(max(m.Bandwidth, 1))}
	if m.AverageBandwidth > 0 {
		attrs = append(attrs, "AVERAGE-BANDWIDTH="+strconv.Itoa(m.AverageBandwidth))
	}
	if len(m.Codecs) > 0 {
		attrs = append(attrs, `CODECS="`+strings.Join(m.Codecs, ",")+`"`)
	}
	if r := formatResolution(m.Width, m.Height); r != "" {
		attrs = append(attrs, "RESOLUTION="+r)
	}
	if m.FrameRate > 0 {
		attrs = append(attrs, "FRAME-RATE="+formatFrameRate(m.FrameRate))
	}
	if m.AudioGroup != "" {
		attrs = append(attrs, `AUDIO="`+m.AudioGroup+`"`)
	}
	b.WriteString("#EXT-X-STREAM-INF:" + strings.Join(attrs, ",") + "\n")
	b.WriteString(m.URI + "\n")
}

// materiallyDifferent decides whether a new master is worth a rewrite:
// any change of codecs, resolution or frame rate, or a bandwidth figure
// off by more than 10% (players only use them to pick and to budget).
func (m masterPlaylist) materiallyDifferent(o masterPlaylist) bool {
	if strings.Join(m.Codecs, ",") != strings.Join(o.Codecs, ",") || m.Width != o.Width || m.Height != o.Height ||
		formatFrameRate(m.FrameRate) != formatFrameRate(o.FrameRate) || m.URI != o.URI {
		return true
	}
	off := func(a, b int) bool { return math.Abs(float64(a-b)) > 0.1*float64(max(a, b, 1)) }
	return off(m.Bandwidth, o.Bandwidth) || off(m.AverageBandwidth, o.AverageBandwidth)
}
