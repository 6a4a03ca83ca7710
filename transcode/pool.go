package transcode

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamd/streamd/live"
	"github.com/streamd/streamd/media"
)

// SinkFactory makes the output of one rendition of a channel (the
// packager's Rendition writer). Expect announces a publication's
// renditions before their first unit, so the master playlist can wait
// for all of them.
type SinkFactory interface {
	NewSink(channel, rendition string) Sink
	Expect(channel string, renditions []string)
}

// Rendition names the pool gives the packager.
const (
	SourceRendition = "source" // the published stream, not re-encoded
	AudioRendition  = "audio"  // the one shared AAC encode of a ladder
)

// trackSplit sends a rendition's video to video and its audio to audio
// (nil: dropped). Laddered channels carry their sound once, in a shared
// audio rendition, instead of muxed into every video rendition: players
// switch video without touching the audio, and the bytes are stored once.
// It is also a live.Reader, for the source rendition.
type trackSplit struct{ video, audio Sink }

func (t trackSplit) Start(tracks []*media.Track, restarted bool) {
	var v, a []*media.Track
	for _, tr := range tracks {
		if tr.Codec.IsVideo() {
			v = append(v, tr)
		} else {
			a = append(a, tr)
		}
	}
	if len(v) > 0 {
		t.video.Start(v, restarted)
	}
	if t.audio != nil && len(a) > 0 {
		t.audio.Start(a, restarted)
	}
}

func (t trackSplit) WriteUnit(u *media.Unit) {
	if u.Track.Codec.IsVideo() {
		t.video.WriteUnit(u)
	} else if t.audio != nil {
		t.audio.WriteUnit(u)
	}
}

func (t trackSplit) Close() {
	t.video.Close()
	if t.audio != nil {
		t.audio.Close()
	}
}

// PoolConfig configures a Pool.
type PoolConfig struct {
	FFmpegPath string
	Encoder    Encoder
	// Ladders by name, and the ladder each channel uses ("" or absent:
	// the published stream only).
	Ladders       map[string]Ladder
	ChannelLadder map[string]string
	// MaxWorkers bounds concurrent live transcodes (at least 1).
	MaxWorkers int
	// RefuseOverCapacity refuses a publish beyond MaxWorkers; otherwise
	// the channel falls back to its source rendition.
	RefuseOverCapacity bool
	SegmentDuration    time.Duration
	// Sinks receive the encoded renditions; Source packages the published
	// stream as is (the packager).
	Sinks  SinkFactory
	Source live.Listener
	Log    *slog.Logger
	// Registerer, if set, gets the worker metrics.
	Registerer prometheus.Registerer
	// Worker tuning for tests (zero: defaults).
	MinBackoff, MaxBackoff time.Duration
}

// ErrOverCapacity is returned by Admit when every live worker is busy and
// the config says to refuse.
var ErrOverCapacity = errors.New("every live transcoder is busy (transcode.max_live_workers); try again later")

// Mode is how a channel is being served.
type Mode string

// Modes.
const (
	ModePassthrough Mode = "passthrough" // no ladder
	ModeTranscode   Mode = "transcode"
	ModeFallback    Mode = "fallback" // has a ladder, got passthrough (pool full, audio-only, ffmpeg failed)
)

// ChannelStatus is a channel's transcoding state for the API.
type ChannelStatus struct {
	Channel       string   `json:"channel"`
	Mode          Mode     `json:"mode"`
	Reason        string   `json:"reason,omitempty"`
	Renditions    []string `json:"renditions,omitempty"`
	Speed         float64  `json:"speed,omitempty"`
	FallingBehind bool     `json:"falling_behind,omitempty"`
	Restarts      int64    `json:"restarts,omitempty"`
	LastError     string   `json:"last_error,omitempty"`
}

// Pool decides, per publication, between passthrough and a live ladder,
// and bounds the ladders running at once. It is the hub's listener for
// packaging: it forwards to Source whatever is packaged as published.
type Pool struct {
	cfg PoolConfig
	log *slog.Logger
	met *poolMetrics

	mu      sync.Mutex
	active  int
	status  map[string]*ChannelStatus
	workers map[*LiveWorker]struct{}
	closed  bool
}

var (
	_ live.Listener = (*Pool)(nil)
	_ live.Admitter = (*Pool)(nil)
)

