package packager

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"

	"github.com/streamd/streamd/media"
)

// Segment is one finished CMAF fragment (moof+mdat with a traf per track).
type Segment struct {
	// Seq is the fragment's mfhd sequence number within its run, from 1.
	// It is not the playlist's media sequence: the channel writer assigns
	// that, because segments can be lost between here and the store.
	Seq uint32
	// Start is the publication-relative presentation time of the
	// segment's first sample on the reference track (the first video
	// track, else the first audio track): for video the opening
	// keyframe's PTS. Duration runs to the next segment's Start, so it is
	// what a player shows, whatever the encoder's decode delay does.
	Start    time.Duration
	Duration time.Duration
	// The same in the reference track's timescale (what a DASH
	// SegmentTimeline or an LL-HLS part list would use).
	Timescale  uint32
	StartTS    uint64
	DurationTS uint64
	// Independent is false only for a forced cut without a keyframe.
	Independent bool
	Data        []byte
	// LastReceived is the wall-clock arrival of the last unit in the
	// segment, the start of the publish-delay measurement.
	LastReceived time.Time
	// VideoFrames counts reference-track video samples, for the measured
	// frame rate.
	VideoFrames int
}

// Drop reasons reported by segmenter.push.
const (
	dropBeforeKeyframe = "before_keyframe"
	dropEmpty          = "empty_payload"
	dropNonMonotonic   = "non_monotonic_dts"
	dropUnknownTrack   = "unknown_track"
	dropBadAudio       = "bad_audio_frame"
)

type segTrack struct {
	id     int // fmp4 track ID, from 1
	mt     *media.Track
	params trackParams

	seen    bool
	lastDTS time.Duration

	// Video holds one sample back: its duration is the next DTS minus its
	// own, unknown until the next picture arrives.
	held      *fmp4.Sample
	heldTS    uint64
	lastDelta uint32 // previous video sample duration, for the final flush

	samples []*fmp4.Sample
	baseTS  uint64 // tfdt of samples[0]
	endTS   uint64 // decode time just after the last sample in samples
	// presEndTS is the latest presentation end (PTS + duration) seen, the
	// end of the last segment of a publication.
	presEndTS uint64
}

// segmenter turns one publication's units into CMAF fragments. It is not
// safe for concurrent use; the reader serialises calls.
type segmenter struct {
	target time.Duration
	// maxDur bounds a segment when the keyframes stop coming, so memory
	// stays bounded by time, not by the publisher's GOP whims.
	maxDur time.Duration

	tracks  []*segTrack // muxed tracks in init order
	byTrack map[*media.Track]*segTrack
	ref     *segTrack // drives cuts and segment timing
	init    []byte

	started      bool
	base         time.Duration // publication DTS that maps to decode time 0
	segStart     time.Duration // presentation time the current segment starts at
	segStartTS   uint64
	lastReceived time.Time
	videoFrames  int
	fragSeq      uint32

	// follow, when set, is the grid of video boundaries an audio-only
	// segmenter cuts on (a ladder's shared audio rendition); pending holds
	// its frames until the first boundary is known. origin anchors the
	// audio's own grid otherwise.
	follow  *cutGrid
	pending []*media.Unit
	origin  time.Duration
	// onBoundary, when set, hears where a video reference track starts
	// each segment (publication PTS), to lead a cutGrid.
	onBoundary func(time.Duration)
	out        []*Segment // push's result, reused
}

// skippedTrack explains why a publication track is not packaged.
type skippedTrack struct {
	Track *media.Track
	Err   error
}

// newSegmenter validates the tracks, builds the init segment and returns
// the tracks it had to leave out. It fails only if nothing is left.
func newSegmenter(tracks []*media.Track, target time.Duration) (*segmenter, []skippedTrack, error) {
	s := &segmenter{
		target:  target,
		maxDur:  max(10*target, 20*time.Second),
		byTrack: map[*media.Track]*segTrack{},
	}
	var skipped []skippedTrack
	for _, t := range tracks {
		if t == nil {
			continue
		}
		p, err := paramsFor(t.Codec)
		if err == nil {
			// The sample entry writer re-parses the parameters; a track
			// it rejects must not take the whole init segment down.
			err = marshalInit([]*fmp4.InitTrack{{ID: 1, TimeScale: p.timescale, Codec: p.mp4Codec}}, nil)
		}
		if err != nil {
			skipped = append(skipped, skippedTrack{t, err})
			continue
		}
		st := &segTrack{id: len(s.tracks) + 1, mt: t, params: p}
		s.tracks = append(s.tracks, st)
		s.byTrack[t] = st
		if p.video && (s.ref == nil || !s.ref.params.video) {
			s.ref = st
		} else if s.ref == nil {
			s.ref = st
		}
	}
	if len(s.tracks) == 0 {
		return nil, skipped, errors.New("no track can be packaged")
	}
	its := make([]*fmp4.InitTrack, len(s.tracks))
	for i, st := range s.tracks {
		its[i] = &fmp4.InitTrack{ID: st.id, TimeScale: st.params.timescale, Codec: st.params.mp4Codec}
	}
	var buf []byte
	if err := marshalInit(its, &buf); err != nil {
		return nil, skipped, fmt.Errorf("init segment: %w", err)
	}
	s.init = buf
	return s, skipped, nil
}

