package transcode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// ErrFFmpegNotFound is returned when no ffmpeg binary can be found.
var ErrFFmpegNotFound = errors.New("ffmpeg not found: install it or set transcode.ffmpeg_path")

// FindFFmpeg resolves the configured path, or ffmpeg on PATH when empty.
func FindFFmpeg(configured string) (string, error) {
	name := configured
	if name == "" {
		name = "ffmpeg"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w (%v)", ErrFFmpegNotFound, err)
	}
	return p, nil
}

// InstanceConfig is one ffmpeg run.
type InstanceConfig struct {
	// Path is the ffmpeg binary ("" = ffmpeg on PATH).
	Path string
	Args []string
	// Stdin is the process's standard input. An *os.File is handed to the
	// child directly (no copying goroutine).
	Stdin io.Reader
	// ExtraFiles become descriptors 3, 4, ... in the child. Start closes
	// them in the parent once the child has them, so the parent's read
	// ends see EOF when the child exits.
	ExtraFiles []*os.File
	// KillGrace is how long Close waits after SIGTERM before SIGKILL
	// (default 5s: time for ffmpeg to flush its outputs).
	KillGrace time.Duration
	Log       *slog.Logger
}

// Instance is one running ffmpeg process in its own process group. It
// knows nothing about restarts: that is the Supervisor's job.
type Instance struct {
	cmd   *exec.Cmd
	log   *slog.Logger
	grace time.Duration
	tail  *stderrTail

	done    chan struct{}
	err     error // set before done closes
	closing sync.Once
}

// StartInstance starts ffmpeg. ctx bounds only the start; the process
// lives until it exits or Close is called.
func StartInstance(ctx context.Context, cfg InstanceConfig) (*Instance, error) {
	if err := ctx.Err(); err != nil {
		closeAll(cfg.ExtraFiles)
		return nil, err
	}
	path, err := FindFFmpeg(cfg.Path)
	if err != nil {
		closeAll(cfg.ExtraFiles)
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	grace := cfg.KillGrace
	if grace <= 0 {
		grace = 5 * time.Second
	}
	logged := 0
	tail := &stderrTail{max: 20, log: func(line string) {
		// ffmpeg can repeat a warning per frame: the first lines go to the
		// log, the rest only into the tail kept for the exit error.
		if logged < 20 {
			logged++
			log.Warn("ffmpeg: " + line)
		}
	}}
	// Not exec.CommandContext: its kill hits only the leader, and we need
	// the whole group terminated gracefully.
	cmd := exec.Command(path, cfg.Args...)
	cmd.Stdin = cfg.Stdin
	cmd.Stderr = tail
	cmd.ExtraFiles = cfg.ExtraFiles
	// Own process group: a kill reaches everything ffmpeg may have spawned,
	// and a Ctrl-C on streamd's terminal does not hit ffmpeg before streamd
	// has decided how to stop it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Stop waiting for the stderr copy if a stray holder keeps it open.
	cmd.WaitDelay = grace
	err = cmd.Start()
	closeAll(cfg.ExtraFiles)
	if err != nil {
		return nil, fmt.Errorf("starting ffmpeg: %w", err)
	}
	in := &Instance{cmd: cmd, log: log.With("pid", cmd.Process.Pid), grace: grace, tail: tail, done: make(chan struct{})}
	go in.reap()
	return in, nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// reap waits for the process (so it never lingers as a zombie) and turns
// its exit status into err.
func (in *Instance) reap() {
	werr := in.cmd.Wait()
	in.err = in.exitError(werr)
	// No group kill here: once the leader is reaped its pid (the group
	// id) may be reused, and ffmpeg spawns no children of its own. Close
	// signals the group while the leader is still there.
	close(in.done)
}

func (in *Instance) exitError(werr error) error {
	if werr == nil {
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(werr, &ee) {
		return fmt.Errorf("waiting for ffmpeg: %w", werr)
	}
	lines := in.tail.Lines()
	out := &ExitError{Code: ee.ExitCode(), Lines: lines, Reason: Translate(lines)}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		out.Signal = ws.Signal().String()
	}
	return out
}

// Pid is the process id, which is also the process group id.
func (in *Instance) Pid() int { return in.cmd.Process.Pid }

// Done is closed once the process has exited and been reaped.
func (in *Instance) Done() <-chan struct{} { return in.done }

// Wait blocks until the process exits. It returns nil only for exit code
// 0; otherwise an *ExitError (or a wait failure).
func (in *Instance) Wait() error {
	<-in.done
	return in.err
}

// Close terminates the process group: SIGTERM so ffmpeg can flush, then
// SIGKILL after the grace period. It returns once the process is reaped,
// with the same result as Wait.
func (in *Instance) Close() error {
	in.closing.Do(func() {
		select {
		case <-in.done:
			return
		default:
		}
		pgid := in.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(in.grace)
		defer t.Stop()
		select {
		case <-in.done:
		case <-t.C:
			in.log.Warn("ffmpeg ignored SIGTERM; killing its process group", "grace", in.grace)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	})
	return in.Wait()
}
