package packager

import (
	"errors"
	"log/slog"
	"maps"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamd/streamd/live"
	"github.com/streamd/streamd/media"
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
	channels map[renditionKey]*channel
	masters  map[string]*master // by channel
	lastRun  int64
	closed   bool
}

type renditionKey struct{ channel, rendition string }

// SourceRendition names the published stream packaged as is.
const SourceRendition = "source"

// AudioRendition names a channel's shared audio rendition: when a channel
// has one, the master lists it as the EXT-X-MEDIA audio group every video
// rendition plays with (the video renditions then carry no audio).
const AudioRendition = "audio"

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
		channels: map[renditionKey]*channel{},
		masters:  map[string]*master{},
	}
}

// OnPublish packages a new publication as the channel's source rendition.
func (p *Packager) OnPublish(s *live.Stream) {
	c, runID := p.rendition(s.Channel, SourceRendition)
	if c == nil {
		return
	}
	if r := c.publish(s.Tracks, runID); r != nil {
		s.AddReader(r)
	}
}

// rendition returns (creating) the writer state of one rendition and a
// fresh run id; nil after Close.
func (p *Packager) rendition(channel, name string) (*channel, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ""
	}
	k := renditionKey{channel, name}
	c := p.channels[k]
	if c == nil {
		c = newChannel(p, channel, name)
		p.channels[k] = c
	}
	return c, p.newRunIDLocked()
}

// Rendition returns a writer for one transcoded rendition of a channel,
// stored under live/{channel}/{name}/ and listed in the channel's master
// playlist beside the others. It has the shape of a transcoder's output
// sink: Start begins a run (again after an encoder restart: the playlist
// continues after an EXT-X-DISCONTINUITY with a new init segment),
// WriteUnit feeds it, Close ends it (EXT-X-ENDLIST after the end grace).
func (p *Packager) Rendition(channel, name string) *Rendition {
	return &Rendition{p: p, channel: channel, name: name}
}

// Rendition feeds one rendition's media playlist; see Packager.Rendition.
type Rendition struct {
	p             *Packager
	channel, name string

	mu sync.Mutex
	r  *reader
}

// Start begins a run with the given tracks, ending the previous run.
func (w *Rendition) Start(tracks []*media.Track, restarted bool) {
	w.Close()
	c, runID := w.p.rendition(w.channel, w.name)
	if c == nil {
		return
	}
	r := c.publish(tracks, runID)
	w.mu.Lock()
	w.r = r
	w.mu.Unlock()
}

// WriteUnit adds a unit to the current run.
func (w *Rendition) WriteUnit(u *media.Unit) {
	w.mu.Lock()
	r := w.r
	w.mu.Unlock()
	if r != nil {
		r.WriteUnit(u)
	}
}

// Close ends the current run (flushing its last segment).
func (w *Rendition) Close() {
	w.mu.Lock()
	r := w.r
	w.r = nil
	w.mu.Unlock()
	if r != nil {
		r.Close()
	}
}

// master is a channel's multivariant playlist: the latest variant of each
// rendition, rewritten when one of them changes materially. Renditions'
// writers call update from their own goroutines.
type master struct {
	mu       sync.Mutex
	variants map[string]masterPlaylist // by rendition
	written  map[string]masterPlaylist // as last stored
	// expected are the renditions of the current publication (nil: any).
	// The master waits until each has stored a playlist, so a player never
	// gets a master that lacks the audio group or a rendition it will
	// gain two seconds later — but not longer than expectWait after the
	// first one, so one broken rendition cannot keep a channel dark.
	expected map[string]bool
	first    time.Time
	// grid carries the video's segment boundaries to the audio rendition.
	grid cutGrid
}

// expectWait bounds how long the master waits for late renditions.
const expectWait = 6 * time.Second

func (p *Packager) master(channel string) *master {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.masters[channel]
	if m == nil {
		m = &master{variants: map[string]masterPlaylist{}}
		p.masters[channel] = m
	}
	return m
}

// Expect declares the renditions of a channel's new publication (source,
// the ladder's rungs, audio). Variants of renditions not named are dropped
// from the master (an earlier publication's ladder), and the master is
// rewritten only once each named one has a playlist.
func (p *Packager) Expect(channel string, renditions []string) {
	m := p.master(channel)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expected = map[string]bool{}
	for _, r := range renditions {
		m.expected[r] = true
	}
	for k := range m.variants {
		if !m.expected[k] {
			delete(m.variants, k)
		}
	}
	m.first = time.Time{}
	m.grid.reset()
}

func (m *master) update(c *channel, v masterPlaylist) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.expected != nil && !m.expected[c.rendition] {
		return // a late writer of a rendition the channel no longer has
	}
	m.variants[c.rendition] = v
	if m.first.IsZero() {
		m.first = time.Now()
	}
	for r := range m.expected {
		if _, ok := m.variants[r]; !ok && time.Since(m.first) < expectWait {
			return
		}
	}
	changed := len(m.written) != len(m.variants)
	for k, cur := range m.variants {
		if old, ok := m.written[k]; !ok || cur.materiallyDifferent(old) {
			changed = true
		}
	}
	if !changed {
		return
	}
	var audio *masterPlaylist
	if a, ok := m.variants[AudioRendition]; ok {
		audio = &a
	}
	vs := make([]masterPlaylist, 0, len(m.variants))
	names := make([]string, 0, len(m.variants))
	for k := range m.variants {
		if k != AudioRendition {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		vs = append(vs, m.variants[k])
	}
	if len(vs) == 0 {
		return // audio alone waits for a video rendition
	}
	if err := c.put(c.prefix+"index.m3u8", marshalMaster(vs, audio)); err == nil {
		m.written = maps.Clone(m.variants)
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
	c := p.channels[renditionKey{channel, SourceRendition}]
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
