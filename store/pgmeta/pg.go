// Package pgmeta is the store.Meta on PostgreSQL (pgx/v5's pool): the
// production choice, shared by every streamd process of a deployment. The
// schema is embedded and migrated by tern on Open (under tern's advisory
// lock, so processes starting together migrate once).
package pgmeta

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/internal/neterr"
)

var _ store.Meta = (*DB)(nil)

//go:embed migrations/*.sql
var migrations embed.FS

// versionTable is tern's bookkeeping table.
const versionTable = "streamd_schema_version"

// Options tune Open; the zero value is fine.
type Options struct {
	// ConnectTimeout bounds each connection attempt (default 5 s), unless
	// the URL has connect_timeout.
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// DB is a store.Meta on a PostgreSQL pool, safe for concurrent use. After
// an outage the pool replaces broken connections by itself: the same DB
// works again once the server is back.
type DB struct {
	pool  *pgxpool.Pool
	where string // "postgres at host:port", for errors
	log   *slog.Logger
}

// Open connects to the database at url, checks that it answers and
// migrates its schema. Its error is one line that names the server and
// what to check; it never contains the password.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors may quote the URL; say what is wrong only.
		return nil, errors.New("postgres: invalid URL (want postgres://user:password@host:port/database?sslmode=...)")
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	where := "postgres at " + net.JoinHostPort(cfg.ConnConfig.Host, fmt.Sprint(cfg.ConnConfig.Port))
	if strings.HasPrefix(cfg.ConnConfig.Host, "/") {
		where = "postgres at socket " + cfg.ConnConfig.Host
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, neterr.Line(where+": "+firstLine(err), nil)
	}
	db := &DB{pool: pool, where: where, log: log.With("component", "pgmeta", "addr", where)}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, db.openError(cfg.ConnConfig, err)
	}
	if err := db.Migrate(ctx); err != nil {
		pool.Close()
		return nil, neterr.Line(where+": migrate: "+firstLine(err), store.ErrUnavailable)
	}
	return db, nil
}

// openError says in one line why the first connection failed.
func (db *DB) openError(cc *pgx.ConnConfig, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		var msg string
		switch pe.Code {
		case "28P01", "28000":
			msg = fmt.Sprintf("authentication failed for user %q (check the user and password in the URL)", cc.User)
		case "3D000":
			msg = fmt.Sprintf("database %q does not exist (create it, or fix the database in the URL)", cc.Database)
		case "57P03":
			msg = "the server is starting up or shutting down (try again)"
		case "53300":
			msg = "too many connections (raise max_connections or lower pool_max_conns)"
		default:
			msg = fmt.Sprintf("%s (SQLSTATE %s)", pe.Message, pe.Code)
		}
		return neterr.Line(db.where+": "+msg, store.ErrUnavailable)
	}
	if r, ok := neterr.Reason(err); ok {
		return neterr.Line(db.where+": "+r, store.ErrUnavailable)
	}
	msg := firstLine(err)
	if strings.Contains(msg, "server refused TLS") || strings.Contains(msg, "tls:") {
		msg = "TLS failed (check sslmode in the URL): " + msg
	}
	return neterr.Line(db.where+": "+msg, store.ErrUnavailable)
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// Migrate brings the schema up to date with the embedded migrations.
func (db *DB) Migrate(ctx context.Context) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return db.wrap("migrate", err)
	}
	defer conn.Release()
	m, err := migrate.NewMigrator(ctx, conn.Conn(), versionTable)
	if err != nil {
		return db.wrap("migrate", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	if err := m.LoadMigrations(sub); err != nil {
		return fmt.Errorf("postgres: load migrations: %w", err)
	}
	before, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return db.wrap("migrate", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return db.wrap("migrate", err)
	}
	if after := int32(len(m.Migrations)); after > before {
		db.log.Info("schema migrated", "from", before, "to", after)
	}
	return nil
}

// wrap maps pgx errors onto the store's. A server error with a SQLSTATE is
// judged by its code; any other error from the driver (refused, reset,
// EOF, timed out, connection closed) means the server is not there.
func (db *DB) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: %s: %w", op, store.ErrNotFound)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505":
			return fmt.Errorf("postgres: %s: %w", op, store.ErrConflict)
		case pe.Code == "23514", pe.Code == "23502", pe.Code == "22P02", pe.Code == "22021", pe.Code == "22001", pe.Code == "54000":
			return fmt.Errorf("postgres: %s: %w: %s", op, store.ErrInvalid, pe.Message)
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "53"), strings.HasPrefix(pe.Code, "57P"),
			strings.HasPrefix(pe.Code, "58"), pe.Code == "25006": // 25006: read-only (a standby)
			return fmt.Errorf("%s: %s: %w: %s (SQLSTATE %s)", db.where, op, store.ErrUnavailable, pe.Message, pe.Code)
		}
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	var scanErr pgx.ScanArgError
	if errors.As(err, &scanErr) {
		return fmt.Errorf("postgres: %s: %w", op, err) // a bug here, not an outage
	}
	reason := firstLine(err)
	if r, ok := neterr.Reason(err); ok {
		reason = r
	}
	return fmt.Errorf("%s: %s: %w: %s", db.where, op, store.ErrUnavailable, reason)
}

func notFound(what, id string) error {
	return fmt.Errorf("postgres: %s %q: %w", what, id, store.ErrNotFound)
}

// Ping implements store.Meta.
func (db *DB) Ping(ctx context.Context) error { return db.wrap("ping", db.pool.Ping(ctx)) }

// Close closes the pool.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}
