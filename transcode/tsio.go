package transcode

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"

	"github.com/streamd/streamd/media"
)

// inputOffset is added to every timestamp written to ffmpeg: the TS
// writer puts the PCR 100 ms before the DTS, and B-frame DTS can start
// slightly before 0, so a zero-based timeline would go negative.
const inputOffset = 10 * time.Second

const tsMask = 0x1FFFFFFFF // 33-bit MPEG-TS clock

func to90k(d time.Duration) int64 {
	return (int64(d/time.Second)*90000 + int64(d%time.Second)*90000/int64(time.Second)) & tsMask
}

func from90k(v int64) time.Duration {
	return time.Duration(v/90000)*time.Second + time.Duration(v%90000)*time.Second/90000
}

// tsMuxer writes the publication's video and audio units as MPEG-TS for
// one ffmpeg run. It is not safe for concurrent use: the feeder goroutine
// owns it.
type tsMuxer struct {
	bw     *bufio.Writer
	w      *mpegts.Writer
	video  *media.Track
	audio  *media.Track
	vTrack *mpegts.Track
	aTrack *mpegts.Track
}

// pickTracks returns the first video and first audio track the muxer can
// carry (nil when absent).
func pickTracks(tracks []*media.Track) (video, audio *media.Track) {
	for _, t := range tracks {
		switch t.Codec.(type) {
		case *media.H264, *media.H265:
			if video == nil {
				video = t
			}
		case *media.AAC, *media.Opus:
			if audio == nil {
				audio = t
			}
		}
	}
	return video, audio
}

func newTSMuxer(out io.Writer, video, audio *media.Track) (*tsMuxer, error) {
	m := &tsMuxer{bw: bufio.NewWriterSize(out, 256*1024), video: video, audio: audio}
	var tracks []*mpegts.Track
	switch video.Codec.(type) {
	case *media.H264:
		m.vTrack = &mpegts.Track{Codec: &mpegts.CodecH264{}}
	case *media.H265:
		m.vTrack = &mpegts.Track{Codec: &mpegts.CodecH265{}}
	default:
		return nil, ErrNoVideo
	}
	tracks = append(tracks, m.vTrack)
	if audio != nil {
		switch c := audio.Codec.(type) {
		case *media.AAC:
			var asc mpeg4audio.AudioSpecificConfig
			if err := asc.Unmarshal(c.Config); err != nil {
				return nil, fmt.Errorf("AAC config: %w", err)
			}
			m.aTrack = &mpegts.Track{Codec: &mpegts.CodecMPEG4Audio{Config: asc}}
		case *media.Opus:
			m.aTrack = &mpegts.Track{Codec: &mpegts.CodecOpus{ChannelCount: max(c.Channels, 1)}}
		}
		tracks = append(tracks, m.aTrack)
	}
	m.w = &mpegts.Writer{W: m.bw, Tracks: tracks}
	if err := m.w.Initialize(); err != nil {
		return nil, err
	}
	// PAT/PMT first, so ffmpeg's probe finds the programme without
	// waiting for the first keyframe.
	if _, err := m.w.WriteTables(); err != nil {
		return nil, err
	}
	return m, nil
}

// write muxes u; units of other tracks are ignored. Random-access video
// units get their parameter sets prepended when the publisher sent them
// only out of band (RTMP does): a decoder that starts on them needs them.
func (m *tsMuxer) write(u *media.Unit) error {
	pts := to90k(u.PTS + inputOffset)
	dts := to90k(u.DTS + inputOffset)
	var err error
	switch {
	case u.Track == m.video:
		switch c := u.Track.Codec.(type) {
		case *media.H264:
			au := u.Payload
			if u.RandomAccess && !hasH264Params(au) && len(c.SPS) > 0 && len(c.PPS) > 0 {
				au = append([][]byte{c.SPS, c.PPS}, au...)
			}
			err = m.w.WriteH264(m.vTrack, pts, dts, au)
		case *media.H265:
			au := u.Payload
			if u.RandomAccess && !hasH265Params(au) && len(c.SPS) > 0 {
				au = append([][]byte{c.VPS, c.SPS, c.PPS}, au...)
			}
			err = m.w.WriteH265(m.vTrack, pts, dts, au)
		}
	case u.Track == m.audio && m.audio != nil:
		switch u.Track.Codec.(type) {
		case *media.AAC:
			err = m.w.WriteMPEG4Audio(m.aTrack, pts, u.Payload)
		case *media.Opus:
			err = m.w.WriteOpus(m.aTrack, pts, u.Payload)
		}
	default:
		return nil
	}
	return err
}

// flush hands the buffered packets to ffmpeg in one write (instead of one
// per 188-byte packet); the feeder decides when (see feedBatch).
func (m *tsMuxer) flush() error { return m.bw.Flush() }

func hasH264Params(au [][]byte) bool {
	for _, n := range au {
		if len(n) > 0 && h264.NALUType(n[0]&0x1f) == h264.NALUTypeSPS {
			return true
		}
	}
	return false
}

