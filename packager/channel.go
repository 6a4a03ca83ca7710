package packager

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/streamd/streamd/media"
)

// run is one publication as the writer sees it: its id, init segment and
// the anchor of its PROGRAM-DATE-TIME clock.
type run struct {
	id      string
	initURI string // relative to the media playlist
	init    []byte

	codecs        []string
	width, height int
	spsFPS        float64
	hasVideo      bool

	// Set by the reader on the first unit, before any segment of the run
	// is queued; the queue's mutex orders it before the writer reads it.
	anchorWall time.Time
	anchorPTS  time.Duration

	// Writer goroutine only.
	// names counts segment objects of the run. A name is never reused,
	// even when its Put failed (it may have been stored anyway, e.g. after
	// a timeout), because the origin serves segments as immutable.
	names             uint64
	initStored        bool
	firstPlaylistDone bool
	frames            int
	frameSecs         float64
}

// job is one queue entry: a finished segment, or the end of the grace
// period (write ENDLIST).
type job struct {
	run     *run
	seg     *Segment
	endlist bool
}

// channel keeps one rendition's media playlist of a channel across
// publications and runs its writer goroutine. The source rendition comes
// from the hub; transcoded ones from Packager.Rendition.
type channel struct {
	p         *Packager
	name      string // the channel
	rendition string // "source", "720p", ...
	log       *slog.Logger
	prefix    string // "live/{channel}/"
	srcPrefix string // "live/{channel}/{rendition}/"

	mu       sync.Mutex
	cond     *sync.Cond
	queue    []job
	gap      bool // queued segments were dropped: the next one opens with a discontinuity
	reader   *reader
	gen      uint64 // bumped per publication, so a stale grace timer does nothing
	timer    *time.Timer
	closing  bool // no new publications or timers
	stopping bool // the writer exits once the queue is empty
	stats    ChannelStats
	done     chan struct{}

	w writerState // writer goroutine only
}

type writerState struct {
	pl             mediaPlaylist
	lastRun        *run
	gap            bool
	retired        []playlistSegment // out of the window, not yet deleted
	runs           map[string]bool   // run ids of this process
	playlistStored bool
	cleaned        bool

	peakBW  float64
	sumBits float64
	sumSecs float64
}

func newChannel(p *Packager, name, rendition string) *channel {
	c := &channel{
		p:         p,
		name:      name,
		rendition: rendition,
		log:       p.log.With("channel", name, "rendition", rendition),
		prefix:    p.cfg.Prefix + "/" + name + "/",
		srcPrefix: p.cfg.Prefix + "/" + name + "/" + rendition + "/",
		done:      make(chan struct{}),
	}
	c.cond = sync.NewCond(&c.mu)
	c.w.pl.maxSegments = p.cfg.PlaylistSegments
	c.w.runs = map[string]bool{}
	go c.writer()
	return c
}

// publish prepares a reader for a new publication, cancelling a pending
// ENDLIST so the playlist continues.
func (c *channel) publish(tracks []*media.Track, runID string) *reader {
	seg, skipped, err := newSegmenter(tracks, c.p.cfg.SegmentDuration)
	for _, sk := range skipped {
		c.log.Warn("track not packaged", "track", sk.Track.ID, "error", sk.Err)
	}
	if err != nil {
		c.log.Error("publication not packaged", "error", err)
		return nil
	}
	grid := &c.p.master(c.name).grid
	if c.rendition == AudioRendition {
		seg.follow = grid
	} else if seg.refIsVideo() {
		seg.onBoundary = func(at time.Duration) { grid.publish(c.rendition, at) }
	}
	r := &run{id: runID, initURI: "init-" + runID + ".mp4", init: seg.init}
	for _, st := range seg.tracks {
		r.codecs = append(r.codecs, st.params.codecStr)
		if st.params.video && !r.hasVideo {
			r.hasVideo = true
			r.width, r.height, r.spsFPS = st.params.width, st.params.height, st.params.fps
		}
	}
	rd := &reader{c: c, run: r, seg: seg}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return nil
	}
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.gen++
	c.reader = rd
	c.log.Info("packaging publication", "run", runID, "codecs", r.codecs)
	return rd
}

