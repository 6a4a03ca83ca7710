package packager

import (
	"slices"
	"sync"
	"time"
)

// cutGrid carries a laddered channel's segment boundaries from the video
// rendition that leads them to the shared audio rendition. Video cuts on
// keyframes (forced by the encoder every segment duration); audio has no
// keyframes and frames of 1024 samples, so cutting it on its own clock
// at a fixed frame count drifts (94 frames are 2.0053 s, 9.6 s an hour)
// and media sequence N stops meaning the same time in the audio and the
// video playlists. Instead the audio segmenter cuts at the frame nearest
// each boundary the video published: the error is at most half a frame
// and never accumulates.
//
// Renditions run on their own goroutines, so the grid is shared under a
// mutex; the audio side reads it at most once per audio frame.
type cutGrid struct {
	mu     sync.Mutex
	leader string
	bounds []time.Duration // ascending publication PTS, the latest gridKeep
}

// gridKeep bounds the boundaries remembered: the audio side only ever
// looks a few segments back.
const gridKeep = 32

// reset forgets the boundaries of an earlier publication.
func (g *cutGrid) reset() {
	g.mu.Lock()
	g.leader = ""
	g.bounds = g.bounds[:0]
	g.mu.Unlock()
}

// publish records a boundary cut by a video rendition. The first encoded
// rendition to publish leads; the source rendition (the publisher's own
// keyframes, which the encoder does not see) leads only while no encoded
// one has published. A boundary that goes backwards (an encoder restart
// on a new timeline) starts the grid afresh.
func (g *cutGrid) publish(rendition string, at time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.leader == rendition:
	case g.leader == "" || (g.leader == SourceRendition && rendition != SourceRendition):
		g.leader = rendition
		g.bounds = g.bounds[:0]
	default:
		return
	}
	if n := len(g.bounds); n > 0 && at <= g.bounds[n-1] {
		g.bounds = g.bounds[:0]
	}
	if len(g.bounds) == gridKeep {
		g.bounds = slices.Delete(g.bounds, 0, 1)
	}
	g.bounds = append(g.bounds, at)
}

// after returns the first boundary later than t.
func (g *cutGrid) after(t time.Duration) (time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, b := range g.bounds {
		if b > t {
			return b, true
		}
	}
	return 0, false
}

// atOrBefore returns the latest boundary not later than t.
func (g *cutGrid) atOrBefore(t time.Duration) (time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := len(g.bounds) - 1; i >= 0; i-- {
		if g.bounds[i] <= t {
			return g.bounds[i], true
		}
	}
	return 0, false
}
