package rtsp

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmpeg4audio"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/pion/rtp"

	"github.com/streamd/streamd/live"
	"github.com/streamd/streamd/media"
)

// session is one publishing RTSP session, from ANNOUNCE to its close.
type session struct {
	srv *Server
	ss  *gortsplib.ServerSession
	// packetPTS is ss.PacketPTS; a field so the depacketizing path can be
	// fuzzed without a network session.
	packetPTS func(*description.Media, *rtp.Packet) (int64, bool)
	remote    string
	// key is kept only to publish later (when the SDP lacked parameter
	// sets) and to scrub it from library errors. Never log it.
	key string

	// mu serializes everything below and, above all, Stream.WriteUnit:
	// with UDP transport gortsplib calls packet callbacks from one
	// goroutine per media, and the hub wants one writer at a time.
	mu        sync.Mutex
	log       *slog.Logger
	channel   string
	tracks    []*track
	stream    *live.Stream
	recording bool
	closed    bool
	// reason is why we closed the session ourselves (panic, timeout,
	// refused late publish); it wins over gortsplib's generic
	// "terminated" error when the session goroutine reports the close.
	reason error
	timer  *time.Timer
	// base is subtracted from every timestamp so the publication starts
	// at zero; see writeLocked. held are the first units, kept until base
	// is known.
	base      time.Duration
	baseSet   bool
	held      []heldUnit
	heldSince time.Time
}

func (s *session) mediaTracks() []*media.Track {
	out := make([]*media.Track, len(s.tracks))
	for i, t := range s.tracks {
		out[i] = t.mt
	}
	return out
}

func (s *session) needsParams() bool {
	for _, t := range s.tracks {
		if t.needsParams() {
			return true
		}
	}
	return false
}

// armTimer closes the session if cond still holds after d. It guards the
// steps a client could otherwise stall forever while holding resources (a
// channel reserved at ANNOUNCE, or a connection waiting for parameter sets).
// Callers hold s.mu.
func (s *session) armTimer(d time.Duration, cond func() bool, reason error) {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.timer = time.AfterFunc(d, func() {
		s.mu.Lock()
		fire := !s.closed && cond()
		if fire {
			s.reason = reason
		}
		log := s.log
		s.mu.Unlock()
		if fire {
			log.Warn("closing rtsp session", "reason", reason.Error())
			if s.ss != nil {
				s.ss.Close()
			}
		}
	})
}

// abort closes the session from inside a callback. Callers hold s.mu.
func (s *session) abortLocked(reason error) {
	if s.reason == nil {
		s.reason = reason
	}
	// ServerSession.Close only cancels a context: safe from any goroutine.
	if s.ss != nil {
		s.ss.Close()
	}
}

// recoverPanic turns a panic in our code into the end of this one session:
// a malformed packet must not take the server down with it.
func (s *session) recoverPanic(where string) {
	r := recover()
	if r == nil {
		return
	}
	stack := string(debug.Stack())
	s.mu.Lock()
	log := s.log
	s.abortLocked(errors.New("internal error while processing media"))
	s.mu.Unlock()
	log.Error("panic in rtsp session, closing it", "where", where,
		"panic", redact(fmt.Sprint(r), s.key), "stack", stack)
}

// close ends the session exactly once: it is called when gortsplib reports
// the session closed, whatever the cause.
func (s *session) close(libErr error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	stream := s.stream
	reason := s.reason
	log := s.log
	var undecodable int
	for _, t := range s.tracks {
		undecodable += t.decodeErrors
	}
	s.mu.Unlock()

	if reason == nil {
		reason = s.describeLibError(libErr)
	}
	attrs := []any{}
	if reason != nil {
		attrs = append(attrs, "reason", reason.Error())
	}
	if undecodable > 0 {
		attrs = append(attrs, "undecodable_packets", undecodable)
	}
	log.Info("rtsp session closed", attrs...)
	if stream != nil {
		stream.Close(reason)
	}
}

// describeLibError maps gortsplib's session-close error to a reason for
// the hub (nil is a clean stop), without the stream key.
func (s *session) describeLibError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[liberrors.ErrServerSessionTornDown](err); ok {
		return nil // TEARDOWN: the publisher stopped cleanly
	}
	if _, ok := errors.AsType[liberrors.ErrServerSessionTimedOut](err); ok {
		return fmt.Errorf("no media received for %s", s.srv.readTimeout)
	}
	if _, ok := errors.AsType[liberrors.ErrServerSessionNotInUse](err); ok {
		return errors.New("publisher disconnected")
	}
	if _, ok := errors.AsType[liberrors.ErrServerTerminated](err); ok {
		return errors.New("rtsp server shutting down")
	}
	return errors.New(redact(err.Error(), s.key))
}

