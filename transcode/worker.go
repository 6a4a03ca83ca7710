package transcode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamd/streamd/live"
	"github.com/streamd/streamd/media"
)

// Sink receives one rendition. The packager implements it (one writer per
// rendition). Calls for one sink come from one goroutine, in order:
// Start, WriteUnit…, then Start again after every ffmpeg restart, and
// Close once at the end.
type Sink interface {
	// Start announces a run's tracks (H.264 video with its SPS/PPS, then
	// AAC audio when the publication has audio) before the run's first
	// unit. restarted is true when ffmpeg was restarted after a failure:
	// the timeline has a gap and the encoder state is new, so the packager
	// should start a new init segment after an EXT-X-DISCONTINUITY.
	Start(tracks []*media.Track, restarted bool)
	// WriteUnit delivers one access unit. PTS/DTS are on the publication's
	// timeline (the same as the source rendition's), so renditions and the
	// source share segment boundaries.
	WriteUnit(u *media.Unit)
	// Close ends the rendition (the publication ended or the worker was
	// closed).
	Close()
}

// LiveConfig configures a LiveWorker.
type LiveConfig struct {
	// FFmpegPath is transcode.ffmpeg_path ("" = ffmpeg on PATH).
	FFmpegPath string
	// Tracks are the publication's tracks (live.Stream.Tracks).
	Tracks []*media.Track
	// Plan is Plan(ladder, source); only its encoded rungs concern ffmpeg.
	Plan  []PlannedRung
	Audio Audio
	// Encoder defaults to X264.
	Encoder Encoder
	// SegmentDuration is where keyframes are forced (live.segment_duration).
	SegmentDuration time.Duration
	// Sinks has one sink per encoded rung, in Encoded(Plan) order.
	Sinks []Sink
	// QueueSize bounds the units waiting for ffmpeg (default 1024, about
	// 10 s of 30 fps video with AAC). When full, units are dropped, never
	// the publisher blocked.
	QueueSize int
	// KillGrace: SIGTERM → SIGKILL delay, and how long Close lets ffmpeg
	// flush (default 5s).
	KillGrace time.Duration
	// Back-off of the supervisor (defaults in Supervisor).
	MinBackoff, MaxBackoff time.Duration
	// OnProgress, if set, gets every progress report (metrics).
	OnProgress func(Progress)
	// SlowReports overrides the progress reports before FallingBehind.
	SlowReports int
	Log         *slog.Logger
}

// WorkerStats are counters for metrics and the API.
type WorkerStats struct {
	// Dropped units because ffmpeg did not keep up (queue full), and the
	// ones skipped afterwards until the next keyframe.
	Dropped int64
	// Restarts of ffmpeg after failures.
	Restarts int64
	// LastError is the last failure of ffmpeg ("" if none).
	LastError string
	Progress  Progress
}

// LiveWorker transcodes one publication: it is a live.Reader whose units
// go, muxed as MPEG-TS, to one supervised ffmpeg, whose renditions come
// back demuxed into the Sinks.
type LiveWorker struct {
	cfg    LiveConfig
	log    *slog.Logger
	ffmpeg string
	args   []string
	n      int
	video  *media.Track
	audio  *media.Track

	// publisher side (WriteUnit, Close)
	mu        sync.Mutex
	closed    bool
	queue     chan *media.Unit
	skipToKey bool // after a drop: drop video until the next keyframe
	watchdog  *time.Timer

	cancel context.CancelFunc
	sup    *Supervisor
	done   chan struct{}

	firstRun     chan struct{} // closed when the first run can take input
	firstRunOnce sync.Once

	runMu   sync.Mutex
	cur     *run // the run the feeder writes to; nil between runs
	prev    *run
	ending  bool
	dropped atomic.Int64

	statMu   sync.Mutex
	lastErr  string
	progress Progress
}

var _ live.Reader = (*LiveWorker)(nil)

// run is one ffmpeg process and its pipes.
type run struct {
	inst    *Instance
	stdin   *os.File
	mux     *tsMuxer
	readers sync.WaitGroup

	// Written by the feeder before the first unit reaches ffmpeg; read
	// by the demuxers once ffmpeg has output something.
	baseMu  sync.Mutex
	base    timeBase
	fed     bool // first keyframe written
	broken  bool // stdin write failed: ffmpeg is gone
	stdinMu sync.Mutex
}

