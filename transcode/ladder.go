package transcode

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Ladder is a named set of renditions. The config package embeds the same
// shape under `ladders:`.
type Ladder struct {
	Name  string `yaml:"name"`
	Rungs []Rung `yaml:"rungs"`
	Audio Audio  `yaml:"audio"`
}

// Rung is one rendition of a ladder.
type Rung struct {
	// Name is the rendition's folder and playlist name ("720p").
	Name string `yaml:"name"`
	// Width and Height are the nominal size for a 16:9 landscape source.
	// Height is what counts: it is the short side of the output (a portrait
	// source gets a portrait rendition Height wide), and the long side
	// follows the source's aspect. Width documents the intent and bounds
	// nothing.
	Width  int `yaml:"width"`
	Height int `yaml:"height"`
	// VideoBitrate is the target ("3000k", "5M"); MaxBitrate the peak
	// (defaults to VideoBitrate).
	VideoBitrate string `yaml:"video_bitrate"`
	MaxBitrate   string `yaml:"max_bitrate"`
	// Framerate caps the output frame rate; 0 keeps the source's. It never
	// raises it.
	Framerate float64 `yaml:"framerate"`
	// Profile is the H.264 profile (baseline, main, high; default high).
	Profile string `yaml:"profile"`
	// Preset is the encoder's speed preset in x264 terms (ultrafast …
	// veryslow; default veryfast); hardware encoders map it to theirs.
	Preset string `yaml:"preset"`
	// Source passes the published stream through untouched (no encode);
	// the other fields are ignored.
	Source bool `yaml:"source"`
}

// Audio is the one AAC encode shared by every rendition.
type Audio struct {
	Bitrate    string `yaml:"bitrate"`
	SampleRate int    `yaml:"sample_rate"`
	Channels   int    `yaml:"channels"`
}

// DefaultLadder is the built-in `default` ladder: 1080p to 360p H.264 and
// AAC 128k 48 kHz stereo.
func DefaultLadder() Ladder {
	rung := func(name string, w, h int, br, max string) Rung {
		return Rung{Name: name, Width: w, Height: h, VideoBitrate: br, MaxBitrate: max, Profile: "high", Preset: "veryfast"}
	}
	return Ladder{
		Name: "default",
		Rungs: []Rung{
			rung("1080p", 1920, 1080, "5000k", "5350k"),
			rung("720p", 1280, 720, "3000k", "3210k"),
			rung("480p", 854, 480, "1200k", "1284k"),
			rung("360p", 640, 360, "800k", "856k"),
		},
		Audio: Audio{Bitrate: "128k", SampleRate: 48000, Channels: 2},
	}
}

var (
	validProfiles = map[string]bool{"": true, "baseline": true, "main": true, "high": true}
	validPresets  = map[string]bool{"": true, "ultrafast": true, "superfast": true, "veryfast": true, "faster": true,
		"fast": true, "medium": true, "slow": true, "slower": true, "veryslow": true}
	validRates = map[int]bool{8000: true, 11025: true, 12000: true, 16000: true, 22050: true, 24000: true,
		32000: true, 44100: true, 48000: true, 88200: true, 96000: true}
)

// Validate reports every problem, each naming its field
// ("rungs[1].video_bitrate: ...") so the config layer can prefix the key.
func (l Ladder) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if l.Name == "" {
		bad("name", "must not be empty")
	}
	if len(l.Rungs) == 0 {
		bad("rungs", "needs at least one rung")
	}
	names := map[string]int{}
	sources := 0
	for i, r := range l.Rungs {
		f := func(k string) string { return fmt.Sprintf("rungs[%d].%s", i, k) }
		switch {
		case r.Name == "":
			bad(f("name"), "must not be empty")
		case strings.ContainsAny(r.Name, `/\ `) || r.Name == "." || r.Name == "..":
			bad(f("name"), "%q is used as a folder name: no slashes, spaces or dots-only", r.Name)
		default:
			if j, dup := names[r.Name]; dup {
				bad(f("name"), "%q is also the name of rungs[%d]", r.Name, j)
			}
			names[r.Name] = i
		}
		if r.Source {
			sources++
			continue
		}
		if r.Height <= 0 {
			bad(f("height"), "must be a positive number of pixels (e.g. 720)")
		} else if r.Height%2 != 0 {
			bad(f("height"), "%d is odd; H.264 4:2:0 needs even sizes", r.Height)
		}
		if r.Width < 0 || r.Width%2 != 0 {
			bad(f("width"), "%d must be a positive even number of pixels, or 0", r.Width)
		}
		vb, err := ParseBitrate(r.VideoBitrate)
		if err != nil {
			bad(f("video_bitrate"), "%v", err)
		}
		if r.MaxBitrate != "" {
			mb, err := ParseBitrate(r.MaxBitrate)
			if err != nil {
				bad(f("max_bitrate"), "%v", err)
			} else if vb > 0 && mb < vb {
				bad(f("max_bitrate"), "%s is below video_bitrate %s", r.MaxBitrate, r.VideoBitrate)
			}
		}
		if r.Framerate < 0 || r.Framerate > 240 {
			bad(f("framerate"), "%g is out of range (0 keeps the source's, at most 240)", r.Framerate)
		}
		if !validProfiles[r.Profile] {
			bad(f("profile"), "%q is not one of baseline, main, high", r.Profile)
		}
		if !validPresets[r.Preset] {
			bad(f("preset"), "%q is not an x264 preset (ultrafast … veryslow)", r.Preset)
		}
	}
	if sources > 1 {
		bad("rungs", "only one rung can be the source pass-through, %d are", sources)
	}
	if _, err := ParseBitrate(l.Audio.Bitrate); err != nil {
		bad("audio.bitrate", "%v", err)
	}
	if !validRates[l.Audio.SampleRate] {
		bad("audio.sample_rate", "%d is not an AAC sample rate (e.g. 48000, 44100)", l.Audio.SampleRate)
	}
	if l.Audio.Channels < 1 || l.Audio.Channels > 8 {
		bad("audio.channels", "%d must be between 1 and 8", l.Audio.Channels)
	}
	return errors.Join(errs...)
}

// ParseBitrate reads an ffmpeg-style bitrate ("800k", "5M", "128000")
// into bits per second.
func ParseBitrate(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("must be set, e.g. 3000k")
	}
	mult := int64(1)
	num := s
	switch s[len(s)-1] {
	case 'k', 'K':
		mult, num = 1000, s[:len(s)-1]
	case 'm', 'M':
		mult, num = 1000_000, s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a bitrate (use e.g. 800k, 5M)", s)
	}
	return int64(v * float64(mult)), nil
}