// enqueueLocked queues a job, dropping the oldest pending segment when
// the queue is full (the store is stalled; fresh segments matter more).
func (c *channel) enqueueLocked(j job) {
	if len(c.queue) >= queueLimit {
		for i, old := range c.queue {
			if old.seg != nil {
				c.queue = append(c.queue[:i], c.queue[i+1:]...)
				c.gap = true
				c.stats.Errors++
				c.p.met.errors.WithLabelValues(c.name).Inc()
				c.log.Error("store too slow: dropped a pending segment", "run", old.run.id, "queued", queueLimit)
				break
			}
		}
	}
	c.queue = append(c.queue, j)
	c.cond.Signal()
}

// graceExpired ends the playlist unless the channel was published again.
func (c *channel) graceExpired(gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || c.reader != nil || c.closing {
		return
	}
	c.timer = nil
	c.enqueueLocked(job{endlist: true})
}

// shutdown flushes the live publication, queues ENDLIST and lets the
// writer drain and exit.
func (c *channel) shutdown() {
	c.mu.Lock()
	c.closing = true
	r := c.reader
	c.mu.Unlock()
	if r != nil {
		r.finish()
	}
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.enqueueLocked(job{endlist: true})
	c.stopping = true
	c.cond.Broadcast()
	c.mu.Unlock()
}

func (c *channel) writer() {
	defer close(c.done)
	for {
		c.mu.Lock()
		for len(c.queue) == 0 && !c.stopping {
			c.cond.Wait()
		}
		if len(c.queue) == 0 {
			c.mu.Unlock()
			return
		}
		// Take the segments waiting in a row (after an object-store
		// outage there can be many), up to uploadBatch: their objects are
		// stored concurrently, then listed in order with one playlist write.
		var batch []job
		for len(c.queue) > 0 && len(batch) < uploadBatch && !c.queue[0].endlist {
			batch = append(batch, c.queue[0])
			c.queue[0] = job{}
			c.queue = c.queue[1:]
		}
		gap := false
		if len(batch) > 0 {
			gap, c.gap = c.gap, false
		} else {
			c.queue[0] = job{}
			c.queue = c.queue[1:]
		}
		c.mu.Unlock()

		if len(batch) == 0 {
			c.writeEndlist()
		} else {
			c.writeSegments(batch, gap)
		}
	}
}

// uploadBatch bounds the segment uploads in flight per rendition.
const uploadBatch = 4

// stored is a segment whose object upload finished (ok or not).
type stored struct {
	job
	name string
	err  error
}