func (r *run) timeBase() timeBase {
	r.baseMu.Lock()
	defer r.baseMu.Unlock()
	return r.base
}

// NewLiveWorker checks the configuration, finds ffmpeg and starts the
// worker. Attach it to the stream with Stream.AddReader.
func NewLiveWorker(cfg LiveConfig) (*LiveWorker, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Encoder == nil {
		cfg.Encoder = X264{}
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = 5 * time.Second
	}
	video, audio := pickTracks(cfg.Tracks)
	if video == nil {
		return nil, ErrNoVideo
	}
	n := len(Encoded(cfg.Plan))
	if n == 0 {
		return nil, errors.New("the plan has no rung to encode")
	}
	if len(cfg.Sinks) != n {
		return nil, fmt.Errorf("%d sinks for %d encoded rungs", len(cfg.Sinks), n)
	}
	path, err := FindFFmpeg(cfg.FFmpegPath)
	if err != nil {
		return nil, err
	}
	w := &LiveWorker{
		cfg:      cfg,
		log:      cfg.Log.With("component", "transcode"),
		ffmpeg:   path,
		n:        n,
		video:    video,
		audio:    audio,
		queue:    make(chan *media.Unit, cfg.QueueSize),
		done:     make(chan struct{}),
		firstRun: make(chan struct{}),
	}
	w.args = Args(cfg.Plan, cfg.Audio, cfg.Encoder, ArgsOptions{SegmentDuration: cfg.SegmentDuration, NoAudio: audio == nil})
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.sup = &Supervisor{
		Start:      w.startRun,
		Log:        w.log,
		MinBackoff: cfg.MinBackoff,
		MaxBackoff: cfg.MaxBackoff,
		OnExit: func(err error) {
			w.statMu.Lock()
			w.lastErr = err.Error()
			w.statMu.Unlock()
		},
	}
	feederDone := make(chan struct{})
	supDone := make(chan struct{})
	go func() {
		defer close(feederDone)
		// Units queue up while the first ffmpeg starts (the queue is
		// sized for it); after that, units arriving between runs are
		// dropped, since they fall in the restart's gap anyway.
		select {
		case <-w.firstRun:
		case <-supDone:
		}
		w.feed(ctx)
	}()
	go func() {
		defer close(supDone)
		if err := w.sup.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			w.log.Error("transcoding stopped", "err", err)
		}
	}()
	go func() {
		defer close(w.done)
		<-feederDone
		w.finish(supDone)
		w.endRun()
		w.mu.Lock()
		if w.watchdog != nil {
			w.watchdog.Stop()
		}
		w.mu.Unlock()
		for _, s := range cfg.Sinks {
			s.Close()
		}
	}()
	return w, nil
}

// WriteUnit queues u for ffmpeg. It never blocks: when ffmpeg falls
// behind and the queue is full, the unit is dropped (counted, logged),
// and so is the following video until the next keyframe, so ffmpeg sees
// a clean gap instead of pictures whose references are missing.
func (w *LiveWorker) WriteUnit(u *media.Unit) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if u.Track == w.video && w.skipToKey {
		if !u.RandomAccess {
			w.dropped.Add(1)
			return
		}
		w.skipToKey = false
	}
	select {
	case w.queue <- u:
	default:
		if w.dropped.Add(1)%100 == 1 {
			w.log.Warn("ffmpeg is not keeping up: dropping units", "dropped", w.dropped.Load())
		}
		if u.Track == w.video {
			w.skipToKey = true
		}
	}
}

// Close ends the input: ffmpeg gets EOF, flushes and exits, the sinks are
// closed. It does not wait (it runs on the publisher's goroutine); Wait
// does.
func (w *LiveWorker) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		close(w.queue)
		// Watchdog: an ffmpeg that neither reads its input nor exits would
		// hold the feeder forever; cancelling kills it and unblocks all.
		w.watchdog = time.AfterFunc(2*w.cfg.KillGrace, w.cancel)
	}
}

// Wait blocks until ffmpeg is gone and every sink is closed.
func (w *LiveWorker) Wait() { <-w.done }

