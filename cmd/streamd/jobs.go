package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/configs"
	"github.com/streamd/streamd/jobs"
	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/transcode"
	"github.com/streamd/streamd/upload"
)

// openJobs opens the VOD job queue next to the metadata store and starts
// its workers (transcode.max_vod_workers of them on this node).
//
// On PostgreSQL the queue is River's tables in the metadata database (a
// pgxpool of its own on storage.meta.url): every node sharing that
// database shares the queue.
//
// On SQLite it is a file of its own, data_dir/jobs.db, rather than the
// metadata file: River's producer, leader election and maintenance
// write every second or so, and SQLite has one writer per file, so on the
// metadata file they would hold up the API's writes (and theirs would wait
// on busy_timeout); River's migrations and ours stay apart too. Nothing
// needs a transaction across both: the content item is created before its
// job, and a failed enqueue fails the upload's completion, which the
// client retries (OnComplete is idempotent, keyed by the upload id).
func openJobs(ctx context.Context, cfg configs.Config, objs store.Objects, meta store.Meta, log *slog.Logger) (*jobs.Queue, error) {
	ffmpeg, _ := transcode.FindFFmpeg(cfg.Transcode.FFmpegPath) // checked when a job runs (a retryable error)
	encoder, _ := transcode.EncoderByName(cfg.Transcode.Encoder, cfg.Transcode.HWDevice)
	jc := jobs.Config{
		Objects:    objs,
		Meta:       meta,
		WorkDir:    filepath.Join(cfg.DataDir, "vod-work"),
		FFmpeg:     ffmpeg,
		Encoder:    encoder,
		MaxWorkers: cfg.Transcode.MaxVODWorkers,
		// A crashed node's running jobs run again this long after its
		// last heartbeat (jobs/liveness.go).
		RescueAfter: time.Duration(cfg.Jobs.RescueAfter),
		Log:         log,
		// An idle server should cost nothing: River polls for jobs
		// inserted by other processes, and on SQLite (no LISTEN/NOTIFY)
		// every poll is a query. A VOD job waits a few seconds at most.
		PollInterval: 5 * time.Second,
	}
	var q *jobs.Queue
	var err error
	if cfg.Storage.Meta.Driver == "postgres" {
		q, err = jobs.OpenPostgres(ctx, cfg.Storage.Meta.URL, jc)
		if err != nil {
			return nil, fmt.Errorf("storage.meta.url: %w", err)
		}
	} else {
		q, err = jobs.OpenSQLite(ctx, filepath.Join(cfg.DataDir, "jobs.db"), jc)
		if err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
	}
	if err := q.Start(ctx); err != nil {
		q.Stop(ctx)
		return nil, fmt.Errorf("job queue: %w", err)
	}
	return q, nil
}

// enqueueUpload is the upload handler's OnComplete: the master becomes a
// content item (owned by the uploader, titled after the file, its id the
// upload's so that a repeated completion finds it) and a transcode job.
func enqueueUpload(meta store.Meta, q *jobs.Queue, job []byte, log *slog.Logger) func(context.Context, upload.Upload) error {
	return func(ctx context.Context, u upload.Upload) error {
		title := strings.TrimSuffix(u.Filename, path.Ext(u.Filename))
		if title == "" {
			title = u.Filename
		}
		c, err := meta.CreateContent(ctx, store.Content{ID: u.ID, Title: title, OwnerID: u.UserID, Visibility: store.Visibility(u.Visibility),
			EncodingStatus: store.EncodingUploaded, MasterKey: u.Key})
		if errors.Is(err, store.ErrConflict) {
			if c, err = meta.GetContent(ctx, u.ID); err == nil && c.EncodingStatus != store.EncodingUploaded {
				return nil // queued already by an earlier completion
			}
		}
		if err != nil {
			return fmt.Errorf("content item for upload %s: %w", u.ID, err)
		}
		id, err := q.Enqueue(ctx, jobs.TranscodeArgs{ContentID: c.ID, MasterKey: u.Key, Job: job})
		if err != nil {
			return err
		}
		log.Info("master uploaded and queued", "component", "upload", "key", u.Key, "bytes", u.Size,
			"user", u.UserID, "content", c.ID, "job", id)
		return nil
	}
}

// cancelJobHandler is DELETE /api/content/{id}/job: the item's owner or an
// admin cancels its unfinished transcode (River's JobCancel); the item
// ends failed with reason "cancelled". 204, or 404 when there is no such
// item or no unfinished job.
func cancelJobHandler(meta store.Meta, q *jobs.Queue, svc *auth.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			jsonError(w, http.StatusUnauthorized, "unauthenticated", "log in first")
			return
		}
		p, err := svc.Authenticate(r.Context(), tok)
		if err != nil {
			jsonError(w, http.StatusUnauthorized, "unauthenticated", "invalid or expired token")
			return
		}
		id := r.PathValue("id")
		c, err := meta.GetContent(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && c.OwnerID != p.UserID && p.Role != store.RoleAdmin) {
			jsonError(w, http.StatusNotFound, "not_found", "no such content item")
			return
		}
		if err != nil {
			jsonError(w, http.StatusServiceUnavailable, "unavailable", "the catalog is not available")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		switch err := q.Cancel(ctx, id); {
		case errors.Is(err, jobs.ErrNoJob):
			jsonError(w, http.StatusNotFound, "not_found", "the item has no unfinished job")
		case err != nil:
			jsonError(w, http.StatusServiceUnavailable, "unavailable", "cannot cancel the job now; try again")
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
}

func jsonError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, "{\"error\":{\"code\":%q,\"message\":%q}}\n", code, msg)
}