// writeSegments stores a batch of segments — inits first, in order, then
// the segment objects concurrently — and lists the stored ones in order,
// writing the media playlist once: a playlist never names an object that
// is not stored yet.
func (c *channel) writeSegments(batch []job, gap bool) {
	w := &c.w
	if gap {
		w.gap = true
	}
	var todo []*stored
	for _, j := range batch {
		r, seg := j.run, j.seg
		if seg.Duration < time.Millisecond {
			// Nothing playable (a publication that ended right after a
			// cut); an EXTINF of 0 would make players reject the playlist.
			c.log.Debug("skipped empty segment", "run", r.id)
			continue
		}
		if !r.initStored {
			if err := c.put(c.srcPrefix+r.initURI, r.init); err != nil {
				todo = append(todo, &stored{job: j, err: err})
				continue
			}
			r.initStored = true
			w.runs[r.id] = true
		}
		// Names come from the run's own counter, which failures consume
		// too: a Put that failed may have stored the bytes anyway.
		todo = append(todo, &stored{job: j, name: fmt.Sprintf("%s-%d.m4s", r.id, r.names)})
		r.names++
	}
	var wg sync.WaitGroup
	for _, st := range todo {
		if st.err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.err = c.put(c.srcPrefix+st.name, st.seg.Data)
		}()
	}
	wg.Wait()

	var listed []*stored
	for _, st := range todo {
		if st.err != nil {
			// The media sequence is only consumed by stored segments, so
			// a lost one leaves a discontinuity instead of a hole.
			w.gap = true
			continue
		}
		r, seg := st.run, st.seg
		disc := w.gap || (w.lastRun != nil && w.lastRun != r)
		w.gap = false
		w.lastRun = r
		evicted := w.pl.add(playlistSegment{
			URI:      st.name,
			MapURI:   r.initURI,
			Duration: seg.Duration,
			// Wall clock of the publication's first unit plus media
			// (presentation) time; Start and Duration share one clock, so
			// consecutive dates differ by exactly the durations listed.
			ProgramDateTime: r.anchorWall.Add(seg.Start - r.anchorPTS),
			Discontinuity:   disc,
		})
		w.retired = append(w.retired, evicted...)
		listed = append(listed, st)
	}
	if len(listed) == 0 {
		return
	}
	err := c.put(c.srcPrefix+"index.m3u8", w.pl.marshal())
	now := time.Now()
	c.mu.Lock()
	for _, st := range listed {
		c.p.met.segments.WithLabelValues(c.name).Inc()
		c.stats.SegmentsWritten++
		c.stats.Ended = false
		if err == nil && !st.seg.LastReceived.IsZero() {
			d := now.Sub(st.seg.LastReceived)
			c.stats.LastPublishDelay = d
			c.stats.MaxPublishDelay = max(c.stats.MaxPublishDelay, d)
			c.p.met.publishDelay.Observe(d.Seconds())
		}
		if err == nil && !st.run.firstPlaylistDone {
			st.run.firstPlaylistDone = true
			d := now.Sub(st.run.anchorWall)
			c.stats.FirstPlaylistDelay = d
			c.p.met.firstPlaylist.Observe(d.Seconds())
		}
	}
	c.mu.Unlock()
	if err == nil {
		w.playlistStored = true
		if !w.cleaned {
			w.cleaned = true
			c.cleanupEarlierRuns()
		}
	}
	for _, st := range listed {
		c.updateMaster(st.run, st.seg)
	}
	c.expire()
}

// updateMaster folds the segment into the bandwidth figures and rewrites
// the master when a value moved materially.
func (c *channel) updateMaster(r *run, seg *Segment) {
	w := &c.w
	secs := seg.Duration.Seconds()
	bits := float64(len(seg.Data)) * 8
	// Short segments (the flush at the end of a publication) would inflate
	// the peak with a keyframe's worth of bytes over a fraction of a second.
	if seg.Duration >= c.p.cfg.SegmentDuration/2 || w.peakBW == 0 {
		w.peakBW = max(w.peakBW, bits/secs)
	}
	w.sumBits += bits
	w.sumSecs += secs
	fps := r.spsFPS
	if r.hasVideo && fps == 0 && seg.VideoFrames > 0 {
		r.frames += seg.VideoFrames
		r.frameSecs += secs
		fps = float64(r.frames) / r.frameSecs
	}
	m := masterPlaylist{
		Bandwidth:        int(math.Ceil(w.peakBW)),
		AverageBandwidth: int(math.Ceil(w.sumBits / w.sumSecs)),
		Codecs:           r.codecs,
		Width:            r.width,
		Height:           r.height,
		FrameRate:        fps,
		URI:              c.rendition + "/index.m3u8",
	}
	if !w.playlistStored {
		return
	}
	c.p.master(c.name).update(c, m)
}

func (c *channel) writeEndlist() {
	w := &c.w
	if len(w.pl.segments) == 0 || w.pl.ended {
		return
	}
	w.pl.ended = true
	if err := c.put(c.srcPrefix+"index.m3u8", w.pl.marshal()); err == nil {
		c.mu.Lock()
		c.stats.Ended = true
		c.mu.Unlock()
		c.log.Info("playlist ended")
	}
}