// Stats returns the worker's counters.
func (w *LiveWorker) Stats() WorkerStats {
	w.statMu.Lock()
	defer w.statMu.Unlock()
	return WorkerStats{Dropped: w.dropped.Load(), Restarts: w.sup.Restarts(), LastError: w.lastErr, Progress: w.progress}
}

// Pid is the current ffmpeg's process (and group) id, 0 between runs.
func (w *LiveWorker) Pid() int {
	w.runMu.Lock()
	defer w.runMu.Unlock()
	if w.cur == nil {
		return 0
	}
	return w.cur.inst.Pid()
}

// feedBatch is how long the feeder may hold muxed units before handing
// them to ffmpeg in one write (a variable for the tests and benchmarks).
// Writing every unit as it comes (~80 writes a second for 30 fps video
// with AAC) wakes ffmpeg's reader and decoder that often; batches let it
// work in bursts, closer to how it runs on a file. A video keyframe is
// written at once with what preceded it, so a run starts and segment
// boundaries reach the encoders without delay; the batch only bounds the
// latency added to the pictures in between.
var feedBatch = 100 * time.Millisecond

// feed writes queued units to the current run until the queue is closed.
func (w *LiveWorker) feed(ctx context.Context) {
	// pending is the run whose muxer holds units not yet written to
	// ffmpeg; the timer bounds how long they wait.
	var pending *run
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	flush := func() {
		if pending != nil {
			w.flushRun(pending)
			pending = nil
			timer.Stop()
		}
	}
	defer flush()
	for {
		var u *media.Unit
		var ok bool
		if pending != nil {
			select {
			case u, ok = <-w.queue:
			case <-timer.C:
				r := pending
				pending = nil
				w.flushRun(r)
				continue
			}
		} else {
			u, ok = <-w.queue
		}
		if !ok {
			return
		}
		w.runMu.Lock()
		r := w.cur
		w.runMu.Unlock()
		if r != pending {
			flush()
		}
		if r == nil || ctx.Err() != nil {
			continue // between runs: the gap becomes a discontinuity
		}
		r.baseMu.Lock()
		if r.broken {
			r.baseMu.Unlock()
			continue
		}
		if !r.fed {
			// A run starts on a keyframe: the decoder cannot start
			// anywhere else, and the demuxers calibrate on it.
			if u.Track != w.video || !u.RandomAccess {
				r.baseMu.Unlock()
				continue
			}
			r.fed = true
			r.base = timeBase{pubPTS: u.PTS, received: u.Received}
			if r.base.received.IsZero() {
				r.base.received = time.Now()
			}
		}
		r.baseMu.Unlock()
		r.stdinMu.Lock()
		err := r.mux.write(u)
		r.stdinMu.Unlock()
		if err != nil {
			w.inputBroken(r, err)
			continue
		}
		switch {
		case feedBatch <= 0 || u.Track == w.video && u.RandomAccess:
			pending = r
			flush()
		case pending == nil:
			pending = r
			timer.Reset(feedBatch)
		}
	}
}

// flushRun writes r's buffered units to ffmpeg.
func (w *LiveWorker) flushRun(r *run) {
	if r == nil {
		return
	}
	r.stdinMu.Lock()
	err := r.mux.flush()
	r.stdinMu.Unlock()
	if err != nil {
		w.inputBroken(r, err)
	}
}

func (w *LiveWorker) inputBroken(r *run, err error) {
	r.baseMu.Lock()
	r.broken = true
	r.baseMu.Unlock()
	w.log.Debug("ffmpeg input closed", "err", err)
}

// finish runs once the queue is drained: it closes ffmpeg's input so it
// flushes and exits 0, and cancels the supervisor if that takes longer
// than the grace (or if no ffmpeg is running to flush).
func (w *LiveWorker) finish(supDone <-chan struct{}) {
	w.runMu.Lock()
	w.ending = true
	r := w.cur
	w.runMu.Unlock()
	if r != nil {
		r.stdinMu.Lock()
		r.stdin.Close()
		r.stdinMu.Unlock()
		t := time.NewTimer(w.cfg.KillGrace)
		defer t.Stop()
		select {
		case <-supDone:
		case <-t.C:
			w.log.Warn("ffmpeg did not finish after its input ended; stopping it")
		}
	}
	w.cancel()
	<-supDone
}

