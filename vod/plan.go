package vod

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/streamd/streamd/transcode"
)

// Plan is everything the encode needs to know, decided up front from the
// probe and the job, so the ffmpeg arguments and the manifests are pure
// functions of it.
type Plan struct {
	Media *Media
	// Video are the encoded renditions, highest first; empty for audio-only
	// input. Each is representation (and folder rN) number i.
	Video []transcode.PlannedRung
	// Audio has one source track per language, encoded to Ladder.Audio;
	// representation numbers follow the video ones.
	Audio []AudioStream
	// DefaultAudio indexes Audio: the track flagged default, else the first.
	DefaultAudio int
	// Subtitles are the text tracks, extracted to WebVTT as subs/Name.vtt.
	Subtitles []PlannedSubtitle
	// AudioCodec is the one audio encode every language gets.
	AudioCodec      transcode.Audio
	SegmentDuration time.Duration
	// Thumbnails and Poster are zero for audio-only input.
	Thumbnails ThumbnailPlan
	Poster     PosterPlan
}

// PlannedSubtitle is one text track and its file name (no extension).
type PlannedSubtitle struct {
	SubtitleStream
	Name string
}

// ThumbnailPlan lays the scrubbing thumbnails out on one sprite sheet.
type ThumbnailPlan struct {
	Interval      time.Duration
	Width, Height int // one thumbnail
	Cols, Rows    int
	Count         int
}

// PosterPlan is the poster frame: taken ~10% in (past a black opening or
// a fade-in), at the top rendition's size.
type PosterPlan struct {
	At            time.Duration
	Width, Height int
}

// Representation is the DASH representation id (and folder number) of
// the i-th audio track.
func (p *Plan) audioRep(i int) int { return len(p.Video) + i }

// NewPlan fits the job to the probed input.
func NewPlan(m *Media, job Job) *Plan {
	p := &Plan{Media: m, AudioCodec: job.Ladder.Audio, SegmentDuration: job.SegmentDuration}
	if p.SegmentDuration <= 0 {
		p.SegmentDuration = DefaultSegmentDuration
	}
	// Every player takes AAC-LC 48 kHz stereo; a 5.1 or mono source is
	// down- or up-mixed, 44.1 kHz resampled.
	p.AudioCodec.SampleRate, p.AudioCodec.Channels = 48000, 2
	if p.AudioCodec.Bitrate == "" {
		p.AudioCodec.Bitrate = "128k"
	}
	if m.Video != nil {
		p.Video = transcode.Encoded(transcode.Plan(job.Ladder, m.Video.SourceInfo()))
		if len(p.Video) > 0 {
			top := p.Video[0]
			p.Poster = PosterPlan{At: m.Duration / 10, Width: top.Width, Height: top.Height}
			p.Thumbnails = planThumbnails(m.Duration, job.ThumbnailInterval, top.Width, top.Height)
		}
	}
	// One rendition per language: a second track in the same language is
	// usually commentary or a different mix, which HLS would show as two
	// identical "English" entries; the first (or the default) wins.
	seen := map[string]int{}
	for _, a := range m.Audio {
		if i, ok := seen[a.Language]; ok {
			if a.Default && !p.Audio[i].Default {
				p.Audio[i] = a
			}
			continue
		}
		seen[a.Language] = len(p.Audio)
		p.Audio = append(p.Audio, a)
	}
	for i, a := range p.Audio {
		if a.Default {
			p.DefaultAudio = i
			break
		}
	}
	names := map[string]int{}
	for _, s := range m.Subtitles {
		// Subtitles belong to a picture; an audio-only programme gets none.
		if !s.Text || len(p.Video) == 0 {
			continue
		}
		names[s.Language]++
		name := s.Language
		if n := names[s.Language]; n > 1 {
			name = fmt.Sprintf("%s-%d", s.Language, n)
		}
		p.Subtitles = append(p.Subtitles, PlannedSubtitle{SubtitleStream: s, Name: name})
	}
	return p
}

// planThumbnails picks the interval (about 10 thumbnails for a short clip,
// one every 10 s for longer ones, at most 400 so the sheet stays a
// reasonable JPEG) and a 10-column grid of 160x90 (or 90x160 portrait)
// tiles.
func planThumbnails(d, interval time.Duration, w, h int) ThumbnailPlan {
	if interval <= 0 {
		interval = min(max(d/10, time.Second), 10*time.Second).Round(time.Second)
	}
	if d > 400*interval {
		interval = time.Duration(math.Ceil(d.Seconds()/400)) * time.Second
	}
	count := max(1, int(math.Ceil(float64(d)/float64(interval))))
	short := 90
	t := ThumbnailPlan{Interval: interval, Count: count, Cols: min(count, 10)}
	t.Rows = (count + t.Cols - 1) / t.Cols
	if w >= h {
		t.Height, t.Width = short, evenInt(float64(short)*float64(w)/float64(h))
	} else {
		t.Width, t.Height = short, evenInt(float64(short)*float64(h)/float64(w))
	}
	return t
}

func evenInt(v float64) int { return max(2, int(math.Round(v/2))*2) }

// rateString writes a frame rate for ffmpeg, keeping the NTSC rates
// exact: "29.97" would be read as 2997/100 and drift from 30000/1001.
func rateString(f float64) string {
	for _, base := range []float64{24, 30, 60} {
		if math.Abs(f-base*1000/1001) < 0.005 {
			return strconv.Itoa(int(base*1000)) + "/1001"
		}
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}
