package vod

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/streamd/streamd/transcode"
)

// DefaultSegmentDuration is the VOD segment length: 4 s starts playback
// faster than Apple's 6 s recommendation and makes half the files of the
// live default of 2 s; MediaConvert's own default is 10 s.
const DefaultSegmentDuration = 4 * time.Second

// DefaultLadder is the VOD ladder: the live default ladder (1080p–360p,
// same bitrates) plus 2160p, with frame rates capped at 60 fps (30 fps
// for 480p and below, which are for small screens and slow links) and a
// slower preset, since VOD encodes once and is watched many times.
//
// 2160p H.264 is 14 Mb/s (peak 14.98, the same +7% as the other rungs):
// the middle of Apple's HLS authoring range for 2160p H.264 (11.6–16.8
// Mb/s) and well above what HEVC would need, which is the codec to add
// when clients allow.
func DefaultLadder() transcode.Ladder {
	l := transcode.DefaultLadder()
	top := transcode.Rung{Name: "2160p", Width: 3840, Height: 2160, VideoBitrate: "14000k", MaxBitrate: "14980k",
		Profile: "high", Preset: "veryfast"}
	l.Rungs = append([]transcode.Rung{top}, l.Rungs...)
	for i := range l.Rungs {
		l.Rungs[i].Preset = "fast"
		l.Rungs[i].Framerate = 60
		if l.Rungs[i].Height <= 480 {
			l.Rungs[i].Framerate = 30
		}
	}
	return l
}

// Ladders are the ladders a job can name.
func Ladders() map[string]transcode.Ladder {
	return map[string]transcode.Ladder{"default": DefaultLadder()}
}

// Job is what to make of one input: the ladder, the segment length and
// the thumbnail interval.
type Job struct {
	Ladder          transcode.Ladder
	SegmentDuration time.Duration
	// ThumbnailInterval is the time between scrubbing thumbnails; 0 picks
	// one from the duration (see planThumbnails).
	ThumbnailInterval time.Duration
	// Notes are the settings of a MediaConvert job that were accepted but
	// have no effect, or that streamd does its own way, each with its JSON
	// path (see docs/mediaconvert.md); empty for our own format. The
	// caller shows them (the CLI prints one "note:" line each).
	Notes []string
}

// DefaultJob is the job `streamd transcode` runs without --job.
func DefaultJob() Job {
	return Job{Ladder: DefaultLadder(), SegmentDuration: DefaultSegmentDuration}
}

// jobFile is our own job format (JSON). Example:
//
//	{
//	  "ladder": "default",
//	  "segment_duration": "4s",
//	  "thumbnail_interval": "10s",
//	  "audio_bitrate": "128k"
//	}
//
// or, instead of a ladder name, "rungs": [{"name": "720p", "height": 720,
// "video_bitrate": "3000k", "max_bitrate": "3210k", "framerate": 60,
// "profile": "high", "preset": "fast"}, ...]. Audio is always AAC 48 kHz
// stereo (the normalisation every player handles); only its bitrate is
// a choice. AWS MediaConvert job JSON is read too (ParseMediaConvert).
type jobFile struct {
	Ladder            string    `json:"ladder"`
	Rungs             []jobRung `json:"rungs"`
	SegmentDuration   string    `json:"segment_duration"`
	ThumbnailInterval string    `json:"thumbnail_interval"`
	AudioBitrate      string    `json:"audio_bitrate"`
}

type jobRung struct {
	Name         string  `json:"name"`
	Width        int     `json:"width"`
	Height       int     `json:"height"`
	VideoBitrate string  `json:"video_bitrate"`
	MaxBitrate   string  `json:"max_bitrate"`
	Framerate    float64 `json:"framerate"`
	Profile      string  `json:"profile"`
	Preset       string  `json:"preset"`
}

// LoadJob reads a job file (see ParseJob).
func LoadJob(path string) (Job, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Job{}, &Error{Code: CodeInvalidJob, Message: fmt.Sprintf("cannot read job file %s", path), Err: err}
	}
	j, err := ParseJob(data)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Message = path + ": " + e.Message
		}
		return Job{}, err
	}
	return j, nil
}

// ParseJob reads our JSON job format, or an AWS MediaConvert job
// (recognised by its Settings, OutputGroups, Job or JobTemplate key; see
// ParseMediaConvert). Unknown fields are errors (a typo must not silently
// give the default); every problem is reported, each naming its field.
func ParseJob(data []byte) (Job, error) {
	if isMediaConvert(data) {
		return ParseMediaConvert(data)
	}
	var f jobFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Job{}, &Error{Code: CodeInvalidJob, Message: "job is not valid: " + err.Error()}
	}
	j := DefaultJob()
	var probs []string
	switch {
	case f.Ladder != "" && len(f.Rungs) > 0:
		probs = append(probs, `"ladder" and "rungs" are exclusive: name a ladder or list rungs`)
	case f.Ladder != "":
		l, ok := Ladders()[f.Ladder]
		if !ok {
			probs = append(probs, fmt.Sprintf("ladder: unknown ladder %q (known: default)", f.Ladder))
		}
		j.Ladder = l
	case len(f.Rungs) > 0:
		j.Ladder.Name = "job"
		j.Ladder.Rungs = nil
		for _, r := range f.Rungs {
			j.Ladder.Rungs = append(j.Ladder.Rungs, transcode.Rung{Name: r.Name, Width: r.Width, Height: r.Height,
				VideoBitrate: r.VideoBitrate, MaxBitrate: r.MaxBitrate, Framerate: r.Framerate, Profile: r.Profile, Preset: r.Preset})
		}
	}
	if f.AudioBitrate != "" {
		j.Ladder.Audio.Bitrate = f.AudioBitrate
	}
	dur := func(field, s string, dst *time.Duration, min time.Duration) {
		if s == "" {
			return
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < min {
			probs = append(probs, fmt.Sprintf("%s: %q must be a duration of at least %s (e.g. 4s)", field, s, min))
			return
		}
		*dst = d
	}
	dur("segment_duration", f.SegmentDuration, &j.SegmentDuration, 500*time.Millisecond)
	dur("thumbnail_interval", f.ThumbnailInterval, &j.ThumbnailInterval, time.Second)
	if err := j.Ladder.Validate(); err != nil && j.Ladder.Name != "" {
		probs = append(probs, strings.Split(err.Error(), "\n")...)
	}
	for i, r := range j.Ladder.Rungs {
		if r.Source {
			probs = append(probs, fmt.Sprintf("rungs[%d]: a VOD ladder has no source pass-through rung", i))
		}
	}
	if len(probs) > 0 {
		return Job{}, &Error{Code: CodeInvalidJob, Message: "job is not valid: " + strings.Join(probs, "; ")}
	}
	return j, nil
}
