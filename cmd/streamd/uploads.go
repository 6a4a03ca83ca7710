package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/configs"
	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/upload"
)

// uploadBase is where the tus endpoint is mounted.
const uploadBase = "/api/uploads/"

// newUploads builds the resumable-upload handler on the object store and
// starts its sweeper of abandoned uploads, which runs until ctx is done
// (serve's context: the process's life).
func newUploads(ctx context.Context, cfg configs.Config, objs store.Objects, svc *auth.Service,
	onComplete func(context.Context, upload.Upload) error, log *slog.Logger) (*upload.Handler, error) {
	var s3 *upload.S3Config
	if o := cfg.Storage.Objects; o.Driver == "s3" {
		s3 = &upload.S3Config{Endpoint: o.Endpoint, Bucket: o.Bucket, Region: o.Region, AccessKey: o.AccessKey,
			SecretKey: o.SecretKey, UseSSL: o.UseSSL, Prefix: o.Prefix}
	}
	h, err := upload.New(upload.Config{
		BasePath:       uploadBase,
		MaxSize:        cfg.Upload.MaxSizeMB << 20,
		Objects:        objs,
		TempDir:        cfg.Upload.TempDir,
		S3:             s3,
		PresignExpiry:  time.Duration(cfg.Upload.PresignExpiry),
		ExpireAfter:    time.Duration(cfg.Upload.ExpireAfter),
		AllowedOrigins: cfg.HTTP.AllowedOrigins,
		Log:            log,
		Auth: upload.AuthenticatorFunc(func(ctx context.Context, tok string) (upload.Identity, error) {
			p, err := svc.Authenticate(ctx, tok)
			if err != nil {
				return upload.Identity{}, err
			}
			return upload.Identity{UserID: p.UserID, Role: string(p.Role)}, nil
		}),
		// A finished master becomes a content item and a transcode job
		// (enqueueUpload, jobs.go).
		OnComplete: onComplete,
	})
	if err != nil {
		return nil, err
	}
	go h.RunSweeper(ctx)
	return h, nil
}
