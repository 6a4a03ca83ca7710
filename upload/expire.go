package upload

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	tusd "github.com/tus/tusd/v2/pkg/handler"
)

// defaultExpireAfter is how long an incomplete upload may sit untouched
// (config upload.expire_after): a day lets a client resume after a night
// offline, yet a disk does not fill with masters nobody will finish.
const defaultExpireAfter = 24 * time.Hour

// sweepInterval is how often RunSweeper looks: a quarter of expire_after,
// so an abandoned upload lives at most 1.25 × expire_after, but at least
// hourly, since one pass is cheap (a folder listing and one small object
// per S3 upload in progress).
func sweepInterval(expireAfter time.Duration) time.Duration {
	return max(min(expireAfter/4, time.Hour), time.Millisecond)
}

// RunSweeper removes abandoned uploads until ctx is done: one pass at once
// (a restart after a long stop clears what expired meanwhile), then one
// every sweepInterval. Errors are logged; the next pass tries again.
func (h *Handler) RunSweeper(ctx context.Context) {
	t := time.NewTicker(sweepInterval(h.cfg.ExpireAfter))
	defer t.Stop()
	for {
		if err := h.sweep(ctx); err != nil && ctx.Err() == nil {
			h.log.WarnContext(ctx, "expiring abandoned uploads", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep is one pass: tus uploads in the temp folder, then S3 multipart
// uploads when there are any.
func (h *Handler) sweep(ctx context.Context) error {
	cutoff := h.now().Add(-h.cfg.ExpireAfter)
	err := h.data.expire(ctx, cutoff)
	if h.mp != nil {
		err = errors.Join(err, h.mp.expire(ctx, cutoff))
	}
	return err
}

// expire terminates every tus upload in progress that has not been
// written to since cutoff.
func (d *dataStore) expire(ctx context.Context, cutoff time.Time) error {
	ents, err := os.ReadDir(d.fs.Path)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".info")
		if !ok || !reUploadID.MatchString(id) {
			continue
		}
		if err := d.expireOne(ctx, id, cutoff); err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}

// lastWrite is when an upload last changed (its data, or its .info) and
// how many bytes it holds. Activity, not creation: a 40 GB master resumed
// every evening for a week is not abandoned.
func (d *dataStore) lastWrite(id string) (time.Time, int64) {
	var last time.Time
	var size int64
	for i, p := range []string{filepath.Join(d.fs.Path, id), filepath.Join(d.fs.Path, id+".info")} {
		if fi, err := os.Stat(p); err == nil {
			if fi.ModTime().After(last) {
				last = fi.ModTime()
			}
			if i == 0 {
				size = fi.Size()
			}
		}
	}
	return last, size
}

func (d *dataStore) expireOne(ctx context.Context, id string, cutoff time.Time) error {
	if last, _ := d.lastWrite(id); last.After(cutoff) {
		return nil
	}
	// Under tusd's lock, so that no PATCH writes while the files go. A
	// lock held elsewhere means a request is at it: not abandoned.
	lock, err := d.locker.NewLock(id)
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := lock.Lock(lctx, func() {}); err != nil {
		return nil
	}
	defer lock.Unlock()
	last, held := d.lastWrite(id) // again: a PATCH may have ended just now
	if last.After(cutoff) {
		return nil
	}
	up, err := d.fs.GetUpload(ctx, id)
	if errors.Is(err, tusd.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	info, err := up.GetInfo(ctx)
	if err != nil {
		return err
	}
	if info.Offset >= info.Size {
		// Every byte arrived; only storing it failed. The client's
		// next HEAD finishes it: a whole master is never thrown away.
		return nil
	}
	if err := d.fs.AsTerminatableUpload(up).Terminate(ctx); err != nil {
		return err
	}
	d.h.log.InfoContext(ctx, "abandoned upload expired", "id", id, "age", d.h.now().Sub(last).Round(time.Second),
		"bytes", held, "size", info.Size, "user", info.MetaData["user_id"], "where", "temp_dir")
	return nil
}