func marshalInit(tracks []*fmp4.InitTrack, out *[]byte) error {
	var w seekablebuffer.Buffer
	if err := (&fmp4.Init{Tracks: tracks}).Marshal(&w); err != nil {
		return err
	}
	if out != nil {
		*out = w.Bytes()
	}
	return nil
}

// refIsVideo reports whether cuts follow a video track.
func (s *segmenter) refIsVideo() bool { return s.ref.params.video }

// toTS converts a publication DTS to decode time in the given timescale,
// rounding to the nearest tick: 90 kHz timestamps that went through
// time.Duration come back exactly, and the split avoids overflow on
// streams that run for years.
func (s *segmenter) toTS(d time.Duration, scale uint32) uint64 {
	d -= s.base
	if d < 0 {
		return 0
	}
	sec := uint64(d / time.Second)
	rem := uint64(d % time.Second)
	return sec*uint64(scale) + (rem*uint64(scale)+uint64(time.Second)/2)/uint64(time.Second)
}

func tsToDuration(ts uint64, scale uint32) time.Duration {
	return time.Duration(ts/uint64(scale))*time.Second +
		time.Duration((ts%uint64(scale))*uint64(time.Second)/uint64(scale))
}

// push adds one unit. It returns the segments the unit closed (valid until
// the next call), and a drop reason when the unit was not used.
func (s *segmenter) push(u *media.Unit) ([]*Segment, string) {
	s.out = s.out[:0]
	st := s.byTrack[u.Track]
	if st == nil {
		return nil, dropUnknownTrack
	}
	if !hasPayload(u.Payload) {
		return nil, dropEmpty
	}
	if st.seen && u.DTS <= st.lastDTS {
		return nil, dropNonMonotonic
	}
	if st == s.ref && !st.params.video {
		drop := s.pushRefAudio(st, u)
		return s.out, drop
	}
	seg, drop := s.pushMuxed(st, u)
	if seg != nil {
		s.out = append(s.out, seg)
	}
	return s.out, drop
}

// pushMuxed adds a unit of a video reference track or of a track that
// follows the reference (audio beside video).
func (s *segmenter) pushMuxed(st *segTrack, u *media.Unit) (*Segment, string) {

	if !s.started {
		// Players need every segment to open with a picture they can
		// decode, so nothing before the first keyframe is kept (for
		// audio-only, the first frame starts the stream).
		if st != s.ref || (st.params.video && !u.RandomAccess) {
			return nil, dropBeforeKeyframe
		}
		s.started = true
		s.base = u.DTS
		s.segStart = u.PTS
		s.segStartTS = s.toTS(u.PTS, st.params.timescale)
		if s.onBoundary != nil {
			s.onBoundary(u.PTS)
		}
	}
	if u.DTS < s.base {
		return nil, dropBeforeKeyframe
	}

	var out *Segment
	if st.params.video {
		payload := avcc(u.Payload)
		dts := s.toTS(u.DTS, st.params.timescale)
		if st.held != nil {
			d := dts - st.heldTS
			st.held.Duration = uint32(min(d, 1<<32-1))
			st.lastDelta = st.held.Duration
			st.appendSample(st.heldTS, st.held)
			st.held = nil
			if st == s.ref {
				s.videoFrames++
			}
		}
		pts := s.toTS(u.PTS, st.params.timescale)
		if st == s.ref {
			// Cut on presentation time: decode delay can change between
			// GOPs (it does in remuxed files), presentation spacing does
			// not. Half a frame of slack absorbs millisecond-rounded
			// timestamps (RTMP, Matroska) landing just short of the target.
			elapsed := u.PTS - s.segStart
			slack := tsToDuration(uint64(st.lastDelta), st.params.timescale) / 2
			if (u.RandomAccess && elapsed >= s.target-slack) || elapsed >= s.maxDur {
				out = s.cut(u.PTS, pts)
				if s.onBoundary != nil {
					s.onBoundary(u.PTS)
				}
			}
		}
		st.held = &fmp4.Sample{
			PTSOffset:       int32(max(min(int64(pts)-int64(dts), 1<<31-1), -(1 << 31))),
			IsNonSyncSample: !u.RandomAccess,
			Payload:         payload,
		}
		st.heldTS = dts
		st.presEndTS = max(st.presEndTS, pts+uint64(st.lastDelta))
	} else {
		if st.frameDuration(u.Payload[0]) == 0 {
			return nil, dropBadAudio
		}
		s.appendAudio(st, u)
	}
	st.seen = true
	st.lastDTS = u.DTS
	s.lastReceived = u.Received
	return out, ""
}

