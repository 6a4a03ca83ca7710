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

// newUploads builds the resumable-upload handler on the object store.
func newUploads(cfg configs.Config, objs store.Objects, svc *auth.Service,
	onComplete func(context.Context, upload.Upload) error, log *slog.Logger) (*upload.Handler, error) {
	var s3 *upload.S3Config
	if o := cfg.Storage.Objects; o.Driver == "s3" {
		s3 = &upload.S3Config{Endpoint: o.Endpoint, Bucket: o.Bucket, Region: o.Region, AccessKey: o.AccessKey,
			SecretKey: o.SecretKey, UseSSL: o.UseSSL, Prefix: o.Prefix}
	}
	return upload.New(upload.Config{
		BasePath:       uploadBase,
		MaxSize:        cfg.Upload.MaxSizeMB << 20,
		Objects:        objs,
		TempDir:        cfg.Upload.TempDir,
		S3:             s3,
		PresignExpiry:  time.Duration(cfg.Upload.PresignExpiry),
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
}
