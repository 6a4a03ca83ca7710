package rtmp

import (
	"bytes"
	"fmt"
	"log/slog"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/streamd/streamd/live"
	"github.com/streamd/streamd/media"
)

// trackMapper converts gortmplib tracks into media tracks and, once the
// publication exists, routes each track's data into it.
type trackMapper struct {
	log *slog.Logger
	// pairs of library track and media track, in media track ID order;
	// media is nil for a track that is ignored.
	pairs []trackPair
}

type trackPair struct {
	rtmp  *gortmplib.Track
	media *media.Track
}

func newTrackMapper(log *slog.Logger) *trackMapper { return &trackMapper{log: log} }

// mapTracks returns the usable tracks with IDs 0..n-1 in the library's
// order (video first, then audio). Unusable ones are logged and skipped.
func (m *trackMapper) mapTracks(r *gortmplib.Reader) []*media.Track {
	var out []*media.Track
	for _, t := range r.Tracks() {
		codec, err := mediaCodec(t.Codec)
		if err != nil {
			m.log.Warn("ignoring track", "codec", rtmpCodecName(t.Codec), "reason", err.Error())
			m.pairs = append(m.pairs, trackPair{rtmp: t})
			continue
		}
		mt := &media.Track{ID: len(out), Codec: codec}
		out = append(out, mt)
		m.pairs = append(m.pairs, trackPair{rtmp: t, media: mt})
	}
	return out
}

var errUnsupported = fmt.Errorf("codec not supported (streamd takes H.264, H.265, AAC and Opus)")

func mediaCodec(c codecs.Codec) (media.Codec, error) {
	switch c := c.(type) {
	case *codecs.H264:
		return &media.H264{SPS: c.SPS, PPS: c.PPS}, nil
	case *codecs.H265:
		return &media.H265{VPS: c.VPS, SPS: c.SPS, PPS: c.PPS}, nil
	case *codecs.MPEG4Audio:
		if c.Config == nil {
			return nil, fmt.Errorf("missing AudioSpecificConfig")
		}
		asc, err := c.Config.Marshal()
		if err != nil {
			return nil, fmt.Errorf("invalid AudioSpecificConfig: %w", err)
		}
		return &media.AAC{Config: asc, SampleRate: c.Config.SampleRate, Channels: aacChannels(c.Config)}, nil
	case *codecs.Opus:
		ch := 2
		if c.IDHeader != nil && c.IDHeader.ChannelCount > 0 {
			ch = int(c.IDHeader.ChannelCount)
		}
		return &media.Opus{Channels: ch}, nil
	default:
		return nil, errUnsupported
	}
}

func aacChannels(c *mpeg4audio.AudioSpecificConfig) int {
	switch {
	case c.ChannelConfig >= 1 && c.ChannelConfig <= 6:
		return int(c.ChannelConfig)
	case c.ChannelConfig == 7:
		return 8
	case c.ChannelCount > 0: //nolint:staticcheck // still filled by older parsers
		return c.ChannelCount //nolint:staticcheck
	default:
		// Layout defined by a PCE: stereo is by far the common case and
		// only used for metadata downstream.
		return 2
	}
}

func rtmpCodecName(c codecs.Codec) string {
	switch c.(type) {
	case *codecs.H264:
		return "h264"
	case *codecs.H265:
		return "h265"
	case *codecs.AV1:
		return "av1"
	case *codecs.VP9:
		return "vp9"
	case *codecs.MPEG4Audio:
		return "aac"
	case *codecs.Opus:
		return "opus"
	case *codecs.FLAC:
		return "flac"
	case *codecs.MPEG1Audio:
		return "mp3"
	case *codecs.AC3:
		return "ac3"
	case *codecs.G711:
		return "g711"
	case *codecs.LPCM:
		return "lpcm"
	default:
		return fmt.Sprintf("%T", c)
	}
}

