package packager

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/bluenviron/gohlslib/v2/pkg/codecparams"
	hlscodecs "github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/streamd/streamd/media"
)

// trackParams is what the packager derives once from a track's codec
// parameters: everything the init segment and the master playlist need.
type trackParams struct {
	video     bool
	timescale uint32
	mp4Codec  codecs.Codec
	codecStr  string // RFC 6381 string for CODECS
	width     int    // video only, cropping applied
	height    int
	fps       float64 // from SPS timing info; 0 when the SPS does not say
	// aacFrame is the AAC frame length in samples (1024, or 960 with the
	// frame length flag); 0 for other codecs.
	aacFrame uint32
}

// paramsFor validates a track's parameters and derives trackParams. An
// error means the track cannot be packaged (unsupported codec or parameter
// sets that do not parse); the caller leaves the track out.
func paramsFor(c media.Codec) (trackParams, error) {
	switch c := c.(type) {
	case *media.H264:
		if len(c.SPS) < 4 || len(c.PPS) == 0 {
			return trackParams{}, errors.New("H.264 SPS/PPS missing")
		}
		var sps h264.SPS
		if err := sps.Unmarshal(c.SPS); err != nil {
			return trackParams{}, fmt.Errorf("H.264 SPS: %w", err)
		}
		return trackParams{
			video:     true,
			timescale: 90000,
			mp4Codec:  &codecs.H264{SPS: clone(c.SPS), PPS: clone(c.PPS)},
			codecStr:  h264CodecString(c.SPS),
			width:     sps.Width(),
			height:    sps.Height(),
			fps:       sanitizeFPS(sps.FPS()),
		}, nil
	case *media.H265:
		if len(c.VPS) == 0 || len(c.SPS) == 0 || len(c.PPS) == 0 {
			return trackParams{}, errors.New("H.265 VPS/SPS/PPS missing")
		}
		var sps h265.SPS
		if err := sps.Unmarshal(c.SPS); err != nil {
			return trackParams{}, fmt.Errorf("H.265 SPS: %w", err)
		}
		str := codecparams.Marshal(&hlscodecs.H265{VPS: c.VPS, SPS: c.SPS, PPS: c.PPS})
		if str == "" {
			return trackParams{}, errors.New("H.265 codec string")
		}
		return trackParams{
			video:     true,
			timescale: 90000,
			mp4Codec:  &codecs.H265{VPS: clone(c.VPS), SPS: clone(c.SPS), PPS: clone(c.PPS)},
			codecStr:  str,
			width:     sps.Width(),
			height:    sps.Height(),
			fps:       sanitizeFPS(sps.FPS()),
		}, nil
	case *media.AAC:
		var asc mpeg4audio.AudioSpecificConfig
		if err := asc.Unmarshal(c.Config); err != nil {
			return trackParams{}, fmt.Errorf("AAC AudioSpecificConfig: %w", err)
		}
		if asc.SampleRate <= 0 {
			return trackParams{}, errors.New("AAC sample rate missing")
		}
		frame := uint32(1024)
		if asc.FrameLengthFlag {
			frame = 960
		}
		return trackParams{
			timescale: uint32(asc.SampleRate),
			mp4Codec:  &codecs.MPEG4Audio{Config: asc},
			codecStr:  aacCodecString(asc),
			aacFrame:  frame,
		}, nil
	case *media.Opus:
		ch := c.Channels
		if ch <= 0 {
			ch = 2
		}
		return trackParams{
			timescale: 48000, // Opus always runs at a 48 kHz clock (RFC 7845)
			mp4Codec:  &codecs.Opus{ChannelCount: ch},
			codecStr:  "opus",
		}, nil
	case nil:
		return trackParams{}, errors.New("no codec")
	default:
		return trackParams{}, fmt.Errorf("unsupported codec %s", c.Name())
	}
}

// h264CodecString is avc1.PPCCLL: profile_idc, the constraint flags byte
// and level_idc, straight from the SPS bytes after the NAL header.
func h264CodecString(sps []byte) string {
	return "avc1." + hex.EncodeToString(sps[1:4])
}

// aacCodecString is mp4a.40.<audio object type> (2 for AAC-LC, 5 for
// HE-AAC, 29 for HE-AACv2).
func aacCodecString(asc mpeg4audio.AudioSpecificConfig) string {
	return "mp4a.40." + strconv.Itoa(int(asc.Type))
}

// sanitizeFPS drops frame rates no real stream has: SPS timing info is
// often filled with placeholders (or field rates).
func sanitizeFPS(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 1 || f > 300 {
		return 0
	}
	return f
}

// formatFrameRate renders FRAME-RATE with the three decimals HLS allows.
func formatFrameRate(f float64) string {
	return strconv.FormatFloat(f, 'f', 3, 64)
}

// formatResolution renders RESOLUTION, or "" when unknown.
func formatResolution(w, h int) string {
	if w <= 0 || h <= 0 {
		return ""
	}
	return strconv.Itoa(w) + "x" + strconv.Itoa(h)
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
