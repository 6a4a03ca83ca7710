package packager

import (
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"

	"github.com/streamd/streamd/media"
)

// Audio-only publications (and the shared audio rendition of a ladder) cut
// their segments here. Boundaries sit on a grid — the video's, published
// through a cutGrid, or, without one, the publication's first frame plus
// multiples of the target — and each cut falls on the frame whose start is
// nearest its boundary, so the error stays under half a frame and never
// adds up.

// pendingAudioMax bounds the frames held while the audio waits for the
// video's first boundary (a ladder's video output can lag its audio by a
// few frames); past it, or past maxDur of audio, the audio starts on its
// own grid rather than wait for a video that may never come.
const pendingAudioMax = 1024

// pushRefAudio adds one frame of the reference audio track.
func (s *segmenter) pushRefAudio(st *segTrack, u *media.Unit) string {
	if st.frameDuration(u.Payload[0]) == 0 {
		return dropBadAudio
	}
	if s.started {
		s.appendAudio(st, u)
		s.cutAudio(st)
		return ""
	}
	if s.follow == nil {
		s.startAudio(u)
		s.appendAudio(st, u)
		return ""
	}
	if n := len(s.pending); n > 0 && u.DTS <= s.pending[n-1].DTS {
		return dropNonMonotonic
	}
	s.pending = append(s.pending, u)
	i, ok := s.followStart(st)
	if !ok {
		if len(s.pending) < pendingAudioMax && u.DTS-s.pending[0].DTS < s.maxDur {
			return ""
		}
		i = 0 // no video boundary in sight: start on the audio's own grid
		s.follow = nil
	}
	pend := s.pending[i:]
	s.pending = nil
	s.startAudio(pend[0])
	for _, pu := range pend {
		s.appendAudio(st, pu)
		s.cutAudio(st)
	}
	return ""
}

// followStart finds the pending frame the audio should start on: the one
// nearest the video's boundary, or — when the audio begins a little after
// the video (encoders prime audio later) — the first frame within half a
// segment after it, so both renditions' first segments carry the same
// media sequence number.
func (s *segmenter) followStart(st *segTrack) (int, bool) {
	for i, pu := range s.pending {
		half := tsToDuration(uint64(st.frameDuration(pu.Payload[0])), st.params.timescale) / 2
		b, ok := s.follow.atOrBefore(pu.DTS + half)
		if !ok {
			continue
		}
		if b >= pu.DTS-half || pu.DTS-b <= s.target/2 {
			return i, true
		}
	}
	return 0, false
}

func (s *segmenter) startAudio(u *media.Unit) {
	s.started = true
	s.base = u.DTS
	s.segStart = u.DTS
	s.segStartTS = 0
	s.origin = u.DTS
}

// appendAudio appends a frame to its track, stretching the previous frame
// over a gap (the publisher dropped frames) so later frames keep their
// real time instead of sliding earlier.
func (s *segmenter) appendAudio(st *segTrack, u *media.Unit) {
	dur := st.frameDuration(u.Payload[0])
	dts := s.toTS(u.DTS, st.params.timescale)
	if n := len(st.samples); n > 0 && dts > st.endTS+uint64(dur)/2 {
		st.samples[n-1].Duration += uint32(min(dts-st.endTS, 1<<31))
		st.endTS = dts
	}
	st.appendSample(dts, &fmp4.Sample{Duration: dur, Payload: clone(u.Payload[0])})
	st.presEndTS = max(st.presEndTS, st.endTS)
	st.seen = true
	st.lastDTS = u.DTS
	s.lastReceived = u.Received
}

// nextBoundary is the first grid boundary after the current segment's
// start (plus half a frame, so the boundary the segment opened on does
// not count again).
func (s *segmenter) nextBoundary(half time.Duration, now time.Duration) (time.Duration, bool) {
	from := s.segStart + half
	if s.follow != nil {
		if b, ok := s.follow.after(from); ok {
			return b, true
		}
		// The video stopped publishing boundaries (its encoder is
		// stalled or gone): keep segments coming on the audio's clock.
		if now-s.segStart < 2*s.target {
			return 0, false
		}
		return s.segStart + s.target, true
	}
	k := (from - s.origin) / s.target
	return s.origin + (k+1)*s.target, true
}

// cutAudio closes every segment whose boundary the reference track has
// passed: the cut goes before the first frame that starts nearer the
// boundary than the frame before it.
func (s *segmenter) cutAudio(ref *segTrack) {
	for len(ref.samples) > 1 {
		frame := ref.samples[len(ref.samples)-1].Duration
		scale := ref.params.timescale
		half := tsToDuration(uint64(frame), scale) / 2
		now := s.base + tsToDuration(ref.endTS, scale)
		b, ok := s.nextBoundary(half, now)
		if !ok {
			return
		}
		bTS := s.toTS(b, scale)
		i := splitIndex(ref, bTS)
		if i == len(ref.samples) {
			return // the frame nearest the boundary has not arrived yet
		}
		if i == 0 {
			// The segment opened later than its boundary (after a gap):
			// that boundary is behind us.
			s.segStart = max(s.segStart, b)
			continue
		}
		endTS := ref.baseTS
		for _, smp := range ref.samples[:i] {
			endTS += uint64(smp.Duration)
		}
		seg := s.buildAudioUntil(endTS)
		if seg == nil {
			return
		}
		s.out = append(s.out, seg)
	}
}

// splitIndex is the index of the first sample whose start is nearer to
// (or after) at than to the sample before it.
func splitIndex(st *segTrack, at uint64) int {
	t := st.baseTS
	for i, smp := range st.samples {
		if t+uint64(smp.Duration)/2 > at {
			return i
		}
		t += uint64(smp.Duration)
	}
	return len(st.samples)
}

// buildAudioUntil builds a fragment from the samples before endTS (the
// reference timescale) on every track and keeps the rest for the next.
func (s *segmenter) buildAudioUntil(endTS uint64) *Segment {
	end := s.base + tsToDuration(endTS, s.ref.params.timescale)
	type tail struct {
		samples []*fmp4.Sample
		baseTS  uint64
	}
	tails := make([]tail, len(s.tracks))
	for k, st := range s.tracks {
		at := s.toTS(end, st.params.timescale)
		i := splitIndex(st, at)
		t := st.baseTS
		for _, smp := range st.samples[:i] {
			t += uint64(smp.Duration)
		}
		tails[k] = tail{samples: st.samples[i:], baseTS: t}
		st.samples = st.samples[:i:i]
	}
	seg := s.build(endTS)
	for k, st := range s.tracks {
		st.samples = tails[k].samples
		st.baseTS = tails[k].baseTS
	}
	s.segStart = end
	s.segStartTS = endTS
	return seg
}
