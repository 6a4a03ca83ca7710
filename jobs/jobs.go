// Package jobs is the durable VOD job queue: River
// (github.com/riverqueue/river) on SQLite by default (riversqlite over
// modernc.org/sqlite) and on PostgreSQL in production (riverpgxv5), with
// one job kind, TranscodeArgs, whose worker turns an uploaded master into
// the /vod/{content}/ tree and keeps the content item's encoding status
// up to date.
//
// A job's life, as the content item shows it:
//
//	queued → processing (percent, throttled) → ready
//	                                        ↘ failed (one-line reason)
//
// Bad input (the vod error codes a person has to fix: empty, not media,
// truncated, no streams, unsupported codec, invalid job, and ffmpeg or QA
// failing on an input that probed fine) fails at once, without retry
// (river.JobCancel). Anything else — the object store or the database
// down, a missing tool, the process stopping — is returned to River, which
// retries with its exponential back-off (attempt⁴ seconds) up to
// MaxAttempts; the item is queued again meanwhile (its reason says why),
// and failed after the last attempt.
//
// Durability is River's: a job is a row in the database. A process that
// stops gracefully (Queue.Stop) cancels its running jobs, which River
// schedules again, so the next start (this node or another sharing the
// PostgreSQL queue) runs them. A process that dies mid-job leaves the row
// running: streamd's own rescuer (liveness.go) runs it again once its
// worker has stopped proving it is alive for Config.RescueAfter — River's
// rescuer cannot tell a dead encode from a long one.
package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/transcode"
	"github.com/streamd/streamd/vod"
)

// QueueName is the River queue VOD jobs run on.
const QueueName = "vod"

// TranscodeArgs is the one job kind: transcode the master of a content item.
type TranscodeArgs struct {
	ContentID string `json:"content_id"`
	// MasterKey is the master's object key (masters/{upload}/{filename}).
	MasterKey string `json:"master_key"`
	// Job is the job spec (our JSON format or an AWS MediaConvert job, as
	// vod.ParseJob reads it); empty means vod.DefaultJob.
	Job json.RawMessage `json:"job,omitempty"`
}

// Kind implements river.JobArgs.
func (TranscodeArgs) Kind() string { return "vod_transcode" }

// InsertOpts puts every transcode job on the VOD queue.
func (TranscodeArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: QueueName} }

// Meta is what the worker needs of the metadata store.
type Meta interface {
	GetContent(ctx context.Context, id string) (store.Content, error)
	UpdateEncoding(ctx context.Context, id string, e store.Encoding) error
}

// Config configures a Queue. Objects and Meta are required.
type Config struct {
	Objects store.Objects
	Meta    Meta
	// WorkDir holds a job's master and output while it runs (as much free
	// space as MaxWorkers masters and their renditions); "" means the
	// system's temporary folder.
	WorkDir string
	// FFmpeg and FFprobe are the binaries; "" means the ones on PATH.
	FFmpeg, FFprobe string
	// Encoder is the H.264 encoder; nil means libx264.
	Encoder transcode.Encoder
	// MaxWorkers is how many jobs run at once on this node
	// (transcode.max_vod_workers); 0 means 1.
	MaxWorkers int
	// MaxAttempts bounds retries of infrastructure failures (default 10:
	// River's back-off then spans about a day).
	MaxAttempts int
	// ProgressEvery throttles the progress written to the content item
	// (default 1 s).
	ProgressEvery time.Duration
	// RescueAfter is how long a running job's worker may go without
	// proving it is alive (it does so every RescueAfter/4) before any
	// started queue sharing the database runs the job again (default 1m;
	// see liveness.go).
	RescueAfter time.Duration
	// PollInterval is how often a node looks for jobs inserted elsewhere
	// (default River's 1 s).
	PollInterval time.Duration
	Log          *slog.Logger

	// beforeTranscode, in tests, runs after the download (a stand-in for
	// a long encode).
	beforeTranscode func(ctx context.Context, attempt int)
}