// expire deletes segments that left the window a while ago: another
// window's worth is kept so players holding an older playlist do not 404.
func (c *channel) expire() {
	w := &c.w
	// One batched Delete per call (S3 takes up to 1,000 keys a request).
	var keys []string
	for len(w.retired) > c.p.cfg.PlaylistSegments {
		old := w.retired[0]
		w.retired[0] = playlistSegment{}
		w.retired = w.retired[1:]
		keys = append(keys, c.srcPrefix+old.URI)
		if c.initUnused(old.MapURI) && !slices.Contains(keys, c.srcPrefix+old.MapURI) {
			keys = append(keys, c.srcPrefix+old.MapURI)
		}
	}
	if len(keys) > 0 {
		_ = c.retry("delete", keys[0], func(ctx context.Context) error { return c.p.objs.Delete(ctx, keys...) })
	}
	if cap(w.retired) > 4*c.p.cfg.PlaylistSegments+4 {
		w.retired = append([]playlistSegment(nil), w.retired...)
	}
}

func (c *channel) initUnused(mapURI string) bool {
	w := &c.w
	if w.lastRun != nil && w.lastRun.initURI == mapURI {
		return false
	}
	for _, s := range w.pl.segments {
		if s.MapURI == mapURI {
			return false
		}
	}
	for _, s := range w.retired {
		if s.MapURI == mapURI {
			return false
		}
	}
	return true
}

// cleanupEarlierRuns deletes what earlier processes left under the
// channel prefix, once this process's first playlist has replaced theirs.
// Only objects older than this packager and not of one of its runs go, so
// other writers under the channel prefix are left alone.
func (c *channel) cleanupEarlierRuns() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	infos, err := c.p.objs.List(ctx, c.prefix)
	if err != nil {
		c.log.Warn("listing earlier objects failed", "key", c.prefix, "error", err)
		return
	}
	var del []string
	for _, oi := range infos {
		rel := strings.TrimPrefix(oi.Key, c.prefix)
		// Objects written since this process started belong to its
		// renditions (this one's or another's): only older ones go.
		if rel == "index.m3u8" || rel == c.rendition+"/index.m3u8" || !oi.ModTime.Before(c.p.started) {
			continue
		}
		if dir, file := path.Split(rel); dir == c.rendition+"/" && c.ownFile(file) {
			continue
		}
		del = append(del, oi.Key)
	}
	if len(del) == 0 {
		return
	}
	if err := c.retry("delete", c.prefix, func(ctx context.Context) error { return c.p.objs.Delete(ctx, del...) }); err == nil {
		c.log.Info("deleted objects of earlier runs", "count", len(del))
	}
}

func (c *channel) ownFile(file string) bool {
	for id := range c.w.runs {
		if file == "init-"+id+".mp4" || strings.HasPrefix(file, id+"-") {
			return true
		}
	}
	return false
}

func (c *channel) put(key string, data []byte) error {
	return c.retry("put", key, func(ctx context.Context) error {
		return c.p.objs.Put(ctx, key, bytes.NewReader(data), int64(len(data)), contentType(key))
	})
}

// Store retries. While the channel runs, a write is retried until the
// store takes it, with back-off doubling up to storeMaxBackoff: an object
// store that is down for a while (MinIO restarting) costs late segments,
// not lost ones — they wait in the bounded queue, and the playlist moves
// on without a hole once the store is back. When the queue overflows, the
// oldest waiting segments are dropped (enqueueLocked), so memory stays
// bounded. While shutting down, a write gets storeAttempts tries at most.
const (
	storeAttempts   = 4
	storeBackoff    = 100 * time.Millisecond
	storeMaxBackoff = 2 * time.Second
	storeOpTimeout  = 10 * time.Second
)

func (c *channel) retry(op, key string, f func(context.Context) error) error {
	var err error
	backoff := storeBackoff
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), storeOpTimeout)
		err = f(ctx)
		cancel()
		if err == nil {
			if attempt > 1 {
				c.log.Warn("store "+op+" succeeded after retries: the store is back", "key", key, "attempts", attempt)
			}
			return nil
		}
		c.mu.Lock()
		stopping := c.stopping
		c.mu.Unlock()
		if (stopping || op != "put") && attempt >= storeAttempts {
			break
		}
		if attempt == storeAttempts {
			c.log.Error("store "+op+" keeps failing: segments wait in memory until it answers", "key", key, "error", err)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, storeMaxBackoff)
	}
	c.log.Error("store "+op+" failed", "key", key, "attempts", storeAttempts, "error", err)
	c.mu.Lock()
	c.stats.Errors++
	c.mu.Unlock()
	c.p.met.errors.WithLabelValues(c.name).Inc()
	return err
}