// NewPool returns a pool; MaxWorkers below 1 counts as 1.
func NewPool(cfg PoolConfig) *Pool {
	if cfg.MaxWorkers < 1 {
		cfg.MaxWorkers = 1
	}
	if cfg.Encoder == nil {
		cfg.Encoder = X264{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Pool{
		cfg:     cfg,
		log:     cfg.Log.With("component", "transcode"),
		met:     newPoolMetrics(cfg.Registerer),
		status:  map[string]*ChannelStatus{},
		workers: map[*LiveWorker]struct{}{},
	}
}

// Admit refuses a publication the pool cannot transcode when the config
// says so; the hub asks before accepting the publisher.
func (p *Pool) Admit(channel string, tracks []*media.Track) error {
	if !p.cfg.RefuseOverCapacity || p.cfg.ChannelLadder[channel] == "" {
		return nil
	}
	if _, err := SourceInfoFromTracks(tracks); err != nil {
		return nil // audio-only: passthrough, no worker needed
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active >= p.cfg.MaxWorkers {
		p.log.Warn("publish refused: every live transcoder is busy", "channel", channel, "max_live_workers", p.cfg.MaxWorkers)
		return ErrOverCapacity
	}
	return nil
}

// OnPublish starts the channel's ladder, or passes the stream through.
func (p *Pool) OnPublish(s *live.Stream) {
	passthrough := func(st *ChannelStatus) {
		p.setStatus(st)
		p.cfg.Sinks.Expect(s.Channel, []string{SourceRendition})
		p.cfg.Source.OnPublish(s)
	}
	name := p.cfg.ChannelLadder[s.Channel]
	if name == "" {
		passthrough(&ChannelStatus{Channel: s.Channel, Mode: ModePassthrough, Renditions: []string{SourceRendition}})
		return
	}
	log := p.log.With("channel", s.Channel, "ladder", name)
	fallback := func(reason string) {
		log.Warn("ladder not used: passing the published stream through", "reason", reason)
		passthrough(&ChannelStatus{Channel: s.Channel, Mode: ModeFallback, Reason: reason, Renditions: []string{SourceRendition}})
	}
	src, err := SourceInfoFromTracks(s.Tracks)
	if err != nil {
		fallback("the publication has no video to transcode")
		return
	}
	plan := Plan(p.cfg.Ladders[name], src)
	enc := Encoded(plan)
	hasSource := len(enc) < len(plan)
	if len(enc) == 0 {
		passthrough(&ChannelStatus{Channel: s.Channel, Mode: ModePassthrough, Renditions: []string{SourceRendition}})
		return
	}
	hasAudio := false
	for _, t := range s.Tracks {
		hasAudio = hasAudio || !t.Codec.IsVideo()
	}
	var renditions []string
	for _, r := range plan {
		if r.Source {
			renditions = append(renditions, SourceRendition)
		} else {
			renditions = append(renditions, r.Name)
		}
	}
	if hasAudio {
		renditions = append(renditions, AudioRendition)
	}

	p.mu.Lock()
	if p.closed || p.active >= p.cfg.MaxWorkers {
		p.mu.Unlock()
		fallback(fmt.Sprintf("every live transcoder is busy (transcode.max_live_workers = %d)", p.cfg.MaxWorkers))
		return
	}
	p.active++
	p.met.active.Set(float64(p.active))
	p.mu.Unlock()

	sinks := make([]Sink, len(enc))
	for i, r := range enc {
		split := trackSplit{video: p.cfg.Sinks.NewSink(s.Channel, r.Name)}
		if hasAudio && i == 0 {
			split.audio = p.cfg.Sinks.NewSink(s.Channel, AudioRendition)
		}
		sinks[i] = split
	}
	st := &ChannelStatus{Channel: s.Channel, Mode: ModeTranscode, Renditions: renditions}
	var w *LiveWorker
	w, err = NewLiveWorker(LiveConfig{
		FFmpegPath:      p.cfg.FFmpegPath,
		Tracks:          s.Tracks,
		Plan:            plan,
		Audio:           p.cfg.Ladders[name].Audio,
		Encoder:         p.cfg.Encoder,
		SegmentDuration: p.cfg.SegmentDuration,
		Sinks:           sinks,
		MinBackoff:      p.cfg.MinBackoff,
		MaxBackoff:      p.cfg.MaxBackoff,
		Log:             log,
		OnProgress: func(pr Progress) {
			p.met.speed.WithLabelValues(s.Channel).Set(pr.Speed)
			p.met.fps.WithLabelValues(s.Channel).Set(pr.FPS)
			p.met.dropFrames.WithLabelValues(s.Channel).Set(float64(pr.DropFrames))
			p.met.dupFrames.WithLabelValues(s.Channel).Set(float64(pr.DupFrames))
			behind := 0.0
			if pr.FallingBehind {
				behind = 1
			}
			p.met.behind.WithLabelValues(s.Channel).Set(behind)
			p.mu.Lock()
			if pr.FallingBehind && !st.FallingBehind {
				log.Warn("live transcoder is falling behind real time: use fewer rungs, a faster preset or a GPU encoder", "speed", pr.Speed)
			}
			st.Speed, st.FallingBehind = pr.Speed, pr.FallingBehind
			if w != nil {
				ws := w.Stats()
				if ws.Restarts > st.Restarts {
					p.met.restarts.WithLabelValues(s.Channel).Add(float64(ws.Restarts - st.Restarts))
				}
				st.Restarts, st.LastError = ws.Restarts, ws.LastError
			}
			p.mu.Unlock()
		},
	})
	if err != nil {
		p.release()
		log.Error("cannot start the live transcoder", "err", err.Error())
		fallback(err.Error())
		return
	}
	p.cfg.Sinks.Expect(s.Channel, renditions)
	if hasSource {
		// The published video as is; its sound comes from the audio rendition.
		src := trackSplit{video: p.cfg.Sinks.NewSink(s.Channel, SourceRendition)}
		src.Start(s.Tracks, false)
		s.AddReader(src)
	}
	p.mu.Lock()
	p.workers[w] = struct{}{}
	p.mu.Unlock()
	p.setStatus(st)
	p.met.state.WithLabelValues(s.Channel).Set(1)
	log.Info("live transcoder started", "renditions", renditions, "encoder", p.cfg.Encoder.Name())
	s.AddReader(w)
	go func() {
		w.Wait()
		p.met.state.WithLabelValues(s.Channel).Set(0)
		p.mu.Lock()
		delete(p.workers, w)
		p.mu.Unlock()
		p.release()
	}()
}

func (p *Pool) release() {
	p.mu.Lock()
	p.active--
	p.met.active.Set(float64(p.active))
	p.mu.Unlock()
}

func (p *Pool) setStatus(st *ChannelStatus) {
	p.mu.Lock()
	p.status[st.Channel] = st
	p.mu.Unlock()
}

// Status lists the channels published since start, by name.
func (p *Pool) Status() []ChannelStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]ChannelStatus, 0, len(p.status))
	for _, st := range p.status {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Channel < out[j].Channel })
	return out
}