// onPacket is the RTP callback of one track.
func (s *session) onPacket(t *track, pkt *rtp.Packet) {
	defer s.recoverPanic("rtp packet")

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	// Every packet goes through the time decoder, even ones we end up
	// dropping, so it follows the RTP timestamp wrap-around. The decoder
	// puts all tracks of the session on one timeline (aligned on arrival of
	// each track's first packet), which is what keeps audio and video in
	// sync downstream.
	ticks, hasPTS := s.packetPTS(t.media, pkt)
	pts := ticksToDuration(ticks, t.clockRate)
	now := time.Now()

	switch {
	case t.h264Dec != nil:
		au, err := t.h264Dec.Decode(pkt)
		if err != nil {
			s.decodeError(t, err, rtph264.ErrMorePacketsNeeded, rtph264.ErrNonStartingPacketAndNoPrevious)
			return
		}
		if hasPTS {
			s.onVideoAU(t, au, ticks, now)
		}
	case t.h265Dec != nil:
		au, err := t.h265Dec.Decode(pkt)
		if err != nil {
			s.decodeError(t, err, rtph265.ErrMorePacketsNeeded, rtph265.ErrNonStartingPacketAndNoPrevious)
			return
		}
		if hasPTS {
			s.onVideoAU(t, au, ticks, now)
		}
	case t.aacDec != nil:
		aus, err := t.aacDec.Decode(pkt)
		if err != nil {
			s.decodeError(t, err, rtpmpeg4audio.ErrMorePacketsNeeded)
			return
		}
		if !hasPTS {
			return
		}
		// One unit per frame: an RTP packet may carry several AUs, the
		// i-th starting samplesPerFrame*i samples after the packet's.
		for i, au := range aus {
			if len(au) == 0 {
				continue
			}
			off := time.Duration(i*t.samplesPerFrame) * time.Second / time.Duration(t.sampleRate)
			s.emitAudio(t, au, pts+off, now)
		}
	case t.opusDec != nil:
		frame, err := t.opusDec.Decode(pkt)
		if err != nil {
			s.decodeError(t, err)
			return
		}
		if hasPTS && len(frame) > 0 {
			s.emitAudio(t, frame, pts, now)
		}
	}
}

// decodeError counts undecodable packets. Only the first one per track is
// logged: a broken or hostile publisher must not flood the log; the total
// is logged when the session closes.
func (s *session) decodeError(t *track, err error, benign ...error) {
	for _, b := range benign {
		if errors.Is(err, b) {
			return
		}
	}
	t.decodeErrors++
	if t.decodeErrors == 1 {
		s.log.Warn("dropping undecodable RTP packet", "track", t.mt.ID, "codec", t.mt.Codec.Name(),
			"error", redact(err.Error(), s.key))
	}
}

// onVideoAU handles one depacketized picture; ticks is its PTS on the
// session timeline in the track's clock (90 kHz, what the DTS extractors
// assume).
func (s *session) onVideoAU(t *track, au [][]byte, ticks int64, now time.Time) {
	_, isH265 := t.mt.Codec.(*media.H265)

	// Strip access unit delimiters (they carry nothing readers need) and
	// empty NAL units (the codec helpers below index nalu[0]).
	out := au[:0:0]
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		if isH265 {
			if h265.NALUType((n[0]>>1)&0x3f) == h265.NALUType_AUD_NUT {
				continue
			}
		} else if h264.NALUType(n[0]&0x1f) == h264.NALUTypeAccessUnitDelimiter {
			continue
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return
	}

	if s.stream == nil {
		// Publishing waits for in-band parameter sets (see OnAnnounce).
		if t.needsParams() {
			takeParams(t.mt.Codec, out)
		}
		if s.needsParams() {
			return
		}
		if !s.publishLocked() {
			return
		}
	}

	var ra bool
	if isH265 {
		ra = h265.IsRandomAccess(out)
	} else {
		ra = h264.IsRandomAccess(out)
	}
	if !t.started {
		// DTS extraction needs a random-access picture as reference, and
		// readers cannot decode anything before one either.
		if !ra {
			return
		}
		t.started = true
	}

	// The extractor reads the SPS from the access unit itself; publishers
	// that only send parameter sets out of band (ffmpeg) would never give
	// it one, so feed the known ones once, ahead of the first picture.
	in := out
	if !t.primed {
		in = append(paramSets(t.mt.Codec), out...)
		t.primed = true
	}
	var dts int64
	var err error
	if isH265 {
		dts, err = t.h265DTS.Extract(in, ticks)
	} else {
		dts, err = t.h264DTS.Extract(in, ticks)
	}
	if err != nil {
		// Lost packets or odd streams: restart from the next random-access
		// picture with a fresh extractor rather than guess timestamps.
		s.log.Debug("dropping video until next keyframe", "track", t.mt.ID, "error", err.Error())
		if isH265 {
			t.h265DTS = h265.NewDTSExtractor()
		} else {
			t.h264DTS = h264.NewDTSExtractor()
		}
		t.started, t.primed = false, false
		return
	}
	s.writeLocked(t, &media.Unit{
		Track:        t.mt,
		PTS:          ticksToDuration(ticks, t.clockRate),
		DTS:          ticksToDuration(dts, t.clockRate),
		RandomAccess: ra,
		Payload:      out,
		Received:     now,
	})
}

