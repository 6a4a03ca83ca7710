package rtsp

import (
	"fmt"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmpeg4audio"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpsimpleaudio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/streamd/streamd/media"
)

// track is the ingest state of one announced media we publish: the RTP
// format we read, its depacketizer and the hub track it feeds. All fields
// past the constructor are only touched under session.mu.
type track struct {
	media  *description.Media
	format format.Format
	mt     *media.Track

	clockRate int

	h264Dec *rtph264.Decoder
	h264DTS *h264.DTSExtractor
	h265Dec *rtph265.Decoder
	h265DTS *h265.DTSExtractor
	aacDec  *rtpmpeg4audio.Decoder
	opusDec *rtpsimpleaudio.Decoder

	// AAC frame duration inputs.
	sampleRate      int
	samplesPerFrame int

	// started: the first random-access picture went out (video), so DTS
	// extraction has its reference and decoders can start.
	started bool
	// primed: the DTS extractor has seen the out-of-band parameter sets.
	primed  bool
	lastDTS time.Duration
	anyOut  bool

	decodeErrors int
}

// needsParams reports whether a video track still lacks parameter sets
// (the SDP had no usable sprop-*). Such a track cannot be described to
// readers yet, so publishing waits for in-band parameter sets.
func (t *track) needsParams() bool {
	switch c := t.mt.Codec.(type) {
	case *media.H264:
		return len(c.SPS) == 0 || len(c.PPS) == 0
	case *media.H265:
		return len(c.VPS) == 0 || len(c.SPS) == 0 || len(c.PPS) == 0
	}
	return false
}

// newTrack picks the first supported format of an announced media. It
// returns a nil track and a description of what was offered when nothing
// in the media is usable, so the caller can log what it ignores.
func newTrack(medi *description.Media) (*track, string) {
	var offered []string
	for _, f := range medi.Formats {
		t, err := newTrackForFormat(medi, f)
		if err != nil {
			offered = append(offered, fmt.Sprintf("%s (%v)", f.Codec(), err))
			continue
		}
		if t != nil {
			return t, ""
		}
		offered = append(offered, f.Codec())
	}
	return nil, fmt.Sprint(offered)
}

func newTrackForFormat(medi *description.Media, f format.Format) (*track, error) {
	t := &track{media: medi, format: f, clockRate: f.ClockRate()}
	if t.clockRate <= 0 {
		return nil, fmt.Errorf("no clock rate")
	}
	switch f := f.(type) {
	case *format.H264:
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, err
		}
		c := &media.H264{}
		// Out-of-band parameter sets are only taken if they parse: a
		// garbage sprop-parameter-sets would otherwise reach readers' init
		// segments. Without them we wait for in-band ones.
		if len(f.SPS) > 0 && len(f.PPS) > 0 {
			var sps h264.SPS
			if sps.Unmarshal(f.SPS) == nil {
				c.SPS, c.PPS = clone(f.SPS), clone(f.PPS)
			}
		}
		t.mt = &media.Track{Codec: c}
		t.h264Dec, t.h264DTS = dec, h264.NewDTSExtractor()
	case *format.H265:
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, err
		}
		c := &media.H265{}
		if len(f.VPS) > 0 && len(f.SPS) > 0 && len(f.PPS) > 0 {
			var sps h265.SPS
			if sps.Unmarshal(f.SPS) == nil {
				c.VPS, c.SPS, c.PPS = clone(f.VPS), clone(f.SPS), clone(f.PPS)
			}
		}
		t.mt = &media.Track{Codec: c}
		t.h265Dec, t.h265DTS = dec, h265.NewDTSExtractor()
	case *format.MPEG4Audio:
		// This is RFC 3640 "mpeg4-generic", what ffmpeg sends for AAC.
		if f.Config == nil {
			return nil, fmt.Errorf("no AudioSpecificConfig")
		}
		if f.SizeLength == 0 {
			// Without AU headers we cannot split packets into frames.
			return nil, fmt.Errorf("sizelength missing")
		}
		cfg, err := f.Config.Marshal()
		if err != nil {
			return nil, err
		}
		if f.Config.SampleRate <= 0 {
			return nil, fmt.Errorf("invalid sample rate")
		}
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, err
		}
		t.mt = &media.Track{Codec: &media.AAC{
			Config:     cfg,
			SampleRate: f.Config.SampleRate,
			Channels:   f.Config.ChannelCount,
		}}
		t.aacDec = dec
		t.sampleRate = f.Config.SampleRate
		t.samplesPerFrame = mpeg4audio.SamplesPerAccessUnit
		if f.Config.FrameLengthFlag {
			t.samplesPerFrame = 960
		}
	case *format.Opus:
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, err
		}
		ch := f.ChannelCount
		if ch <= 0 {
			ch = 2
		}
		t.mt = &media.Track{Codec: &media.Opus{Channels: ch}}
		t.opusDec = dec
	default:
		return nil, nil
	}
	return t, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// ticksToDuration converts a timestamp in clock-rate units to a duration,
// splitting seconds and remainder so a long publication cannot overflow.
func ticksToDuration(ticks int64, clockRate int) time.Duration {
	cr := int64(clockRate)
	return time.Duration(ticks/cr)*time.Second + time.Duration(ticks%cr)*time.Second/time.Duration(cr)
}