// Close stops every worker (their ffmpeg process groups included) and
// waits for them.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	ws := make([]*LiveWorker, 0, len(p.workers))
	for w := range p.workers {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	for _, w := range ws {
		w.Close()
	}
	for _, w := range ws {
		w.Wait()
	}
}

type poolMetrics struct {
	active     prometheus.Gauge
	state      *prometheus.GaugeVec
	speed      *prometheus.GaugeVec
	fps        *prometheus.GaugeVec
	dropFrames *prometheus.GaugeVec
	dupFrames  *prometheus.GaugeVec
	behind     *prometheus.GaugeVec
	restarts   *prometheus.CounterVec
}

func newPoolMetrics(reg prometheus.Registerer) *poolMetrics {
	g := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"channel"})
	}
	m := &poolMetrics{
		active:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "streamd_transcode_live_workers", Help: "Live transcoders running."}),
		state:      g("streamd_transcode_worker_running", "1 while the channel's live transcoder runs."),
		speed:      g("streamd_transcode_speed", "ffmpeg speed (1.0 = real time)."),
		fps:        g("streamd_transcode_fps", "Frames per second ffmpeg encodes."),
		dropFrames: g("streamd_transcode_dropped_frames", "Frames ffmpeg dropped (current run)."),
		dupFrames:  g("streamd_transcode_duplicated_frames", "Frames ffmpeg duplicated (current run)."),
		behind:     g("streamd_transcode_falling_behind", "1 when the transcoder has stayed below real time."),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "streamd_transcode_restarts_total",
			Help: "ffmpeg restarts after failures."}, []string{"channel"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.active, m.state, m.speed, m.fps, m.dropFrames, m.dupFrames, m.behind, m.restarts} {
			reg.MustRegister(c)
		}
	}
	return m
}