// client is what Queue uses of a *river.Client[TTx], whatever TTx.
type client interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
	Insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
	JobCancel(ctx context.Context, jobID int64) (*rivertype.JobRow, error)
	JobGet(ctx context.Context, id int64) (*rivertype.JobRow, error)
}

// Queue is a River client with the transcode worker registered.
type Queue struct {
	cfg     Config
	client  client
	log     *slog.Logger
	closeDB func()
	// listJobs finds the non-final jobs of a content item (for Cancel).
	listJobs func(ctx context.Context, contentID string) ([]*rivertype.JobRow, error)
	// pending reports whether any job is waiting or running.
	pending func(ctx context.Context) (bool, error)
	// rescuer runs again the jobs of crashed workers while the client runs.
	rescuer    *rescuer
	stopRescue func()
	// lazy (SQLite, one node) starts the River client only when there is
	// work: even in poll-only mode an idle client polls several times a
	// second, which a live-only server should not pay for.
	lazy bool

	mu       sync.Mutex
	started  bool
	startCtx context.Context
}

func (c *Config) defaults() {
	if c.MaxWorkers <= 0 {
		c.MaxWorkers = 1
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 10
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = time.Second
	}
	if c.RescueAfter <= 0 {
		c.RescueAfter = time.Minute
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// riverConfigFor adapts the config to the driver. SQLite has no
// LISTEN/NOTIFY: River's SQLite listener emulates it by querying a
// notifications table many times a second, which costs an idle server
// ~2.5 % of a core. Poll-only mode drops it; new jobs are then found by
// the fetch poll (PollInterval) — seconds of delay on jobs that take
// minutes — and the one node elects itself leader by polling too.
func riverConfigFor(cfg Config, w *worker, sqlite bool) *river.Config {
	rc := riverConfig(cfg, w)
	rc.PollOnly = sqlite
	return rc
}

// riverConfig leaves River's own rescuer out of VOD jobs: with JobTimeout
// -1 (an encode takes as long as it takes; Stop cancels it) River's
// rescuer never retries a job of this kind, whatever RescueStuckJobsAfter
// says — and it could not do better, since it only knows when an attempt
// started, not whether its worker still runs. A positive JobTimeout would
// have River cancel long encodes. Crashed nodes' jobs are rescued from
// their heartbeats instead (liveness.go).
func riverConfig(cfg Config, w *worker) *river.Config {
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	return &river.Config{
		Queues:            map[string]river.QueueConfig{QueueName: {MaxWorkers: cfg.MaxWorkers}},
		Workers:           workers,
		JobTimeout:        -1,
		MaxAttempts:       cfg.MaxAttempts,
		FetchPollInterval: cfg.PollInterval,
		Logger:            cfg.Log.With("component", "river"),
	}
}

func newWorker(cfg Config) *worker {
	return &worker{cfg: cfg, log: cfg.Log.With("component", "vodjobs")}
}

// wire gives the queue and its worker what they need of the River client.
func wire[TTx any](q *Queue, w *worker, rc *river.Client[TTx]) {
	w.update = rc.JobUpdate
	q.listJobs = func(ctx context.Context, id string) ([]*rivertype.JobRow, error) {
		return listJobs(ctx, rc, id)
	}
	q.pending = func(ctx context.Context) (bool, error) { return anyPending(ctx, rc) }
	q.rescuer = newRescuer(q.cfg, func(ctx context.Context) ([]*rivertype.JobRow, error) { return runningJobs(ctx, rc) },
		rc.Driver().GetExecutor())
}

// OpenSQLite opens (creating when missing) the job database at path — its
// own file, see cmd/streamd/jobs.go for why — and runs River's migrations.
func OpenSQLite(ctx context.Context, path string, cfg Config) (*Queue, error) {
	if err := check(&cfg); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_txlock", "immediate")
	u := url.URL{Scheme: "file", OmitHost: true, Path: path}
	db, err := sql.Open("sqlite", u.String()+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("job queue at %s: %w", path, err)
	}
	// SQLite has one writer; River runs several things at once, so one
	// connection queues them instead of failing with SQLITE_BUSY (the
	// driver's own advice).
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	driver := riversqlite.New(db)
	if err := migrate(ctx, driver); err != nil {
		db.Close()
		return nil, fmt.Errorf("job queue at %s: %w", path, err)
	}
	w := newWorker(cfg)
	rc, err := river.NewClient(driver, riverConfigFor(cfg, w, true))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("job queue at %s: %w", path, err)
	}
	qq := &Queue{cfg: cfg, client: rc, log: cfg.Log, closeDB: func() { db.Close() }}
	wire(qq, w, rc)
	qq.lazy = true
	return qq, nil
}

// OpenPostgres opens a pool on the PostgreSQL URL (the metadata database)
// and runs River's migrations (under River's own lock: nodes starting
// together are fine).
func OpenPostgres(ctx context.Context, dbURL string, cfg Config) (*Queue, error) {
	if err := check(&cfg); err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("job queue: %w", err)
	}
	driver := riverpgxv5.New(pool)
	if err := migrate(ctx, driver); err != nil {
		pool.Close()
		return nil, fmt.Errorf("job queue: %w", err)
	}
	w := newWorker(cfg)
	rc, err := river.NewClient(driver, riverConfigFor(cfg, w, false))
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("job queue: %w", err)
	}
	qq := &Queue{cfg: cfg, client: rc, log: cfg.Log, closeDB: pool.Close}
	wire(qq, w, rc)
	return qq, nil
}