// endRun closes the current run's pipes and waits for its demuxers, so a
// new run's units never overtake the old one's in a sink.
func (w *LiveWorker) endRun() {
	w.runMu.Lock()
	r := w.cur
	w.cur = nil
	w.runMu.Unlock()
	if r == nil {
		return
	}
	// The process first: a feeder blocked writing to a stuck ffmpeg gets
	// EPIPE and lets go of stdinMu.
	r.inst.Close()
	r.stdinMu.Lock()
	r.stdin.Close()
	r.stdinMu.Unlock()
	r.readers.Wait()
}

// startRun is the supervisor's StartFunc: fresh pipes, a fresh TS muxer
// and one demuxer per rendition for every ffmpeg process.
func (w *LiveWorker) startRun(ctx context.Context, attempt int) (*Instance, error) {
	w.endRun()
	w.runMu.Lock()
	ending := w.ending
	w.runMu.Unlock()
	if ending {
		// The input is over: nothing to restart for.
		w.cancel()
		return nil, context.Canceled
	}

	var childFiles, parentFiles []*os.File
	fail := func(err error) (*Instance, error) {
		closeAll(childFiles)
		closeAll(parentFiles)
		return nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	parentFiles = append(parentFiles, inW)
	outs := make([]*os.File, w.n)
	for i := range w.n + 1 { // renditions, then progress
		pr, pw, err := os.Pipe()
		if err != nil {
			closeAll([]*os.File{inR})
			return fail(err)
		}
		childFiles = append(childFiles, pw)
		parentFiles = append(parentFiles, pr)
		if i < w.n {
			outs[i] = pr
		}
	}
	progR := parentFiles[len(parentFiles)-1]

	mux, err := newTSMuxer(inW, w.video, w.audio)
	if err != nil {
		closeAll([]*os.File{inR})
		return fail(err)
	}
	log := w.log.With("attempt", attempt)
	inst, err := StartInstance(ctx, InstanceConfig{
		Path: w.ffmpeg, Args: w.args, Stdin: inR, ExtraFiles: childFiles,
		KillGrace: w.cfg.KillGrace, Log: log,
	})
	inR.Close() // the child has its copy
	childFiles = nil
	if err != nil {
		return fail(err)
	}
	r := &run{inst: inst, stdin: inW, mux: mux}
	restarted := attempt > 0
	for i, pr := range outs {
		sink := w.cfg.Sinks[i]
		r.readers.Add(1)
		go func() {
			defer r.readers.Done()
			defer pr.Close()
			// Large reads: one syscall takes whatever ffmpeg wrote (the
			// TS reader asks for 7 packets at a time), without waiting
			// for more.
			d := &tsDemuxer{r: bufio.NewReaderSize(pr, 256*1024), base: r.timeBase, maxEarly: 256,
				start: func(tracks []*media.Track) { sink.Start(tracks, restarted) },
				write: sink.WriteUnit}
			if err := d.run(); err != nil {
				log.Warn("rendition output unreadable", "rendition", i, "err", err)
			}
		}()
	}
	r.readers.Add(1)
	go func() {
		defer r.readers.Done()
		defer progR.Close()
		behind := false
		_ = ReadProgress(progR, w.cfg.SlowReports, func(p Progress) {
			w.statMu.Lock()
			w.progress = p
			w.statMu.Unlock()
			if p.FallingBehind != behind {
				behind = p.FallingBehind
				if behind {
					log.Warn("ffmpeg is falling behind real time", "speed", p.Speed)
				} else {
					log.Info("ffmpeg caught up", "speed", p.Speed)
				}
			}
			if w.cfg.OnProgress != nil {
				w.cfg.OnProgress(p)
			}
		})
	}()
	w.runMu.Lock()
	w.cur = r
	w.runMu.Unlock()
	w.firstRunOnce.Do(func() { close(w.firstRun) })
	log.Info("ffmpeg started", "pid", inst.Pid(), "renditions", w.n, "encoder", w.cfg.Encoder.Name())
	return inst, nil
}
