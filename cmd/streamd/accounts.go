package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/streamd/streamd/api"
	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/configs"
	"github.com/streamd/streamd/store"
)

// newAuthService builds the account service on the opened backends.
func newAuthService(cfg configs.Config, meta store.Meta, sessions store.Sessions, log *slog.Logger) (*auth.Service, error) {
	key, err := signingKey(cfg, log)
	if err != nil {
		return nil, err
	}
	tokens, err := auth.NewTokens(key, auth.TokenConfig{TTL: time.Duration(cfg.Auth.AccessTTL)})
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	hasher, err := auth.NewHasher(auth.Params{}, 0)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return auth.NewService(meta, sessions, hasher, tokens, auth.Config{
		RefreshTTL: time.Duration(cfg.Auth.RefreshTTL),
		Lockout: auth.LockoutConfig{MaxFailures: cfg.Auth.LockoutFailures, Window: time.Duration(cfg.Auth.LockoutWindow),
			Duration: time.Duration(cfg.Auth.LockoutDuration)},
	}, log), nil
}

// signingKey reads auth.jwt_key_file, or the key generated into data_dir.
func signingKey(cfg configs.Config, log *slog.Logger) (ed25519.PrivateKey, error) {
	if cfg.Auth.JWTKeyFile != "" {
		b, err := os.ReadFile(cfg.Auth.JWTKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt_key_file: %w", err)
		}
		k, err := auth.ParseSigningKey(b)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt_key_file %s: %w", cfg.Auth.JWTKeyFile, err)
		}
		return k, nil
	}
	ks := auth.JWTKeyStore{Dir: cfg.DataDir}
	k, created, err := ks.LoadOrCreate()
	if err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if created {
		log.Info("generated the access-token signing key", "file", ks.Path())
	}
	return k, nil
}

// newAPI is the /api handler.
func newAPI(cfg configs.Config, svc *auth.Service, meta store.Meta, sessions store.Sessions, log *slog.Logger) http.Handler {
	return api.New(api.Deps{
		Auth: svc, Users: svc, Limiter: auth.RateLimiter{Sessions: sessions},
		Channels: meta, Content: meta,
		Limits: api.Limits{Auth: cfg.Auth.AuthRatePerMinute, API: cfg.Auth.APIRatePerMinute, Window: time.Minute},
		Logger: log,
	})
}

// cmdUser implements `streamd user add`: the way to create the first admin
// (the default config has no account and no default password). The
// password is read from standard input, never from a flag (flags end up in
// shell history and process lists).
func cmdUser(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "add" {
		fmt.Fprintln(stderr, "usage: streamd user add --email E --username U [--role admin|publisher|viewer] [--config FILE]  (password on stdin)")
		return 2
	}
	fs := flag.NewFlagSet("user add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (default: the embedded default config)")
	email := fs.String("email", "", "email address")
	username := fs.String("username", "", "user name")
	role := fs.String("role", "viewer", "admin, publisher or viewer")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg, err := configs.Load(*path, nil)
	if err != nil {
		fmt.Fprintln(stderr, "streamd:", err)
		return 1
	}
	if isTerminal(stdin) {
		fmt.Fprint(stderr, "Password: ")
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(stderr, "streamd: user add: give the password on standard input (echo ... | streamd user add ...)")
		return 1
	}
	password := strings.TrimRight(line, "\r\n")
	log := slog.New(slog.DiscardHandler)
	b, err := openBackends(ctx, cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "streamd: user add:", err)
		return 1
	}
	defer b.Close()
	svc, err := newAuthService(cfg, b.meta, b.sessions, log)
	if err != nil {
		fmt.Fprintln(stderr, "streamd: user add:", err)
		return 1
	}
	u, err := svc.CreateUser(ctx, auth.NewUser{Email: *email, Username: *username, Password: password, Role: store.Role(*role)})
	if err != nil {
		fmt.Fprintln(stderr, "streamd: user add:", err)
		return 1
	}
	fmt.Fprintf(stdout, "created user %s (%s, role %s, id %s)\n", u.Username, u.Email, u.Role, u.ID)
	return 0
}
