package jobs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"

	"github.com/streamd/streamd/internal/testenv"
	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/fsstore"
	"github.com/streamd/streamd/store/pgmeta"
	"github.com/streamd/streamd/store/sqlitemeta"
	"github.com/streamd/streamd/vod"
)

// smallJob keeps encodes tiny on two cores: two rungs, ultrafast.
const smallJob = `{"rungs":[
 {"name":"180p","height":180,"video_bitrate":"200k","preset":"ultrafast"},
 {"name":"120p","height":120,"video_bitrate":"120k","preset":"ultrafast"}],
 "segment_duration":"1s","audio_bitrate":"64k"}`

type env struct {
	dir   string // objects/, streamd.db and jobs.db (SQLite) are in it
	pgURL string // the PostgreSQL database, when on PostgreSQL
	objs  store.Objects
	meta  store.Meta
	cfg   Config
	open  func(t *testing.T) *Queue
}

func newEnv(t *testing.T, postgres bool) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	objs, err := fsstore.New(filepath.Join(dir, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{dir: dir, objs: objs}
	var pgURL string
	if postgres {
		pgURL = testenv.Postgres(t)
		e.pgURL = pgURL
		db, err := pgmeta.Open(ctx, pgURL, pgmeta.Options{})
		if err != nil {
			t.Fatal(err)
		}
		e.meta = db
	} else {
		db, err := sqlitemeta.Open(ctx, filepath.Join(dir, "streamd.db"), sqlitemeta.Options{})
		if err != nil {
			t.Fatal(err)
		}
		e.meta = db
	}
	t.Cleanup(func() { e.meta.Close() })
	e.cfg = Config{Objects: objs, Meta: e.meta, WorkDir: filepath.Join(dir, "work"),
		FFmpeg: testenv.FFmpeg(t), FFprobe: testenv.FFprobe(t), ProgressEvery: 100 * time.Millisecond,
		PollInterval: 200 * time.Millisecond}
	e.open = func(t *testing.T) *Queue {
		t.Helper()
		var q *Queue
		var err error
		if postgres {
			q, err = OpenPostgres(ctx, pgURL, e.cfg)
		} else {
			q, err = OpenSQLite(ctx, filepath.Join(dir, "jobs.db"), e.cfg)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			q.Stop(ctx)
		})
		return q
	}
	return e
}

