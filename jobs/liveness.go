package jobs

// Liveness of running jobs.
//
// River marks a job running when a node fetches it, and only that
// worker's return changes it. A node that dies mid-encode (killed, out of
// memory, power cut) leaves the row running, and River's rescuer does not
// help (see riverConfig): it only knows when an attempt started, so it
// would either rerun long encodes that are fine or wait longer than any
// encode. streamd tells a dead worker from a slow one by a heartbeat:
//
//   - The worker beats every RescueAfter/4: it writes a counter into the
//     job's output (River's JobUpdate, one small UPDATE of the row). The
//     answer also says whether the row is still its attempt; when it is
//     not (another node rescued it because the beats did not get
//     through), the worker cancels its encode rather than run beside the
//     new attempt. When no beat got through for RescueAfter less one beat
//     interval, it cancels too: by then another node may be about to
//     rescue the job.
//   - Every started queue watches: every RescueAfter/8 it lists the
//     running VOD jobs and remembers, on its own monotonic clock, since
//     when each one's attempt and heartbeat have been unchanged. A job
//     unchanged for RescueAfter has a dead worker: it is made available
//     again (discarded after its last attempt) with River's own rescue
//     statement, fenced on the attempt's start time, so a job fetched
//     again in between is left alone, and several nodes rescuing at once
//     change the row once.
//
// Watching for change instead of comparing timestamps makes clock skew
// between nodes irrelevant. The price: a queue that has just started
// watches for a whole RescueAfter before it rescues anything, so a single
// node restarted after a crash reruns its job about RescueAfter after
// its start.
//
// The rescue goes through River's driver executor, which River documents
// as unstable: there is no public call that retries a running job.
// go.mod pins River; the tests exercise the rescue on SQLite and
// PostgreSQL.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivertype"

	"github.com/streamd/streamd/store"
)

// jobUpdater is (*river.Client[TTx]).JobUpdate, whatever TTx.
type jobUpdater func(ctx context.Context, id int64, p *river.JobUpdateParams) (*rivertype.JobRow, error)

// rescueExec is the part of River's driver executor the rescue uses.
type rescueExec interface {
	JobRescueMany(ctx context.Context, params *riverdriver.JobRescueManyParams) (*struct{}, error)
}

var (
	errLostJob   = errors.New("the job was handed to another worker: its heartbeats did not get through")
	errNoContact = errors.New("no heartbeat got through for too long: stopping before the job runs elsewhere")
)

// heartbeat is what a worker writes into its job's output.
type heartbeat struct {
	Beat    int64 `json:"heartbeat"`
	Attempt int   `json:"attempt"`
	// At is for people reading the row; no decision uses it (clocks of
	// nodes differ).
	At time.Time `json:"at"`
}

func beatEvery(rescueAfter time.Duration) time.Duration { return rescueAfter / 4 }

