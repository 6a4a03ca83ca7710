package transcode

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"
)

// StartFunc starts one run of the supervised process. attempt counts from
// 0; restarts > 0 lets the caller tell its consumers about the break.
type StartFunc func(ctx context.Context, attempt int) (*Instance, error)

// Supervisor keeps an Instance running: it restarts one that fails after
// an exponential back-off, and stops when its context is cancelled or the
// process ends cleanly (exit 0: its input ended).
type Supervisor struct {
	Start StartFunc
	Log   *slog.Logger
	// MinBackoff (default 500ms) doubles after every failure up to
	// MaxBackoff (default 30s); a run that lasted StableAfter (default 30s)
	// resets it, so one crash a day does not wait 30s.
	MinBackoff, MaxBackoff, StableAfter time.Duration
	// OnExit, if set, sees every failed run (to count it in metrics or
	// surface it in the API).
	OnExit func(err error)

	restarts atomic.Int64
}

// Restarts is how many times the process was restarted after a failure.
func (s *Supervisor) Restarts() int64 { return s.restarts.Load() }

// Run supervises until ctx is cancelled (returns ctx.Err(), after closing
// the running instance) or a run exits with code 0 (returns nil). A
// failed run is never reported as success: it is restarted, and its error
// goes to OnExit and the log.
func (s *Supervisor) Run(ctx context.Context) error {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	minB, maxB, stable := s.MinBackoff, s.MaxBackoff, s.StableAfter
	if minB <= 0 {
		minB = 500 * time.Millisecond
	}
	if maxB <= 0 {
		maxB = 30 * time.Second
	}
	if stable <= 0 {
		stable = 30 * time.Second
	}
	backoff := minB
	for attempt := 0; ; attempt++ {
		started := time.Now()
		in, err := s.Start(ctx, attempt)
		if err == nil {
			select {
			case <-in.Done():
				err = in.Wait()
			case <-ctx.Done():
				cerr := in.Close()
				log.Debug("ffmpeg stopped", "result", cerr)
				return ctx.Err()
			}
			if err == nil {
				log.Info("ffmpeg finished")
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrFFmpegNotFound) {
			// No back-off can fix a missing binary.
			return err
		}
		if s.OnExit != nil {
			s.OnExit(err)
		}
		if time.Since(started) >= stable {
			backoff = minB
		}
		log.Error("ffmpeg failed; restarting", "err", err, "in", backoff, "restarts", s.restarts.Load())
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, maxB)
		s.restarts.Add(1)
	}
}