func contentType(key string) string {
	switch path.Ext(key) {
	case ".m3u8":
		return "application/vnd.apple.mpegurl"
	case ".m4s":
		return "video/iso.segment"
	case ".mp4":
		return "video/mp4"
	}
	return "application/octet-stream"
}

// reader is the live.Reader of one publication. WriteUnit runs on the
// publisher goroutine and does CPU work only: segmenting and queueing.
type reader struct {
	c   *channel
	run *run

	mu       sync.Mutex
	seg      *segmenter
	closed   bool
	anchored bool

	queuedOne bool // a segment of this run has been queued: the anchor is final

	dropCount  int // since the last drop log line
	dropLogged time.Time
	dropReason string
}

// dropLogEvery rate-limits the log line about unusable units: a broken
// encoder can send thousands per second.
const dropLogEvery = 10 * time.Second

func (r *reader) WriteUnit(u *media.Unit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || u == nil {
		return
	}
	if !r.anchored {
		r.anchored = true
		r.run.anchorWall = u.Received
		if r.run.anchorWall.IsZero() {
			r.run.anchorWall = time.Now()
		}
		r.run.anchorPTS = u.PTS
	} else if !r.queuedOne && !u.Received.IsZero() {
		// Ingest may hand over the first seconds in a burst (the RTMP
		// library probes 2 s of media before it reports the tracks), so
		// the first unit's arrival is late. Until the first segment is
		// queued, take the earliest wall clock any unit implies for the
		// start; the queue's mutex publishes the final value to the writer.
		if w := u.Received.Add(-(u.PTS - r.run.anchorPTS)); w.Before(r.run.anchorWall) {
			r.run.anchorWall = w
		}
	}
	segs, drop := r.seg.push(u)
	if drop != "" {
		r.dropped(drop)
	}
	if len(segs) > 0 {
		r.c.mu.Lock()
		for _, seg := range segs {
			r.c.enqueueLocked(job{run: r.run, seg: seg})
		}
		r.queuedOne = true
		r.c.mu.Unlock()
	}
}

func (r *reader) dropped(reason string) {
	r.c.p.met.dropped.WithLabelValues(r.c.name, reason).Inc()
	// Joining mid-GOP is normal, not worth a log line or an error count.
	if reason == dropBeforeKeyframe {
		return
	}
	r.c.mu.Lock()
	r.c.stats.DroppedUnits++
	r.c.mu.Unlock()
	r.dropCount++
	r.dropReason = reason
	if now := time.Now(); now.Sub(r.dropLogged) >= dropLogEvery {
		r.c.log.Warn("dropped unusable units", "run", r.run.id, "count", r.dropCount, "reason", reason)
		r.dropLogged = now
		r.dropCount = 0
	}
}

// Close is called by the hub when the publication ends.
func (r *reader) Close() { r.finish() }

// finish flushes the partial segment, so the playlist holds everything
// that was sent, and starts the grace period before ENDLIST.
func (r *reader) finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	seg := r.seg.flush()
	r.seg = nil
	if r.dropCount > 0 {
		r.c.log.Warn("dropped unusable units", "run", r.run.id, "count", r.dropCount, "reason", r.dropReason)
	}

	c := r.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if seg != nil {
		c.enqueueLocked(job{run: r.run, seg: seg})
	}
	if c.reader == r {
		c.reader = nil
		if !c.closing {
			gen := c.gen
			c.timer = time.AfterFunc(c.p.cfg.EndGrace, func() { c.graceExpired(gen) })
		}
	}
	c.log.Info("publication ended", "run", r.run.id)
}