func hasH265Params(au [][]byte) bool {
	for _, n := range au {
		if len(n) > 0 && h265.NALUType((n[0]>>1)&0x3f) == h265.NALUType_SPS_NUT {
			return true
		}
	}
	return false
}

// timeBase maps one run's output timeline back onto the publication's:
// the first video picture ffmpeg outputs is the first keyframe the feeder
// wrote (PTS and wall clock known), whatever offset ffmpeg applied.
type timeBase struct {
	pubPTS   time.Duration
	received time.Time
}

// tsDemuxer reads one rendition's MPEG-TS and delivers media units.
type tsDemuxer struct {
	r        io.Reader
	base     func() timeBase // the run's first fed keyframe; valid once ffmpeg outputs
	start    func(tracks []*media.Track)
	write    func(*media.Unit)
	maxEarly int // audio units held until the first picture
}

// run demuxes until EOF or a read error. It returns nil on EOF.
func (d *tsDemuxer) run() error {
	r := &mpegts.Reader{R: d.r}
	if err := r.Initialize(); err != nil {
		if isEOF(err) {
			return nil
		}
		return err
	}
	var (
		td      mpegts.TimeDecoder
		vt, at  *media.Track
		started bool
		haveQ0  bool
		q0      int64
		tb      timeBase
		early   []*media.Unit
		tracks  []*media.Track
		h264Trk *media.H264
	)
	toPub := func(v int64) time.Duration { return tb.pubPTS + from90k(v-q0) }
	emit := func(u *media.Unit) {
		u.Received = tb.received.Add(u.PTS - tb.pubPTS)
		d.write(u)
	}
	for _, t := range r.Tracks() {
		switch c := t.Codec.(type) {
		case *mpegts.CodecH264:
			if vt != nil {
				continue
			}
			h264Trk = &media.H264{}
			vt = &media.Track{Codec: h264Trk}
			r.OnDataH264(t, func(rawPTS, rawDTS int64, au [][]byte) error {
				dts := td.Decode(rawDTS)
				pts := dts + ((rawPTS - rawDTS) & tsMask)
				if !started {
					for _, n := range au {
						switch h264.NALUType(n[0] & 0x1f) {
						case h264.NALUTypeSPS:
							h264Trk.SPS = append([]byte(nil), n...)
						case h264.NALUTypePPS:
							h264Trk.PPS = append([]byte(nil), n...)
						}
					}
					if h264Trk.SPS == nil || h264Trk.PPS == nil || !h264.IsRandomAccess(au) {
						return nil // cannot start a rendition on this picture
					}
					q0, haveQ0, tb = pts, true, d.base()
					started = true
					d.start(tracks)
					for _, u := range early {
						v := u.PTS // raw decoded value stashed in PTS
						u.PTS, u.DTS = toPub(int64(v)), toPub(int64(v))
						// Audio from before the first picture (the encoder's
						// priming) has nothing to play against: drop it.
						if u.PTS >= tb.pubPTS {
							emit(u)
						}
					}
					early = nil
				}
				emit(&media.Unit{Track: vt, PTS: toPub(pts), DTS: toPub(dts),
					RandomAccess: h264.IsRandomAccess(au), Payload: au})
				return nil
			})
		case *mpegts.CodecMPEG4Audio:
			if at != nil {
				continue
			}
			cfg := c.Config
			raw, err := cfg.Marshal()
			if err != nil {
				return err
			}
			at = &media.Track{Codec: &media.AAC{Config: raw, SampleRate: cfg.SampleRate, Channels: cfg.ChannelCount}}
			sr := int64(max(cfg.SampleRate, 1))
			r.OnDataMPEG4Audio(t, func(rawPTS int64, aus [][]byte) error {
				pts := td.Decode(rawPTS)
				for i, au := range aus {
					v := pts + int64(i)*mpeg4audio.SamplesPerAccessUnit*90000/sr
					if !haveQ0 {
						if len(early) >= d.maxEarly {
							early = early[1:]
						}
						early = append(early, &media.Unit{Track: at, PTS: time.Duration(v), RandomAccess: true, Payload: [][]byte{au}})
						continue
					}
					p := toPub(v)
					emit(&media.Unit{Track: at, PTS: p, DTS: p, RandomAccess: true, Payload: [][]byte{au}})
				}
				return nil
			})
		}
	}
	if vt == nil {
		return errors.New("rendition output has no H.264 video")
	}
	vt.ID = 0
	tracks = append(tracks, vt)
	if at != nil {
		at.ID = 1
		tracks = append(tracks, at)
	}
	for {
		if err := r.Read(); err != nil {
			if isEOF(err) {
				return nil
			}
			return err
		}
	}
}

// isEOF recognises the end of a pipe; astits wraps it in errors of its
// own that errors.Is cannot always see through.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, os.ErrClosed) ||
		strings.Contains(err.Error(), "EOF")
}
