package packager

import (
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamd/streamd/live"
	"github.com/streamd/streamd/store"
)

// Config tunes the packager; zero values take the defaults.
type Config struct {
	// SegmentDuration is the target: a segment is cut at the first video
	// keyframe at or after this much since its start. Default 2s.
	SegmentDuration time.Duration
	// PlaylistSegments is the sliding-window length. Default 6.
	PlaylistSegments int
	// EndGrace is how long after the publisher leaves EXT-X-ENDLIST is
	// written, unless it comes back. Default 5s.
	EndGrace time.Duration
	// Prefix is the object key prefix. Default "live".
	Prefix string
}

func (c Config) withDefaults() Config {
	if c.SegmentDuration <= 0 {
		c.SegmentDuration = 2 * time.Second
	}
	if c.PlaylistSegments <= 0 {
		c.PlaylistSegments = 6
	}
	if c.EndGrace <= 0 {
		c.EndGrace = 5 * time.Second
	}
	if c.Prefix == "" {
		c.Prefix = "live"
	}
	return c
}

// queueLimit bounds the segments waiting for the store per channel; past
// it the oldest are dropped, because a stalled store must not make the
// server run out of memory.
const queueLimit = 64

// Packager implements live.Listener: it packages every publication into
// CMAF HLS objects in the store.
type Packager struct {
	cfg  Config
	objs store.Objects
	log  *slog.Logger
	met  *metrics

	// started bounds the cleanup of earlier processes' objects.
	started time.Time

	mu       sync.Mutex
	channels map[string]*channel
	lastRun  int64
	closed   bool
}

var _ live.Listener = (*Packager)(nil)

// New creates a packager writing to objs. reg may be nil (no metrics
// exported; Stats still works).
func New(cfg Config, objs store.Objects, log *slog.Logger, reg prometheus.Registerer) *Packager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Packager{
		cfg:      cfg.withDefaults(),
		objs:     objs,
		log:      log.With("component", "packager"),
		met:      newMetrics(reg),
		started:  time.Now(),
		channels: map[string]*channel{},
	}
}

// OnPublish attaches a reader to a new publication.
func (p *Packager) OnPublish(s *live.Stream) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	c := p.channels[s.Channel]
	if c == nil {
		c = newChannel(p, s.Channel)
		p.channels[s.Channel] = c
	}
	runID := p.newRunIDLocked()
	p.mu.Unlock()

	if r := c.publish(s, runID); r != nil {
		s.AddReader(r)
	}
}

// newRunIDLocked returns a short id unique per publication and process
// start: base36 unix milliseconds, bumped when two publications start in
// the same millisecond. Segment URLs embed it, so they are never reused
// for different bytes, even across restarts.
func (p *Packager) newRunIDLocked() string {
	ms := time.Now().UnixMilli()
	if ms <= p.lastRun {
		ms = p.lastRun + 1
	}
	p.lastRun = ms
	return strconv.FormatInt(ms, 36)
}

// Close finishes every channel: flushes partial segments, writes ENDLIST
// and waits for the writers to drain. Later publications are ignored.
func (p *Packager) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	chans := make([]*channel, 0, len(p.channels))
	for _, c := range p.channels {
		chans = append(chans, c)
	}
	p.mu.Unlock()
	for _, c := range chans {
		c.shutdown()
	}
	for _, c := range chans {
		<-c.done
	}
}

// ChannelStats are a channel's counters and latest latency figures, for
// tests and the status API.
type ChannelStats struct {
	SegmentsWritten int
	Errors          int
	DroppedUnits    int
	// FirstPlaylistDelay runs from the latest publication's first unit
	// (Received) to its first playlist being stored.
	FirstPlaylistDelay time.Duration
	// LastPublishDelay and MaxPublishDelay run from a segment's last unit
	// (Received) to its playlist being stored.
	LastPublishDelay time.Duration
	MaxPublishDelay  time.Duration
	Live             bool
	Ended            bool // ENDLIST written
}

// Stats returns a channel's figures; ok is false for a channel never
// published since New.
func (p *Packager) Stats(channel string) (st ChannelStats, ok bool) {
	p.mu.Lock()
	c := p.channels[channel]
	p.mu.Unlock()
	if c == nil {
		return ChannelStats{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st = c.stats
	st.Live = c.reader != nil
	return st, true
}

type metrics struct {
	publishDelay  prometheus.Histogram
	firstPlaylist prometheus.Histogram
	segments      *prometheus.CounterVec
	errors        *prometheus.CounterVec
	dropped       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		publishDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "streamd_segment_publish_delay_seconds",
			Help: "Time from the arrival of a segment's last unit to its media playlist being stored.",
			Buckets: []float64{.001, .002, .003, .005, .0075, .01, .015, .02, .03, .05, .075,
				.1, .15, .2, .3, .5, .75, 1},
		}),
		firstPlaylist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "streamd_first_playlist_seconds",
			Help:    "Time from a publication's first unit to its first media playlist being stored.",
			Buckets: []float64{.5, 1, 1.5, 2, 2.05, 2.1, 2.2, 2.5, 3, 4, 5, 7.5, 10, 15, 30},
		}),
		segments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamd_segments_written_total",
			Help: "Segments stored and listed in a playlist.",
		}, []string{"channel"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamd_packager_errors_total",
			Help: "Store operations that failed after retries, and segments dropped from a full queue.",
		}, []string{"channel"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamd_packager_dropped_units_total",
			Help: "Access units the packager could not use (empty, non-monotonic DTS, bad frames).",
		}, []string{"channel", "reason"}),
	}
	if reg != nil {
		m.publishDelay = register(reg, m.publishDelay)
		m.firstPlaylist = register(reg, m.firstPlaylist)
		m.segments = register(reg, m.segments)
		m.errors = register(reg, m.errors)
		m.dropped = register(reg, m.dropped)
	}
	return m
}

// register shares collectors when two packagers use one registry (tests,
// or a restart of the packager inside one process) instead of panicking.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