// master stores a test file as an uploaded master and creates its item.
func (e *env) master(t *testing.T, name string) (store.Content, string) {
	t.Helper()
	ctx := context.Background()
	f, err := os.Open(testenv.Testdata(name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	key := "masters/up-" + store.NewID()[:8] + "/" + name
	if err := e.objs.Put(ctx, key, f, fi.Size(), ""); err != nil {
		t.Fatal(err)
	}
	c, err := e.meta.CreateContent(ctx, store.Content{Title: name, EncodingStatus: store.EncodingUploaded, MasterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// wait polls the item until it is ready or failed, recording the statuses
// it went through.
func (e *env) wait(t *testing.T, id string, within time.Duration) (store.Content, []store.EncodingStatus) {
	t.Helper()
	var seen []store.EncodingStatus
	deadline := time.Now().Add(within)
	for {
		c, err := e.meta.GetContent(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) == 0 || seen[len(seen)-1] != c.EncodingStatus {
			seen = append(seen, c.EncodingStatus)
		}
		if c.EncodingStatus == store.EncodingReady || c.EncodingStatus == store.EncodingFailed {
			return c, seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("item still %s (%.1f%%, %q) after %s; statuses %v", c.EncodingStatus, c.EncodingProgress,
				c.EncodingReason, within, seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) jobState(t *testing.T, q *Queue, id int64, want rivertype.JobState) *rivertype.JobRow {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		row, err := q.Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if row.State == want {
			return row
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d is %s, want %s (errors %v)", id, row.State, want, row.Errors)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestJobQueueSQLite(t *testing.T)   { testQueue(t, false) }
func TestJobQueuePostgres(t *testing.T) { testQueue(t, true) }

func testQueue(t *testing.T, postgres bool) {
	e := newEnv(t, postgres)
	ctx := context.Background()

	t.Run("InsertedByOneClientRunByAnother", func(t *testing.T) {
		c, key := e.master(t, "h264_aac_360p.mp4")
		// The first client only inserts (never started), then goes away,
		// as a process that stops before working its queue.
		first := e.open(t)
		id, err := first.Enqueue(ctx, TranscodeArgs{ContentID: c.ID, MasterKey: key, Job: []byte(smallJob)})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := e.meta.GetContent(ctx, c.ID); got.EncodingStatus != store.EncodingQueued {
			t.Fatalf("after enqueue: %s", got.EncodingStatus)
		}
		if err := first.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		second := e.open(t)
		if err := second.Start(ctx); err != nil {
			t.Fatal(err)
		}
		got, seen := e.wait(t, c.ID, 3*time.Minute)
		if got.EncodingStatus != store.EncodingReady || got.EncodingProgress != 100 {
			t.Fatalf("ended %s %.1f%% %q; statuses %v", got.EncodingStatus, got.EncodingProgress, got.EncodingReason, seen)
		}
		if !strings.Contains(strings.Join(statusStrings(seen), ","), "processing") {
			t.Errorf("never seen processing: %v", seen)
		}
		e.jobState(t, second, id, rivertype.JobStateCompleted)
		for _, k := range []string{"index.m3u8", "manifest.mpd", "poster.jpg"} {
			if _, err := e.objs.Stat(ctx, "vod/"+c.ID+"/"+k); err != nil {
				t.Errorf("output %s: %v", k, err)
			}
		}
		infos, _ := e.objs.List(ctx, "vod/"+c.ID+"/")
		var segs int
		for _, i := range infos {
			if strings.HasSuffix(i.Key, ".m4s") {
				segs++
			}
		}
		if segs == 0 {
			t.Errorf("no segments stored: %d objects", len(infos))
		}
		if ents, _ := os.ReadDir(e.cfg.WorkDir); len(ents) != 0 {
			t.Errorf("work dir not cleaned: %d entries", len(ents))
		}
	})

	t.Run("StoppedMidJobRunsAgainAfterRestart", func(t *testing.T) {
		c, key := e.master(t, "h264_aac_360p.mp4")
		running := make(chan struct{}, 1)
		var calls atomic.Int32
		e.cfg.beforeTranscode = func(ctx context.Context, attempt int) {
			if calls.Add(1) == 1 { // the first attempt "encodes" until stopped
				running <- struct{}{}
				<-ctx.Done()
			}
		}
		defer func() { e.cfg.beforeTranscode = nil }()
		first := e.open(t)
		if err := first.Start(ctx); err != nil {
			t.Fatal(err)
		}
		id, err := first.Enqueue(ctx, TranscodeArgs{ContentID: c.ID, MasterKey: key, Job: []byte(smallJob)})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-running:
		case <-time.After(time.Minute):
			t.Fatal("job never started")
		}
		if got, _ := e.meta.GetContent(ctx, c.ID); got.EncodingStatus != store.EncodingProcessing {
			t.Fatalf("mid-job: %s", got.EncodingStatus)
		}
		sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		first.Stop(sctx) // waits, then cancels the running job
		cancel()
		if got, _ := e.meta.GetContent(ctx, c.ID); got.EncodingStatus != store.EncodingQueued {
			t.Fatalf("after stop: %s %q", got.EncodingStatus, got.EncodingReason)
		}
		second := e.open(t)
		// River hands an interrupted job back as it was: available, the
		// attempt not counted.
		if row, _ := second.Job(ctx, id); row.State != rivertype.JobStateAvailable && row.State != rivertype.JobStateRetryable {
			t.Fatalf("after stop: job %s attempt %d errors %v", row.State, row.Attempt, row.Errors)
		}
		if err := second.Start(ctx); err != nil {
			t.Fatal(err)
		}
		got, seen := e.wait(t, c.ID, 3*time.Minute)
		if got.EncodingStatus != store.EncodingReady {
			t.Fatalf("ended %s %q; statuses %v", got.EncodingStatus, got.EncodingReason, seen)
		}
		e.jobState(t, second, id, rivertype.JobStateCompleted)
		if n := calls.Load(); n != 2 {
			t.Errorf("runs = %d, want 2", n)
		}
	})

	t.Run("BadInputFailsWithoutRetry", func(t *testing.T) {
		q := e.open(t)
		if err := q.Start(ctx); err != nil {
			t.Fatal(err)
		}
		c, key := e.master(t, "not_media.txt")
		id, err := q.Enqueue(ctx, TranscodeArgs{ContentID: c.ID, MasterKey: key, Job: []byte(smallJob)})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := e.wait(t, c.ID, time.Minute)
		if got.EncodingStatus != store.EncodingFailed || got.EncodingReason == "" || strings.Contains(got.EncodingReason, "\n") {
			t.Fatalf("ended %s with reason %q", got.EncodingStatus, got.EncodingReason)
		}
		if strings.Contains(got.EncodingReason, e.cfg.WorkDir) || !strings.Contains(got.EncodingReason, "not_media.txt") {
			t.Errorf("reason should name the master, not the local copy: %q", got.EncodingReason)
		}
		row := e.jobState(t, q, id, rivertype.JobStateCancelled)
		if row.Attempt != 1 {
			t.Errorf("attempts = %d, want 1 (no retry for bad input)", row.Attempt)
		}

		// A missing master is the same: nothing to retry.
		c2, _ := e.master(t, "not_media.txt")
		id2, err := q.Enqueue(ctx, TranscodeArgs{ContentID: c2.ID, MasterKey: "masters/gone/x.mp4"})
		if err != nil {
			t.Fatal(err)
		}
		got, _ = e.wait(t, c2.ID, time.Minute)
		if got.EncodingStatus != store.EncodingFailed {
			t.Fatalf("missing master: %s %q", got.EncodingStatus, got.EncodingReason)
		}
		e.jobState(t, q, id2, rivertype.JobStateCancelled)

		// An invalid job spec too.
		c3, key3 := e.master(t, "h264_aac_360p.mp4")
		if _, err := q.Enqueue(ctx, TranscodeArgs{ContentID: c3.ID, MasterKey: key3, Job: []byte(`{"ladder":"nope"}`)}); err != nil {
			t.Fatal(err)
		}
		got, _ = e.wait(t, c3.ID, time.Minute)
		if got.EncodingStatus != store.EncodingFailed || !strings.Contains(got.EncodingReason, "unknown ladder") {
			t.Fatalf("invalid job: %s %q", got.EncodingStatus, got.EncodingReason)
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		q := e.open(t) // not started: the job stays available
		c, key := e.master(t, "h264_aac_360p.mp4")
		id, err := q.Enqueue(ctx, TranscodeArgs{ContentID: c.ID, MasterKey: key, Job: []byte(smallJob)})
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Cancel(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		e.jobState(t, q, id, rivertype.JobStateCancelled)
		got, _ := e.meta.GetContent(ctx, c.ID)
		if got.EncodingStatus != store.EncodingFailed || got.EncodingReason != "cancelled" {
			t.Fatalf("after cancel: %s %q", got.EncodingStatus, got.EncodingReason)
		}
		if err := q.Cancel(ctx, c.ID); err != ErrNoJob {
			t.Fatalf("second cancel: %v", err)
		}
	})
}

func statusStrings(s []store.EncodingStatus) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return out
}

func TestJobPermanentErrors(t *testing.T) {
	for code, want := range map[vod.Code]bool{vod.CodeNotMedia: true, vod.CodeTruncated: true, vod.CodeEmptyInput: true,
		vod.CodeInvalidJob: true, vod.CodeInternal: false} {
		if got := permanent(&vod.Error{Code: code, Message: "x"}); got != want {
			t.Errorf("permanent(%s) = %v", code, got)
		}
	}
	if permanent(context.Canceled) {
		t.Error("a cancelled context is not permanent")
	}
}