func check(cfg *Config) error {
	if cfg.Objects == nil || cfg.Meta == nil {
		return errors.New("jobs: Objects and Meta are required")
	}
	cfg.defaults()
	return nil
}

// Start starts working jobs — on SQLite only once there is a job to
// work (now, when jobs are left from an earlier run, or at the first
// Enqueue).
func (q *Queue) Start(ctx context.Context) error {
	q.mu.Lock()
	q.startCtx = context.WithoutCancel(ctx)
	q.mu.Unlock()
	if q.lazy {
		pending, err := q.pending(ctx)
		if err != nil {
			return err
		}
		if !pending {
			return nil
		}
	}
	return q.ensureStarted()
}

func (q *Queue) ensureStarted() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started || q.startCtx == nil {
		return nil
	}
	if err := q.client.Start(q.startCtx); err != nil {
		return err
	}
	q.started = true
	q.stopRescue = q.rescuer.start(q.startCtx)
	return nil
}

// Enqueue inserts a transcode job and marks its content item queued. It
// returns the job's id.
func (q *Queue) Enqueue(ctx context.Context, a TranscodeArgs) (int64, error) {
	if a.ContentID == "" || a.MasterKey == "" {
		return 0, errors.New("jobs: ContentID and MasterKey are required")
	}
	res, err := q.client.Insert(ctx, a, nil)
	if err != nil {
		return 0, fmt.Errorf("enqueue transcode of %s: %w", a.ContentID, err)
	}
	if err := q.ensureStarted(); err != nil {
		return res.Job.ID, fmt.Errorf("start the job queue: %w", err)
	}
	if err := q.cfg.Meta.UpdateEncoding(ctx, a.ContentID, store.Encoding{Status: store.EncodingQueued}); err != nil {
		return res.Job.ID, err
	}
	q.log.Info("transcode queued", "component", "vodjobs", "content", a.ContentID, "job", res.Job.ID)
	return res.Job.ID, nil
}

// ErrNoJob is returned by Cancel when the item has no unfinished job.
var ErrNoJob = errors.New("no unfinished job")

