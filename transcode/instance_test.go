package transcode

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/streamd/streamd/internal/testenv"
)

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z"
}

func TestInstanceExitCodeAndStderr(t *testing.T) {
	in, err := StartInstance(context.Background(), InstanceConfig{Path: "sh",
		Args: []string{"-c", "echo 'Unknown encoder '\\''h264_nope'\\''' >&2; echo 'Conversion failed!' >&2; exit 3"}, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	err = in.Wait()
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || ee.Reason != "encoder h264_nope is not available in this ffmpeg build" {
		t.Fatalf("err = %#v", err)
	}
	if len(ee.Lines) != 1 {
		t.Errorf("lines %q: the noise line should be gone", ee.Lines)
	}
	if err := in.Close(); !errors.As(err, &ee) {
		t.Errorf("Close after exit = %v, want the same exit error", err)
	}
}

func TestInstanceRealFFmpegErrors(t *testing.T) {
	ff := testenv.FFmpeg(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-f", "lavfi", "-i", "testsrc=size=64x64:duration=0.1", "-c:v", "h264_nope", "-f", "null", "-"},
			"encoder h264_nope is not available in this ffmpeg build"},
		{[]string{"-f", "lavfi", "-i", "testsrc=size=64x64:duration=0.1", "-c:v", "h264_nvenc", "-f", "null", "-"},
			"no NVIDIA GPU for h264_nvenc"},
		{[]string{"-f", "lavfi", "-i", "testsrc=size=64x64:duration=0.1", "-vf", "nosuchfilter", "-f", "null", "-"},
			"filter nosuchfilter is not available"},
		{[]string{"-f", "mpegts", "-i", testenv.Testdata("not_media.txt"), "-f", "null", "-"},
			"the published stream could not be decoded"},
	}
	for _, tc := range tests {
		in, err := StartInstance(context.Background(), InstanceConfig{Path: ff,
			Args: append([]string{"-hide_banner", "-nostats", "-loglevel", "warning"}, tc.args...)})
		if err != nil {
			t.Fatal(err)
		}
		err = in.Wait()
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Code == 0 || !strings.Contains(ee.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestInstanceNotFound(t *testing.T) {
	_, err := StartInstance(context.Background(), InstanceConfig{Path: "/nonexistent/ffmpeg"})
	if !errors.Is(err, ErrFFmpegNotFound) || !strings.HasPrefix(err.Error(), "ffmpeg not found: install it or set transcode.ffmpeg_path") {
		t.Fatalf("err = %v", err)
	}
}

// Close kills the whole group, children included, and reaps the leader.
func TestInstanceCloseKillsGroup(t *testing.T) {
	pidFile := t.TempDir() + "/child"
	in, err := StartInstance(context.Background(), InstanceConfig{Path: "sh",
		Args: []string{"-c", "sleep 60 & echo $! > " + pidFile + "; wait"}, KillGrace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var child int
	waitFor(t, "the child's pid", 5*time.Second, func() bool {
		b, _ := os.ReadFile(pidFile)
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return child > 0
	})
	pgid, _ := syscall.Getpgid(in.Pid())
	if pgid != in.Pid() || pgid == syscall.Getpgrp() {
		t.Fatalf("pgid %d, pid %d, ours %d: not in its own group", pgid, in.Pid(), syscall.Getpgrp())
	}
	err = in.Close()
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Signal != "terminated" {
		t.Errorf("Close = %v, want ended by SIGTERM (reported, not swallowed)", err)
	}
	if alive(in.Pid()) {
		t.Error("leader still there (zombie or alive)")
	}
	waitFor(t, "the grandchild to die", 5*time.Second, func() bool { return !alive(child) })
}

// A process that ignores SIGTERM gets SIGKILL after the grace.
func TestInstanceCloseEscalates(t *testing.T) {
	in, err := StartInstance(context.Background(), InstanceConfig{Path: "sh",
		Args: []string{"-c", "trap '' TERM; echo ready >&2; while :; do sleep 0.05; done"}, KillGrace: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the trap", 5*time.Second, func() bool { return len(in.tail.Lines()) > 0 })
	start := time.Now()
	err = in.Close()
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Signal != "killed" {
		t.Errorf("Close = %v, want killed", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
		t.Errorf("Close took %v", d)
	}
}

func TestSupervisorRestartsWithBackoff(t *testing.T) {
	var starts []time.Time
	var exits atomic.Int64
	s := &Supervisor{
		Log:        testLog(t),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 80 * time.Millisecond,
		OnExit: func(err error) {
			var ee *ExitError
			if !errors.As(err, &ee) || ee.Code != 7 {
				t.Errorf("OnExit(%v)", err)
			}
			exits.Add(1)
		},
	}
	s.Start = func(ctx context.Context, attempt int) (*Instance, error) {
		if attempt != len(starts) {
			t.Errorf("attempt %d after %d starts", attempt, len(starts))
		}
		starts = append(starts, time.Now())
		if attempt == 5 {
			return StartInstance(ctx, InstanceConfig{Path: "sh", Args: []string{"-c", "exit 0"}})
		}
		return StartInstance(ctx, InstanceConfig{Path: "sh", Args: []string{"-c", "exit 7"}})
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatalf("Run = %v after a clean exit", err)
	}
	if s.Restarts() != 5 || exits.Load() != 5 {
		t.Errorf("restarts %d exits %d, want 5", s.Restarts(), exits.Load())
	}
	// Gaps grow 20, 40, 80, 80, 80 ms (capped).
	mins := []time.Duration{20, 40, 80, 80, 80}
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-1]); gap < mins[i-1]*time.Millisecond {
			t.Errorf("gap %d = %v, want ≥ %vms", i, gap, mins[i-1])
		}
	}
}

func TestSupervisorStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var pid atomic.Int64
	s := &Supervisor{Start: func(ctx context.Context, _ int) (*Instance, error) {
		in, err := StartInstance(ctx, InstanceConfig{Path: "sh", Args: []string{"-c", "sleep 60"}})
		if err == nil {
			pid.Store(int64(in.Pid()))
		}
		return in, err
	}}
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "the start", 5*time.Second, func() bool { return pid.Load() != 0 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled (never success)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
	if alive(int(pid.Load())) {
		t.Error("process left behind")
	}
}

func TestSupervisorMissingFFmpegIsFinal(t *testing.T) {
	s := &Supervisor{Start: func(ctx context.Context, _ int) (*Instance, error) {
		return StartInstance(ctx, InstanceConfig{Path: "/nonexistent/ffmpeg"})
	}}
	if err := s.Run(context.Background()); !errors.Is(err, ErrFFmpegNotFound) {
		t.Fatalf("Run = %v", err)
	}
}
