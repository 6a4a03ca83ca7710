// Package sqlitemeta is the store.Meta on SQLite (modernc.org/sqlite, pure
// Go, no cgo): the default, a single file next to the binary's data.
//
// SQLite allows one writer at a time. Instead of letting writers collide
// and retry on SQLITE_BUSY, all writes go through one connection (a pool of
// size 1, so database/sql queues them), and reads use a separate pool that
// WAL lets run beside the writer. busy_timeout still covers another process
// opening the same file.
package sqlitemeta

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/internal/neterr"
)

var _ store.Meta = (*DB)(nil)

//go:embed migrations/*.sql
var migrations embed.FS

// Options tune Open; the zero value is fine.
type Options struct {
	// BusyTimeout is how long a statement waits for another process's
	// lock before failing with ErrUnavailable (default 5 s).
	BusyTimeout time.Duration
	// Readers is the size of the read pool (default 4).
	Readers int
	Logger  *slog.Logger
}

// DB is a store.Meta on one SQLite file, safe for concurrent use.
type DB struct {
	w, r *sql.DB
	path string
	log  *slog.Logger
}

// Open opens (creating when missing) the database file at path and brings
// its schema up to date.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if opts.Readers <= 0 {
		opts.Readers = 4
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)") // WAL + NORMAL: durable except on power loss
	q.Add("_pragma", "foreign_keys(ON)")
	q.Add("_time_format", "sqlite")
	// BEGIN IMMEDIATE: a write transaction takes the lock up front instead
	// of failing half-way when another process writes.
	w, err := sql.Open("sqlite", dsn(path, q, "_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("sqlite at %s: %v", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open("sqlite", dsn(path, q, "_pragma=query_only(ON)"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite at %s: %v", path, err)
	}
	r.SetMaxOpenConns(opts.Readers)
	db := &DB{w: w, r: r, path: path, log: log.With("component", "sqlitemeta", "path", path)}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		reason := firstLine(err)
		var se *sqlite.Error
		if errors.As(err, &se) {
			reason = firstLine(se)
		}
		msg := fmt.Sprintf("sqlite at %s: %s", path, reason)
		if errors.Is(err, store.ErrUnavailable) {
			msg += " (check that the folder exists and is writable)"
			return nil, neterr.Line(msg, store.ErrUnavailable)
		}
		return nil, neterr.Line(msg, nil)
	}
	return db, nil
}

func dsn(path string, q url.Values, extra string) string {
	// A file: URI, so that a path with '?' or '#' is not taken for options.
	u := url.URL{Scheme: "file", OmitHost: true, Path: path}
	return u.String() + "?" + q.Encode() + "&" + extra
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// Migrate applies the embedded migrations the database has not seen, each
// in its own transaction; concurrent openers serialize on the write lock.
func (db *DB) Migrate(ctx context.Context) error {
	if _, err := db.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS streamd_schema_version (version INTEGER NOT NULL)`); err != nil {
		return db.wrap("migrate", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	slices.Sort(names)
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		n, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: name must start with its number", base)
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		if err := db.apply(ctx, n, base, string(body)); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) apply(ctx context.Context, n int, name, body string) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return db.wrap("migrate", err)
	}
	defer tx.Rollback()
	var cur int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM streamd_schema_version`).Scan(&cur); err != nil {
		return db.wrap("migrate", err)
	}
	if n <= cur {
		return nil
	}
	if _, err := tx.ExecContext(ctx, body); err != nil {
		return fmt.Errorf("migration %s: %w", name, db.wrap("migrate", err))
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO streamd_schema_version (version) VALUES (?)`, n); err != nil {
		return db.wrap("migrate", err)
	}
	if err := tx.Commit(); err != nil {
		return db.wrap("migrate", err)
	}
	db.log.Info("schema migrated", "migration", name)
	return nil
}

// wrap maps SQLite result codes onto the store's errors.
func (db *DB) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: %s: %w", op, store.ErrNotFound)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch code := se.Code(); {
		case code == sqlite3.SQLITE_CONSTRAINT_UNIQUE, code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("sqlite: %s: %w", op, store.ErrConflict)
		case code&0xff == sqlite3.SQLITE_CONSTRAINT:
			return fmt.Errorf("sqlite: %s: %w: %s", op, store.ErrInvalid, firstLine(err))
		case slices.Contains([]int{sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR,
			sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY,
			sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_PROTOCOL}, code&0xff):
			return fmt.Errorf("sqlite at %s: %s: %w: %s", db.path, op, store.ErrUnavailable, firstLine(err))
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sql.ErrConnDone) {
		return fmt.Errorf("sqlite at %s: %s: %w: %s", db.path, op, store.ErrUnavailable, firstLine(err))
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

func notFound(what, id string) error {
	return fmt.Errorf("sqlite: %s %q: %w", what, id, store.ErrNotFound)
}

// Times are stored as Unix microseconds: exact, sortable, no parsing.
func us(t time.Time) int64 { return t.UnixMicro() }

func fromUs(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullUs(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromNullUs(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromUs(v.Int64)
}

// Ping implements store.Meta.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.r.PingContext(ctx); err != nil {
		return db.wrap("ping", err)
	}
	return db.wrap("ping", db.w.PingContext(ctx))
}

// Close closes both pools.
func (db *DB) Close() error {
	return errors.Join(db.r.Close(), db.w.Close())
}