// Cancel cancels the unfinished transcode jobs of a content item (River's
// JobCancel: a running one has its context cancelled, then ends
// cancelled) and marks the item failed with reason "cancelled". It
// returns ErrNoJob when there was none, or when the item is ready or failed.
func (q *Queue) Cancel(ctx context.Context, contentID string) error {
	c, err := q.cfg.Meta.GetContent(ctx, contentID)
	if err != nil {
		return err
	}
	if c.EncodingStatus == store.EncodingReady || c.EncodingStatus == store.EncodingFailed {
		// Finished (River may not have recorded its end yet).
		return ErrNoJob
	}
	jobs, err := q.listJobs(ctx, contentID)
	if err != nil {
		return err
	}
	if len(jobs) == 0 {
		return ErrNoJob
	}
	for _, j := range jobs {
		if _, err := q.client.JobCancel(ctx, j.ID); err != nil {
			return fmt.Errorf("cancel job %d: %w", j.ID, err)
		}
	}
	return q.cfg.Meta.UpdateEncoding(ctx, contentID, store.Encoding{Status: store.EncodingFailed, Reason: "cancelled"})
}

// Job returns a job's row (for tests and diagnostics).
func (q *Queue) Job(ctx context.Context, id int64) (*rivertype.JobRow, error) {
	return q.client.JobGet(ctx, id)
}

// Stop stops fetching jobs and waits for the running ones until ctx ends;
// then it cancels them (River runs them again later) and waits for them
// to return. Then it closes the database.
func (q *Queue) Stop(ctx context.Context) error {
	var err error
	q.mu.Lock()
	defer q.mu.Unlock()
	q.startCtx = nil // no lazy start after Stop
	if q.started {
		q.stopRescue()
		if err = q.client.Stop(ctx); err != nil {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err = q.client.StopAndCancel(cctx)
			cancel()
		}
		q.started = false
	}
	if q.closeDB != nil {
		q.closeDB()
		q.closeDB = nil
	}
	return err
}

// permanent reports whether a vod error is the input's (or the job
// spec's) fault: running it again gives the same result.
func permanent(err error) bool {
	switch vod.ErrorCode(err) {
	case vod.CodeEmptyInput, vod.CodeNotMedia, vod.CodeTruncated, vod.CodeNoStreams, vod.CodeUnsupported,
		vod.CodeInvalidJob, vod.CodeTranscode, vod.CodeQA:
		return true
	}
	return false
}

// worker runs TranscodeArgs jobs.
type worker struct {
	river.WorkerDefaults[TranscodeArgs]
	cfg Config
	log *slog.Logger
	// update is the client's JobUpdate: the heartbeat (liveness.go).
	update jobUpdater
}

// Work downloads the master, transcodes it, stores the output under
// vod/{content}/ and marks the item ready; see the package doc for
// failures.
func (w *worker) Work(ctx context.Context, job *river.Job[TranscodeArgs]) error {
	a := job.Args
	log := w.log.With("content", a.ContentID, "job", job.ID, "attempt", job.Attempt)
	ctx, lost := context.WithCancelCause(ctx)
	defer lost(nil)
	stopBeats := w.keepAlive(ctx, job.JobRow, lost, log)
	err := w.run(ctx, a, job.Attempt, log)
	stopBeats()
	if err == nil {
		return nil
	}
	reason := vod.Reason(err)
	// Writes after a cancelled context still have to happen.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	switch {
	case permanent(err), errors.Is(err, store.ErrNotFound) && !errors.Is(err, errMetaNotFound):
		log.Warn("transcode failed", "reason", reason, "error", err)
		w.setStatus(bg, a.ContentID, store.Encoding{Status: store.EncodingFailed, Reason: reason}, log)
		return river.JobCancel(err)
	case errors.Is(err, errMetaNotFound):
		log.Warn("content item is gone; dropping its job")
		return river.JobCancel(err)
	case ctx.Err() != nil:
		// Stopped (shutdown) or cancelled through River's JobCancel: River
		// retries the first, and Cancel marked the second failed already.
		log.Info("transcode interrupted", "error", context.Cause(ctx))
		if c, gerr := w.cfg.Meta.GetContent(bg, a.ContentID); gerr == nil && c.EncodingStatus == store.EncodingProcessing {
			w.setStatus(bg, a.ContentID, store.Encoding{Status: store.EncodingQueued, Reason: "interrupted; will run again"}, log)
		}
		return err
	case job.Attempt >= job.MaxAttempts:
		log.Error("transcode failed on its last attempt", "reason", reason, "error", err)
		w.setStatus(bg, a.ContentID, store.Encoding{Status: store.EncodingFailed, Reason: reason}, log)
		return err
	default:
		log.Warn("transcode failed; River retries it", "reason", reason, "error", err)
		w.setStatus(bg, a.ContentID, store.Encoding{Status: store.EncodingQueued,
			Reason: fmt.Sprintf("attempt %d failed (%s); retrying", job.Attempt, firstLine(reason))}, log)
		return err
	}
}