// keepAlive beats for job until the returned stop is called (or ctx
// ends). It calls lost when the job must not go on here.
func (w *worker) keepAlive(ctx context.Context, job *rivertype.JobRow, lost context.CancelCauseFunc, log *slog.Logger) (stop func()) {
	if w.update == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		every := beatEvery(w.cfg.RescueAfter)
		t := time.NewTicker(every)
		defer t.Stop()
		lastOK := time.Now()
		for n := int64(1); ; n++ {
			err := w.beat(ctx, job, n, every)
			switch {
			case err == nil:
				lastOK = time.Now()
			case ctx.Err() != nil:
				return
			case errors.Is(err, errLostJob):
				log.Warn("job taken over elsewhere; stopping this attempt", "error", err)
				lost(err)
				return
			case time.Since(lastOK) >= w.cfg.RescueAfter-every:
				log.Error("job heartbeat lost; stopping this attempt", "error", err)
				lost(fmt.Errorf("%w: %w", errNoContact, err))
				return
			default:
				log.Warn("job heartbeat failed", "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// beat writes one heartbeat and checks that the row is still this attempt.
func (w *worker) beat(ctx context.Context, job *rivertype.JobRow, n int64, timeout time.Duration) error {
	bctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	row, err := w.update(bctx, job.ID, &river.JobUpdateParams{Output: heartbeat{Beat: n, Attempt: job.Attempt, At: time.Now().UTC()}})
	switch {
	case errors.Is(err, rivertype.ErrNotFound):
		return errLostJob
	case err != nil:
		return err
	case row.State != rivertype.JobStateRunning || row.Attempt != job.Attempt:
		return errLostJob
	}
	return nil
}

// rescuer reruns the running jobs whose worker stopped beating.
type rescuer struct {
	cfg  Config
	list func(ctx context.Context) ([]*rivertype.JobRow, error) // running VOD jobs
	exec rescueExec
	log  *slog.Logger
	// seen: per running job, its attempt and heartbeat and since when
	// (this process's monotonic clock) they have not changed. Only the
	// rescuer's goroutine touches it.
	seen map[int64]sighting
}

type sighting struct {
	key   string
	since time.Time
}

func newRescuer(cfg Config, list func(ctx context.Context) ([]*rivertype.JobRow, error), exec rescueExec) *rescuer {
	return &rescuer{cfg: cfg, list: list, exec: exec, log: cfg.Log.With("component", "vodjobs"), seen: map[int64]sighting{}}
}

// start watches until the returned stop is called.
func (r *rescuer) start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(r.cfg.RescueAfter / 8)
		defer t.Stop()
		for {
			if err := r.scan(ctx, time.Now()); err != nil && ctx.Err() == nil {
				r.log.Warn("cannot check running jobs for dead workers", "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// scan looks at the running jobs once, at now.
func (r *rescuer) scan(ctx context.Context, now time.Time) error {
	jobs, err := r.list(ctx)
	if err != nil {
		return err
	}
	running := make(map[int64]bool, len(jobs))
	for _, j := range jobs {
		running[j.ID] = true
		key := sightingKey(j)
		s, ok := r.seen[j.ID]
		if !ok || s.key != key {
			r.seen[j.ID] = sighting{key: key, since: now}
			continue
		}
		if silent := now.Sub(s.since); silent >= r.cfg.RescueAfter {
			if err := r.rescue(ctx, j, silent); err != nil {
				return err
			}
			delete(r.seen, j.ID)
		}
	}
	for id := range r.seen {
		if !running[id] {
			delete(r.seen, id)
		}
	}
	return nil
}

// sightingKey changes whenever the worker beats or the job starts again.
func sightingKey(j *rivertype.JobRow) string {
	var at int64
	if j.AttemptedAt != nil {
		at = j.AttemptedAt.UnixNano()
	}
	return strconv.Itoa(j.Attempt) + "|" + strconv.FormatInt(at, 10) + "|" + string(j.Output())
}

// rescue makes j available again (discarded after its last attempt) if
// it is still the attempt that was watched, and says so on its item.
func (r *rescuer) rescue(ctx context.Context, j *rivertype.JobRow, silent time.Duration) error {
	now := time.Now().UTC()
	last := j.Attempt >= j.MaxAttempts
	state, finalized := rivertype.JobStateAvailable, (*time.Time)(nil)
	if last {
		state, finalized = rivertype.JobStateDiscarded, &now
	}
	msg := fmt.Sprintf("rescued: no heartbeat from its worker for %s (its process stopped or lost the database)", silent.Round(time.Second))
	errJSON, err := json.Marshal(rivertype.AttemptError{At: now, Attempt: j.Attempt, Error: msg})
	if err != nil {
		return err
	}
	// The fence: River's statement changes the row only while it is
	// running an attempt that started before the horizon. A new attempt
	// starts long after this one (RescueAfter at least).
	horizon := now
	if j.AttemptedAt != nil {
		horizon = j.AttemptedAt.Add(time.Second)
	}
	if _, err := r.exec.JobRescueMany(ctx, &riverdriver.JobRescueManyParams{
		ID: []int64{j.ID}, Error: [][]byte{errJSON}, FinalizedAt: []*time.Time{finalized},
		ScheduledAt: []time.Time{now}, State: []string{string(state)}, StuckHorizon: horizon,
	}); err != nil {
		return fmt.Errorf("rescue job %d: %w", j.ID, err)
	}
	var a TranscodeArgs
	_ = json.Unmarshal(j.EncodedArgs, &a)
	log := r.log.With("content", a.ContentID, "job", j.ID, "attempt", j.Attempt)
	log.Warn("job of a dead worker rescued", "silent", silent.Round(time.Second), "state", state)
	r.setItem(ctx, a.ContentID, last, log)
	return nil
}

// setItem tells the content item of a rescued job what happens next.
func (r *rescuer) setItem(ctx context.Context, id string, last bool, log *slog.Logger) {
	c, err := r.cfg.Meta.GetContent(ctx, id)
	if err != nil || (c.EncodingStatus != store.EncodingProcessing && c.EncodingStatus != store.EncodingQueued) {
		return // gone, or finished or cancelled meanwhile
	}
	e := store.Encoding{Status: store.EncodingQueued, Reason: "interrupted (the node encoding it stopped); will run again"}
	if last {
		e = store.Encoding{Status: store.EncodingFailed, Reason: "the node encoding it stopped during its last attempt"}
	}
	if err := r.cfg.Meta.UpdateEncoding(ctx, id, e); err != nil {
		log.Error("cannot record the encoding status", "status", e.Status, "error", err)
	}
}

// runningJobs lists the running VOD jobs (a node runs a handful at most).
func runningJobs[TTx any](ctx context.Context, c *river.Client[TTx]) ([]*rivertype.JobRow, error) {
	res, err := c.JobList(ctx, river.NewJobListParams().Kinds(TranscodeArgs{}.Kind()).
		States(rivertype.JobStateRunning).First(1000))
	if err != nil {
		return nil, fmt.Errorf("job queue: %w", err)
	}
	return res.Jobs, nil
}
