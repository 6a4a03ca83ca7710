package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/streamd/streamd/configs"
	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/fsstore"
	"github.com/streamd/streamd/store/memsessions"
	"github.com/streamd/streamd/store/pgmeta"
	"github.com/streamd/streamd/store/redissessions"
	"github.com/streamd/streamd/store/s3store"
	"github.com/streamd/streamd/store/sqlitemeta"
)

// backends are the opened stores.
type backends struct {
	objects  store.Objects
	meta     store.Meta
	sessions store.Sessions
	where    string // where objects live, for the start-up log
}

func (b *backends) Close() {
	if b.meta != nil {
		b.meta.Close()
	}
	if b.sessions != nil {
		b.sessions.Close()
	}
}

// openObjects opens the object store; its error names the config key.
func openObjects(ctx context.Context, c configs.Objects, log *slog.Logger) (store.Objects, string, error) {
	switch c.Driver {
	case "s3":
		st, err := s3store.New(ctx, s3store.Config{Endpoint: c.Endpoint, Bucket: c.Bucket, Region: c.Region,
			AccessKey: c.AccessKey, SecretKey: c.SecretKey, UseSSL: c.UseSSL, Prefix: c.Prefix}, log)
		if err != nil {
			return nil, "", err
		}
		if c.LiveExpireDays > 0 {
			rules := []store.LifecycleRule{{ID: "streamd-live-expire", Prefix: "live/", ExpireAfterDays: c.LiveExpireDays}}
			if err := st.ApplyLifecycle(ctx, rules); err != nil {
				return nil, "", fmt.Errorf("storage.objects.live_expire_days: applying the bucket rule: %w", err)
			}
		}
		return st, "s3://" + c.Endpoint + "/" + c.Bucket + "/" + c.Prefix, nil
	default:
		st, err := fsstore.New(c.Path)
		if err != nil {
			return nil, "", err
		}
		return st, st.Root(), nil
	}
}

// openMeta opens (and migrates) the metadata database.
func openMeta(ctx context.Context, c configs.Meta, log *slog.Logger) (store.Meta, error) {
	switch c.Driver {
	case "postgres":
		db, err := pgmeta.Open(ctx, c.URL, pgmeta.Options{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("storage.meta.url: %w", err)
		}
		return db, nil
	default:
		if dir := filepath.Dir(c.URL); dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("storage.meta.url: %w", err)
			}
		}
		db, err := sqlitemeta.Open(ctx, c.URL, sqlitemeta.Options{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("storage.meta.url: %w", err)
		}
		return db, nil
	}
}

// openSessions opens the session store.
func openSessions(ctx context.Context, c configs.Sessions, log *slog.Logger) (store.Sessions, error) {
	if c.Driver == "redis" {
		st, err := redissessions.Open(ctx, c.URL, redissessions.Options{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("storage.sessions.url: %w", err)
		}
		return st, nil
	}
	return memsessions.New(memsessions.Options{Logger: log}), nil
}

// openBackends opens all three stores, closing what it opened on error.
func openBackends(ctx context.Context, cfg configs.Config, log *slog.Logger) (*backends, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b := &backends{}
	var err error
	if b.objects, b.where, err = openObjects(ctx, cfg.Storage.Objects, log); err != nil {
		return nil, err
	}
	if b.meta, err = openMeta(ctx, cfg.Storage.Meta, log); err != nil {
		return nil, err
	}
	if b.sessions, err = openSessions(ctx, cfg.Storage.Sessions, log); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// checkBackends tries each configured backend and writes one line per
// backend; it returns false when one failed.
func checkBackends(ctx context.Context, cfg configs.Config, w io.Writer) bool {
	ok := true
	log := slog.New(slog.DiscardHandler)
	report := func(name, where string, err error) {
		if err != nil {
			ok = false
			fmt.Fprintf(w, "  %-8s FAILED  %v\n", name, err)
			return
		}
		fmt.Fprintf(w, "  %-8s ok      %s\n", name, where)
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if o := cfg.Storage.Objects; o.Driver == "fs" {
		// Checking must not create the folder as a side effect.
		if fi, err := os.Stat(o.Path); err == nil && !fi.IsDir() {
			report("objects", "", fmt.Errorf("storage.objects.path %s is not a folder", o.Path))
		} else {
			report("objects", "fs "+o.Path, nil)
		}
	} else {
		_, where, err := openObjects(cctx, o, log)
		report("objects", o.Driver+" "+where, err)
	}
	if _, statErr := os.Stat(cfg.Storage.Meta.URL); cfg.Storage.Meta.Driver == "sqlite" && os.IsNotExist(statErr) {
		// Checking must not create the database as a side effect.
		report("meta", "sqlite "+cfg.Storage.Meta.URL+" (created at first start)", nil)
	} else {
		m, err := openMeta(cctx, cfg.Storage.Meta, log)
		report("meta", cfg.Storage.Meta.Driver+" "+configs.RedactURL(cfg.Storage.Meta.URL), err)
		if m != nil {
			m.Close()
		}
	}
	s, err := openSessions(cctx, cfg.Storage.Sessions, log)
	report("sessions", cfg.Storage.Sessions.Driver+" "+configs.RedactURL(cfg.Storage.Sessions.URL), err)
	if s != nil {
		s.Close()
	}
	return ok
}

// redisLog sends go-redis's own messages (redials, pool errors) to the
// process logger instead of stderr. go-redis keeps one logger per process,
// so main sets it once.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...), "component", "redis")
}