var errMetaNotFound = errors.New("content item not found")

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func (w *worker) setStatus(ctx context.Context, id string, e store.Encoding, log *slog.Logger) {
	if err := w.cfg.Meta.UpdateEncoding(ctx, id, e); err != nil {
		log.Error("cannot record the encoding status", "status", e.Status, "error", err)
	}
}

// Shares of the progress: the encode (vod's 0–100) is most of it; storing
// the output tree the rest.
const encodeShare = 95

func (w *worker) run(ctx context.Context, a TranscodeArgs, attempt int, log *slog.Logger) error {
	if _, err := w.cfg.Meta.GetContent(ctx, a.ContentID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %w", errMetaNotFound, err)
		}
		return err
	}
	job := vod.DefaultJob()
	if len(a.Job) > 0 {
		j, err := vod.ParseJob(a.Job)
		if err != nil {
			return err
		}
		job = j
	}
	if err := w.cfg.Meta.UpdateEncoding(ctx, a.ContentID, store.Encoding{Status: store.EncodingProcessing}); err != nil {
		return err
	}
	if w.cfg.WorkDir != "" {
		if err := os.MkdirAll(w.cfg.WorkDir, 0o755); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp(w.cfg.WorkDir, "vodjob-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	input, err := w.download(ctx, a.MasterKey, dir)
	if err != nil {
		return err
	}
	out := filepath.Join(dir, "out")
	var (
		mu      sync.Mutex
		last    time.Time
		lastPct = -1.0
	)
	progress := func(pct float64) {
		mu.Lock()
		defer mu.Unlock()
		pct = math.Round(pct*10) / 10
		if pct == lastPct || time.Since(last) < w.cfg.ProgressEvery {
			return
		}
		last, lastPct = time.Now(), pct
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := w.cfg.Meta.UpdateEncoding(pctx, a.ContentID, store.Encoding{Status: store.EncodingProcessing, Progress: pct}); err != nil && ctx.Err() == nil {
			log.Warn("cannot record progress", "error", err)
		}
	}
	if w.cfg.beforeTranscode != nil {
		w.cfg.beforeTranscode(ctx, attempt)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	log.Info("transcoding", "master", a.MasterKey, "ladder", job.Ladder.Name)
	res, err := vod.Transcode(ctx, vod.Options{Input: input, OutDir: out, Job: job, FFmpeg: w.cfg.FFmpeg,
		FFprobe: w.cfg.FFprobe, Encoder: w.cfg.Encoder, Log: log,
		Progress: func(p vod.Progress) { progress(p.Percent * encodeShare / 100) }})
	if err != nil {
		// The reason names the master, not the local copy.
		var ve *vod.Error
		if errors.As(err, &ve) {
			ve.Message = strings.ReplaceAll(ve.Message, input, path.Base(a.MasterKey))
		}
		return err
	}
	if err := w.storeTree(ctx, out, "vod/"+a.ContentID+"/", func(f float64) { progress(encodeShare + f*(100-encodeShare)) }); err != nil {
		return err
	}
	if err := w.cfg.Meta.UpdateEncoding(ctx, a.ContentID, store.Encoding{Status: store.EncodingReady, Progress: 100}); err != nil {
		return err
	}
	log.Info("transcode ready", "renditions", len(res.Video), "audio", len(res.Audio), "elapsed", res.Elapsed)
	return nil
}
