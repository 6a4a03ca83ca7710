package transcode

import (
	"errors"
	"fmt"
	"math"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"github.com/streamd/streamd/media"
)

// SourceInfo is what the rules need to know about the published video.
type SourceInfo struct {
	// Width and Height are the coded picture size (after cropping).
	Width, Height int
	// FPS is the nominal frame rate; 0 when the stream does not say.
	FPS float64
	// Interlaced sources are deinterlaced once, before scaling.
	Interlaced bool
	// Rotation is the clockwise rotation, in degrees (0, 90, 180, 270),
	// a player would apply for display (a phone's display matrix).
	Rotation int
	// SARNum/SARDen is the sample (pixel) aspect ratio; 0 means square.
	SARNum, SARDen int
}

// PlannedRung is a rung fitted to one source: what ffmpeg must produce.
type PlannedRung struct {
	Rung
	// Width and Height are the output size, even, square pixels, already in
	// display orientation (a portrait source gives Width < Height).
	Width, Height int
	// FPS is the output frame rate: the rung's cap or the source's rate,
	// whichever is lower; 0 when neither is known.
	FPS float64
	// LimitFPS is set when the output rate is below the source's and an
	// fps filter must drop frames.
	LimitFPS bool
	// Deinterlace and Rotation are the source's, applied once before the
	// split (the same for every rung).
	Deinterlace bool
	Rotation    int
}

// display returns the source's displayed size: square pixels, rotated.
func (s SourceInfo) display() (w, h int) {
	w, h = s.Width, s.Height
	if s.SARNum > 0 && s.SARDen > 0 && s.SARNum != s.SARDen {
		w = int(math.Round(float64(w) * float64(s.SARNum) / float64(s.SARDen)))
	}
	if r := normRotation(s.Rotation); r == 90 || r == 270 {
		w, h = h, w
	}
	return w, h
}

func normRotation(r int) int {
	r %= 360
	if r < 0 {
		r += 360
	}
	// Only quarter turns are meaningful for video; round anything else.
	return (r + 45) / 90 % 4 * 90
}

// even rounds to the nearest even number, at least 2, because 4:2:0
// chroma subsampling needs even sizes.
func even(v float64) int {
	e := int(math.Round(v/2)) * 2
	return max(e, 2)
}

// Plan fits the ladder to the source:
//   - source rungs pass through at the source's size;
//   - a rung's Height is the output's short side, so a portrait source gets
//     portrait renditions; the long side follows the source's displayed
//     aspect (SAR and rotation applied), rounded to even;
//   - rungs taller than the source are dropped (never upscale); if that
//     drops every encoded rung, the lowest one is kept at the source's size
//     so a small source still gets a transcoded rendition;
//   - the frame rate is capped at the source's;
//   - an interlaced source is deinterlaced.
func Plan(l Ladder, src SourceInfo) []PlannedRung {
	dw, dh := src.display()
	short, long := min(dw, dh), max(dw, dh)
	portrait := dh > dw
	base := func(r Rung) PlannedRung {
		return PlannedRung{Rung: r, Deinterlace: src.Interlaced, Rotation: normRotation(src.Rotation)}
	}
	size := func(p *PlannedRung, s int) {
		l := s
		if short > 0 {
			l = even(float64(s) * float64(long) / float64(short))
		}
		if portrait {
			p.Width, p.Height = s, l
		} else {
			p.Width, p.Height = l, s
		}
	}
	rate := func(p *PlannedRung) {
		p.FPS = src.FPS
		if p.Framerate > 0 && (src.FPS == 0 || p.Framerate < src.FPS) {
			p.FPS = p.Framerate
			p.LimitFPS = true
		}
	}

	var out []PlannedRung
	encoded := 0
	var lowest *Rung
	for i := range l.Rungs {
		r := l.Rungs[i]
		if r.Source {
			p := base(r)
			p.Width, p.Height, p.FPS = dw, dh, src.FPS
			out = append(out, p)
			continue
		}
		if lowest == nil || r.Height < lowest.Height {
			lowest = &l.Rungs[i]
		}
		if short > 0 && r.Height > short {
			continue
		}
		p := base(r)
		size(&p, r.Height)
		rate(&p)
		out = append(out, p)
		encoded++
	}
	if encoded == 0 && lowest != nil {
		p := base(*lowest)
		size(&p, even(float64(short)))
		rate(&p)
		out = append(out, p)
	}
	return out
}

// Encoded returns the rungs ffmpeg must produce (the plan minus the source
// pass-through), in order; their index is the rendition's stream index.
func Encoded(plan []PlannedRung) []PlannedRung {
	var out []PlannedRung
	for _, p := range plan {
		if !p.Source {
			out = append(out, p)
		}
	}
	return out
}

// ErrNoVideo is returned when a publication has nothing to transcode.
var ErrNoVideo = errors.New("the publication has no H.264 or H.265 video track to transcode")

// SourceInfoFromTracks reads size, frame rate, interlacing and pixel
// aspect from the first video track's SPS. Rotation is not carried by
// H.264/H.265 parameter sets; callers that know it (RTMP metadata) set it.
func SourceInfoFromTracks(tracks []*media.Track) (SourceInfo, error) {
	for _, t := range tracks {
		switch c := t.Codec.(type) {
		case *media.H264:
			var sps h264.SPS
			if err := sps.Unmarshal(c.SPS); err != nil {
				return SourceInfo{}, fmt.Errorf("H.264 SPS: %w", err)
			}
			si := SourceInfo{Width: sps.Width(), Height: sps.Height(), FPS: sps.FPS(), Interlaced: !sps.FrameMbsOnlyFlag}
			if v := sps.VUI; v != nil && v.AspectRatioInfoPresentFlag {
				si.SARNum, si.SARDen = sarFromIdc(v.AspectRatioIdc, int(v.SarWidth), int(v.SarHeight))
			}
			return si, nil
		case *media.H265:
			var sps h265.SPS
			if err := sps.Unmarshal(c.SPS); err != nil {
				return SourceInfo{}, fmt.Errorf("H.265 SPS: %w", err)
			}
			return SourceInfo{Width: sps.Width(), Height: sps.Height(), FPS: sps.FPS()}, nil
		}
	}
	return SourceInfo{}, ErrNoVideo
}

// sarFromIdc maps the aspect_ratio_idc of H.264 Table E-1.
func sarFromIdc(idc uint8, w, h int) (int, int) {
	table := [...][2]int{{0, 0}, {1, 1}, {12, 11}, {10, 11}, {16, 11}, {40, 33}, {24, 11}, {20, 11}, {32, 11},
		{80, 33}, {18, 11}, {15, 11}, {64, 33}, {160, 99}, {4, 3}, {3, 2}, {2, 1}}
	if idc == 255 {
		return w, h
	}
	if int(idc) < len(table) {
		return table[idc][0], table[idc][1]
	}
	return 0, 0
}