func (st *segTrack) appendSample(dts uint64, smp *fmp4.Sample) {
	if len(st.samples) == 0 {
		st.baseTS = dts
		st.endTS = dts
	}
	st.samples = append(st.samples, smp)
	st.endTS += uint64(smp.Duration)
}

// frameDuration is an audio frame's length in the track's timescale, from
// the codec rather than from timestamps, which ingest often rounds.
func (st *segTrack) frameDuration(frame []byte) uint32 {
	if st.params.aacFrame != 0 {
		return st.params.aacFrame
	}
	if _, ok := st.mt.Codec.(*media.Opus); ok {
		d := opus.PacketDuration2(frame)
		if d <= 0 || d > 48000 {
			return 0
		}
		return uint32(d)
	}
	return 0
}

// cut closes the current segment at presentation time end (endTS in the
// reference timescale) and starts the next one there.
func (s *segmenter) cut(end time.Duration, endTS uint64) *Segment {
	seg := s.build(endTS)
	s.segStart = end
	s.segStartTS = endTS
	return seg
}

// flush closes the current segment at the end of the publication. The
// held-back picture gets the previous frame's duration.
func (s *segmenter) flush() *Segment {
	if !s.started {
		return nil
	}
	for _, st := range s.tracks {
		if st.held != nil {
			d := st.lastDelta
			if d == 0 {
				d = st.params.timescale / 30
			}
			st.held.Duration = d
			st.appendSample(st.heldTS, st.held)
			st.held = nil
			if st == s.ref {
				s.videoFrames++
			}
		}
	}
	seg := s.build(max(s.ref.presEndTS, s.segStartTS))
	s.started = false
	s.pending = nil
	return seg
}

// build marshals the pending samples of every track into one fragment
// ending at endTS on the reference track.
func (s *segmenter) build(endTS uint64) *Segment {
	part := fmp4.Part{}
	independent := true
	for _, st := range s.tracks {
		if len(st.samples) == 0 {
			continue
		}
		if st == s.ref && st.params.video && st.samples[0].IsNonSyncSample {
			independent = false
		}
		part.Tracks = append(part.Tracks, &fmp4.PartTrack{ID: st.id, BaseTime: st.baseTS, Samples: st.samples})
	}
	if len(part.Tracks) == 0 {
		return nil
	}
	s.fragSeq++
	part.SequenceNumber = s.fragSeq
	data := marshalFragment(&part)
	if data == nil {
		// Only the library's encoder can fail (on writer errors, which a
		// memory buffer does not produce); drop the samples rather than
		// panic.
		s.reset()
		return nil
	}
	scale := s.ref.params.timescale
	durTS := uint64(0)
	if endTS > s.segStartTS {
		durTS = endTS - s.segStartTS
	}
	seg := &Segment{
		Seq:          s.fragSeq,
		Start:        s.segStart,
		Duration:     tsToDuration(durTS, scale),
		Timescale:    scale,
		StartTS:      s.segStartTS,
		DurationTS:   durTS,
		Independent:  independent,
		Data:         data,
		LastReceived: s.lastReceived,
		VideoFrames:  s.videoFrames,
	}
	if !s.refIsVideo() {
		seg.VideoFrames = 0
	}
	s.reset()
	return seg
}

// reset forgets the finished segment's samples: only the segment being
// built is ever held in memory.
func (s *segmenter) reset() {
	for _, st := range s.tracks {
		st.samples = nil
	}
	s.videoFrames = 0
}

func hasPayload(p [][]byte) bool {
	for _, b := range p {
		if len(b) > 0 {
			return true
		}
	}
	return false
}

// avcc writes the NAL units with 4-byte length prefixes (the MP4 sample
// format for H.264 and H.265), skipping empty ones.
func avcc(nalus [][]byte) []byte {
	n := 0
	for _, b := range nalus {
		if len(b) > 0 {
			n += 4 + len(b)
		}
	}
	out := make([]byte, 0, n)
	for _, b := range nalus {
		if len(b) > 0 {
			out = binary.BigEndian.AppendUint32(out, uint32(len(b)))
			out = append(out, b...)
		}
	}
	return out
}
