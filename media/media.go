// Package media holds the protocol-neutral description of a live stream:
// its tracks (codec and parameters) and the access units that flow from
// ingest through the live hub to the packager and transcoders.
package media

import "time"

// Codec is one of the codec parameter types below.
type Codec interface {
	// Name is a short lowercase codec name for logs and the API ("h264", "aac").
	Name() string
	IsVideo() bool
}

// H264 carries the out-of-band parameter sets of an H.264 track.
type H264 struct {
	SPS []byte
	PPS []byte
}

// H265 carries the out-of-band parameter sets of an H.265 track.
type H265 struct {
	VPS []byte
	SPS []byte
	PPS []byte
}

// AAC is MPEG-4 audio; Config is the raw AudioSpecificConfig.
type AAC struct {
	Config     []byte
	SampleRate int
	Channels   int
}

// Opus audio. Opus always runs at a 48 kHz clock.
type Opus struct {
	Channels int
}

func (*H264) Name() string  { return "h264" }
func (*H264) IsVideo() bool { return true }
func (*H265) Name() string  { return "h265" }
func (*H265) IsVideo() bool { return true }
func (*AAC) Name() string   { return "aac" }
func (*AAC) IsVideo() bool  { return false }
func (*Opus) Name() string  { return "opus" }
func (*Opus) IsVideo() bool { return false }

// Track is one elementary stream of a publication. ID is the track's
// index in the publication's track list.
type Track struct {
	ID    int
	Codec Codec
}

// Unit is one access unit.
//
// For video, Payload holds the NAL units of one picture (without start
// codes or length prefixes). For audio, Payload holds exactly one encoded
// frame in Payload[0]: ingest splits packets that carry several frames.
type Unit struct {
	Track *Track
	// PTS and DTS are relative to the start of the publication; DTS equals
	// PTS for audio and for video without B-frames.
	PTS time.Duration
	DTS time.Duration
	// RandomAccess marks a video picture a decoder can start from (IDR/IRAP).
	// Always true for audio.
	RandomAccess bool
	Payload      [][]byte
	// Received is the wall-clock time the unit arrived at the server; the
	// packager uses it for PROGRAM-DATE-TIME and latency metrics.
	Received time.Time
}
