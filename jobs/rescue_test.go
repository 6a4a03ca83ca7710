package jobs

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivertype"

	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/fsstore"
	"github.com/streamd/streamd/store/pgmeta"
	"github.com/streamd/streamd/store/sqlitemeta"
)

// crashNodeEnv makes the test binary a job node that gets killed: its
// value is the test's folder (see crashNode).
const crashNodeEnv = "STREAMD_JOBS_TEST_CRASH_NODE"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashNodeEnv); dir != "" {
		os.Exit(crashNode(dir, os.Getenv("STREAMD_JOBS_TEST_CRASH_PG")))
	}
	os.Exit(m.Run())
}

// crashNode runs a queue on the test's databases whose job "encodes"
// forever once it said so on stdout: the parent then kills the process,
// as a node dies mid-encode.
func crashNode(dir, pgURL string) int {
	ctx := context.Background()
	objs, err := fsstore.New(filepath.Join(dir, "objects"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var meta store.Meta
	if pgURL != "" {
		meta, err = pgmeta.Open(ctx, pgURL, pgmeta.Options{})
	} else {
		meta, err = sqlitemeta.Open(ctx, filepath.Join(dir, "streamd.db"), sqlitemeta.Options{})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := Config{Objects: objs, Meta: meta, WorkDir: filepath.Join(dir, "work-crash"), RescueAfter: 2 * time.Second,
		PollInterval: 200 * time.Millisecond,
		beforeTranscode: func(ctx context.Context, attempt int) {
			fmt.Printf("running %d\n", attempt)
			select {} // until killed
		}}
	var q *Queue
	if pgURL != "" {
		q, err = OpenPostgres(ctx, pgURL, cfg)
	} else {
		q, err = OpenSQLite(ctx, filepath.Join(dir, "jobs.db"), cfg)
	}
	if err == nil {
		err = q.Start(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	select {}
}

func TestCrashedNodesJobRunsAgainSQLite(t *testing.T)   { testCrashedNode(t, false) }
func TestCrashedNodesJobRunsAgainPostgres(t *testing.T) { testCrashedNode(t, true) }

// testCrashedNode kills (SIGKILL) a node in the middle of a job: the row
// stays running, and a node started afterwards runs it again within a
// few RescueAfter, to the end.
func testCrashedNode(t *testing.T, postgres bool) {
	e := newEnv(t, postgres)
	ctx := context.Background()
	rescueAfter := 2 * time.Second
	e.cfg.RescueAfter = rescueAfter
	c, key := e.master(t, "h264_aac_360p.mp4")
	ins := e.open(t) // inserts only
	id, err := ins.Enqueue(ctx, TranscodeArgs{ContentID: c.ID, MasterKey: key, Job: []byte(smallJob)})
	if err != nil {
		t.Fatal(err)
	}
	ins.Stop(ctx)

	node := exec.Command(os.Args[0], "-test.run=^$")
	node.Env = append(os.Environ(), crashNodeEnv+"="+e.dir, "STREAMD_JOBS_TEST_CRASH_PG="+e.pgURL)
	node.Stderr = os.Stderr
	out, err := node.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		started <- line
	}()
	select {
	case line := <-started:
		if !strings.HasPrefix(line, "running 1") {
			node.Process.Kill()
			t.Fatalf("crash node said %q", line)
		}
	case <-time.After(time.Minute):
		node.Process.Kill()
		t.Fatal("the crash node never started the job")
	}
	node.Process.Kill()
	node.Wait()
	killed := time.Now()

	q := e.open(t)
	if row, err := q.Job(ctx, id); err != nil || row.State != rivertype.JobStateRunning || row.Attempt != 1 {
		t.Fatalf("after the crash: %+v %v", row, err)
	}
	if got, _ := e.meta.GetContent(ctx, c.ID); got.EncodingStatus != store.EncodingProcessing {
		t.Fatalf("item after the crash: %s", got.EncodingStatus)
	}
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// A fresh queue watches for RescueAfter before rescuing; then the
	// fetch poll. A few seconds of slack for a loaded machine.
	bound := 2*rescueAfter + 8*time.Second
	for {
		row, err := q.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if row.Attempt >= 2 || row.State != rivertype.JobStateRunning {
			t.Logf("job left the dead attempt after %s: %s, attempt %d", time.Since(killed).Round(time.Millisecond), row.State, row.Attempt)
			break
		}
		if time.Since(killed) > bound {
			t.Fatalf("job still running its dead attempt %s after the crash", bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got, seen := e.wait(t, c.ID, 3*time.Minute)
	if got.EncodingStatus != store.EncodingReady {
		t.Fatalf("ended %s %q; statuses %v", got.EncodingStatus, got.EncodingReason, seen)
	}
	row := e.jobState(t, q, id, rivertype.JobStateCompleted)
	if row.Attempt != 2 || len(row.Errors) != 1 || !strings.Contains(row.Errors[0].Error, "no heartbeat") {
		t.Fatalf("completed job: attempt %d errors %+v", row.Attempt, row.Errors)
	}
}

func TestLongJobOnLiveNodeNotRescuedSQLite(t *testing.T)   { testLongJob(t, false) }
func TestLongJobOnLiveNodeNotRescuedPostgres(t *testing.T) { testLongJob(t, true) }

// testLongJob: an encode that runs for several RescueAfter on a live node,
// with a second node watching, runs once.
func testLongJob(t *testing.T, postgres bool) {
	e := newEnv(t, postgres)
	ctx := context.Background()
	e.cfg.RescueAfter = 2 * time.Second
	var calls atomic.Int32
	e.cfg.beforeTranscode = func(ctx context.Context, attempt int) {
		calls.Add(1)
		select {
		case <-time.After(4 * e.cfg.RescueAfter):
		case <-ctx.Done():
		}
	}
	a, b := e.open(t), e.open(t)
	for _, q := range []*Queue{a, b} {
		if err := q.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	c, key := e.master(t, "h264_aac_360p.mp4")
	id, err := a.Enqueue(ctx, TranscodeArgs{ContentID: c.ID, MasterKey: key, Job: []byte(smallJob)})
	if err != nil {
		t.Fatal(err)
	}
	got, seen := e.wait(t, c.ID, 3*time.Minute)
	if got.EncodingStatus != store.EncodingReady {
		t.Fatalf("ended %s %q; statuses %v", got.EncodingStatus, got.EncodingReason, seen)
	}
	row := e.jobState(t, a, id, rivertype.JobStateCompleted)
	if n := calls.Load(); n != 1 || row.Attempt != 1 || len(row.Errors) != 0 {
		t.Fatalf("runs %d, attempt %d, errors %+v: a live job was rescued", n, row.Attempt, row.Errors)
	}
}

// fakeExec records rescues.
type fakeExec struct {
	got []*riverdriver.JobRescueManyParams
}

func (f *fakeExec) JobRescueMany(_ context.Context, p *riverdriver.JobRescueManyParams) (*struct{}, error) {
	f.got = append(f.got, p)
	return &struct{}{}, nil
}

type nopMeta struct{}

func (nopMeta) GetContent(context.Context, string) (store.Content, error) {
	return store.Content{}, store.ErrNotFound
}
func (nopMeta) UpdateEncoding(context.Context, string, store.Encoding) error { return nil }

// The rescuer's decisions on its own clock: beats keep a job, silence
// for RescueAfter rescues it (fenced on its attempt), the last attempt
// is discarded.
func TestRescuerDecides(t *testing.T) {
	ctx := context.Background()
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	job := &rivertype.JobRow{ID: 7, Attempt: 1, MaxAttempts: 3, AttemptedAt: &started, State: rivertype.JobStateRunning,
		EncodedArgs: []byte(`{"content_id":"c1"}`)}
	fx := &fakeExec{}
	list := func(context.Context) ([]*rivertype.JobRow, error) { return []*rivertype.JobRow{job}, nil }
	cfg := Config{RescueAfter: time.Minute, Meta: nopMeta{}}
	cfg.defaults()
	r := newRescuer(cfg, list, fx)
	t0 := time.Now()
	for i, beat := range []string{"", `{"heartbeat":1}`, `{"heartbeat":2}`, `{"heartbeat":3}`} {
		job.Metadata = []byte(`{"output":` + orNull(beat) + `}`)
		if err := r.scan(ctx, t0.Add(time.Duration(i)*50*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if len(fx.got) != 0 {
		t.Fatalf("a beating job was rescued: %+v", fx.got[0])
	}
	now := t0.Add(150 * time.Second)
	r.scan(ctx, now.Add(59*time.Second))
	if len(fx.got) != 0 {
		t.Fatal("rescued before RescueAfter of silence")
	}
	r.scan(ctx, now.Add(60*time.Second))
	if len(fx.got) != 1 {
		t.Fatal("not rescued after RescueAfter of silence")
	}
	p := fx.got[0]
	if p.ID[0] != 7 || p.State[0] != string(rivertype.JobStateAvailable) || !p.StuckHorizon.After(started) ||
		!p.StuckHorizon.Before(started.Add(time.Minute)) || p.FinalizedAt[0] != nil {
		t.Fatalf("rescue params: %+v", p)
	}
	job.Attempt = 3
	r.scan(ctx, now.Add(61*time.Second))
	r.scan(ctx, now.Add(200*time.Second))
	if len(fx.got) != 2 || fx.got[1].State[0] != string(rivertype.JobStateDiscarded) || fx.got[1].FinalizedAt[0] == nil {
		t.Fatalf("last attempt: %+v", fx.got[len(fx.got)-1])
	}
}

func orNull(s string) string {
	if s == "" {
		return "null"
	}
	return s
}