func (s *session) emitAudio(t *track, frame []byte, pts time.Duration, now time.Time) {
	if s.stream == nil {
		return // still waiting for video parameter sets
	}
	s.writeLocked(t, &media.Unit{
		Track:        t.mt,
		PTS:          pts,
		DTS:          pts,
		RandomAccess: true,
		Payload:      [][]byte{frame},
		Received:     now,
	})
}

// startWindow bounds how long the first units are held back to find the
// publication's time origin when a track stays silent.
const (
	startWindow      = time.Second
	startWindowUnits = 512
)

type heldUnit struct {
	t *track
	u *media.Unit
}

// writeLocked rebases u on the publication's start and hands it to the hub,
// keeping each track's DTS monotonic (readers rely on it for segmenting).
//
// The origin is the lowest first DTS over all tracks. It cannot be taken
// from whichever unit comes first: a video track's first DTS may lie before
// its first PTS (H.265 reordering) or before audio that arrived earlier, and
// a negative DTS would be dropped, costing a whole GOP. So the first units
// are held until every track has produced one (at most startWindow).
func (s *session) writeLocked(t *track, u *media.Unit) {
	if !s.baseSet {
		s.held = append(s.held, heldUnit{t, u})
		if s.heldSince.IsZero() {
			s.heldSince = u.Received
		}
		seen := map[*track]time.Duration{}
		for _, h := range s.held {
			if _, ok := seen[h.t]; !ok {
				seen[h.t] = h.u.DTS
			}
		}
		if len(seen) < len(s.tracks) && u.Received.Sub(s.heldSince) < startWindow && len(s.held) < startWindowUnits {
			return
		}
		first := true
		for _, d := range seen {
			if first || d < s.base {
				s.base, first = d, false
			}
		}
		s.baseSet = true
		held := s.held
		s.held = nil
		for _, h := range held {
			s.deliverLocked(h.t, h.u)
		}
		return
	}
	s.deliverLocked(t, u)
}

func (s *session) deliverLocked(t *track, u *media.Unit) {
	u.PTS -= s.base
	u.DTS -= s.base
	if u.DTS < 0 || (t.anyOut && u.DTS <= t.lastDTS) {
		return
	}
	t.lastDTS, t.anyOut = u.DTS, true
	s.stream.WriteUnit(u)
}

// publishLocked publishes a session whose parameter sets arrived in band.
// On refusal the session is closed: the publisher gets a disconnect, as
// ANNOUNCE is long past.
func (s *session) publishLocked() bool {
	stream, err := s.srv.Hub.Publish(s.key, protocolName, s.remote, s.mediaTracks())
	if err != nil {
		reason := s.srv.logPublishRefusal(s.log, err)
		s.abortLocked(reason)
		return false
	}
	s.stream = stream
	s.channel = stream.Channel
	s.log = s.log.With("channel", stream.Channel)
	if s.timer != nil {
		s.timer.Stop()
	}
	s.log.Info("rtsp publish started", "tracks", codecNames(s.tracks))
	return true
}

// takeParams fills missing parameter sets of c from an access unit.
func takeParams(c media.Codec, au [][]byte) {
	switch c := c.(type) {
	case *media.H264:
		for _, n := range au {
			switch h264.NALUType(n[0] & 0x1f) {
			case h264.NALUTypeSPS:
				var sps h264.SPS
				if sps.Unmarshal(n) == nil {
					c.SPS = clone(n)
				}
			case h264.NALUTypePPS:
				c.PPS = clone(n)
			}
		}
	case *media.H265:
		for _, n := range au {
			switch h265.NALUType((n[0] >> 1) & 0x3f) {
			case h265.NALUType_VPS_NUT:
				c.VPS = clone(n)
			case h265.NALUType_SPS_NUT:
				var sps h265.SPS
				if sps.Unmarshal(n) == nil {
					c.SPS = clone(n)
				}
			case h265.NALUType_PPS_NUT:
				c.PPS = clone(n)
			}
		}
	}
}

// paramSets returns the known parameter sets of a video codec in decoding order.
func paramSets(c media.Codec) [][]byte {
	var ps [][]byte
	switch c := c.(type) {
	case *media.H264:
		ps = [][]byte{c.SPS, c.PPS}
	case *media.H265:
		ps = [][]byte{c.VPS, c.SPS, c.PPS}
	}
	out := ps[:0]
	for _, p := range ps {
		if len(p) > 0 {
			out = append(out, p)
		}
	}
	return out
}

func codecNames(ts []*track) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.mt.Codec.Name()
	}
	return out
}