// attach installs a data callback on every track. Ignored tracks get a
// callback that drops their data: gortmplib's Reader.Read calls the
// callback of any configured track unconditionally, so leaving one unset
// would crash on the first packet.
func (m *trackMapper) attach(r *gortmplib.Reader, s *live.Stream) {
	for _, p := range m.pairs {
		if p.media == nil {
			dropData(r, p.rtmp)
			continue
		}
		mt := p.media
		switch c := mt.Codec.(type) {
		case *media.H264:
			v := &videoTrack{track: mt, stream: s, params: [][]byte{c.SPS, c.PPS},
				isParam: func(b []byte) bool {
					t := h264.NALUType(b[0] & 0x1f)
					return t == h264.NALUTypeSPS || t == h264.NALUTypePPS
				},
				isVCL: func(b []byte) bool {
					t := b[0] & 0x1f
					return t >= 1 && t <= 5
				},
				randomAccess: h264.IsRandomAccess,
			}
			r.OnDataH264(p.rtmp, v.onAU)
		case *media.H265:
			v := &videoTrack{track: mt, stream: s, params: [][]byte{c.VPS, c.SPS, c.PPS},
				isParam: func(b []byte) bool {
					t := h265.NALUType((b[0] >> 1) & 0x3f)
					return t == h265.NALUType_VPS_NUT || t == h265.NALUType_SPS_NUT || t == h265.NALUType_PPS_NUT
				},
				isVCL: func(b []byte) bool {
					return (b[0]>>1)&0x3f < 32
				},
				randomAccess: h265.IsRandomAccess,
			}
			r.OnDataH265(p.rtmp, v.onAU)
		case *media.AAC:
			r.OnDataMPEG4Audio(p.rtmp, func(pts time.Duration, au []byte) {
				writeAudio(s, mt, pts, au)
			})
		case *media.Opus:
			r.OnDataOpus(p.rtmp, func(pts time.Duration, pkt []byte) {
				writeAudio(s, mt, pts, pkt)
			})
		}
	}
}

func writeAudio(s *live.Stream, t *media.Track, pts time.Duration, frame []byte) {
	// An RTMP audio message carries exactly one AAC access unit or one
	// Opus packet, which is the one-frame-per-unit the hub expects.
	s.WriteUnit(&media.Unit{
		Track:        t,
		PTS:          pts,
		DTS:          pts,
		RandomAccess: true,
		Payload:      [][]byte{frame},
		Received:     time.Now(),
	})
}

// videoTrack turns gortmplib's H.264/H.265 callbacks into units.
type videoTrack struct {
	track        *media.Track
	stream       *live.Stream
	isParam      func([]byte) bool
	isVCL        func([]byte) bool
	randomAccess func([][]byte) bool

	// params are the parameter sets the consumer currently knows: the
	// track's out-of-band ones, then whatever was last sent in-band.
	params [][]byte
	// pending are parameter sets received in a sequence header (config
	// message) that differ from params; they go in-band with the next
	// picture.
	pending [][]byte
}

func (v *videoTrack) onAU(pts, dts time.Duration, au [][]byte) {
	if !containsVCL(au, v.isVCL) {
		// A sequence header (gortmplib hands it over as an "access unit" of
		// parameter sets) or a picture-less AU: not a picture, so no unit of
		// its own, which would also repeat the next picture's DTS. New
		// parameter sets are carried in-band with the next picture, since the
		// track's out-of-band ones are shared with readers and must not
		// change.
		var ps [][]byte
		for _, n := range au {
			if v.isParam(n) {
				ps = append(ps, n)
			}
		}
		if len(ps) > 0 && !sameNALUs(ps, v.params) {
			v.pending = ps
		}
		return
	}
	if v.pending != nil {
		au = append(append([][]byte(nil), v.pending...), au...)
		v.params, v.pending = v.pending, nil
	}
	v.stream.WriteUnit(&media.Unit{
		Track:        v.track,
		PTS:          pts,
		DTS:          dts,
		RandomAccess: v.randomAccess(au),
		Payload:      au,
		Received:     time.Now(),
	})
}

func containsVCL(au [][]byte, isVCL func([]byte) bool) bool {
	for _, n := range au {
		if len(n) > 0 && isVCL(n) {
			return true
		}
	}
	return false
}

func sameNALUs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func dropData(r *gortmplib.Reader, t *gortmplib.Track) {
	switch t.Codec.(type) {
	case *codecs.H264:
		r.OnDataH264(t, func(time.Duration, time.Duration, [][]byte) {})
	case *codecs.H265:
		r.OnDataH265(t, func(time.Duration, time.Duration, [][]byte) {})
	case *codecs.AV1:
		r.OnDataAV1(t, func(time.Duration, [][]byte) {})
	case *codecs.VP9:
		r.OnDataVP9(t, func(time.Duration, []byte) {})
	case *codecs.MPEG4Audio:
		r.OnDataMPEG4Audio(t, func(time.Duration, []byte) {})
	case *codecs.Opus:
		r.OnDataOpus(t, func(time.Duration, []byte) {})
	case *codecs.FLAC:
		r.OnDataFLAC(t, func(time.Duration, []byte) {})
	case *codecs.MPEG1Audio:
		r.OnDataMPEG1Audio(t, func(time.Duration, []byte) {})
	case *codecs.AC3:
		r.OnDataAC3(t, func(time.Duration, []byte) {})
	case *codecs.G711:
		r.OnDataG711(t, func(time.Duration, []byte) {})
	case *codecs.LPCM:
		r.OnDataLPCM(t, func(time.Duration, []byte) {})
	}
}
