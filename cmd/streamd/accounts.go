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
	"github.com/streamd/streamd/ratelimit"
	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/redissessions"
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
	heights := map[store.Tier]int{}
	for t, h := range cfg.Auth.TierMaxHeight {
		heights[store.Tier(t)] = h
	}
	svc := auth.NewService(meta, sessions, hasher, tokens, auth.Config{
		RefreshTTL: time.Duration(cfg.Auth.RefreshTTL),
		Lockout: auth.LockoutConfig{MaxFailures: cfg.Auth.LockoutFailures, Window: time.Duration(cfg.Auth.LockoutWindow),
			Duration: time.Duration(cfg.Auth.LockoutDuration)},
		TierMaxHeight:        heights,
		FamilyMaxProfiles:    cfg.Auth.FamilyMaxProfiles,
		BillingWebhookSecret: cfg.Auth.BillingWebhookSecret,
	}, log)
	if _, err := newOIDC(cfg, svc); err != nil {
		return nil, err
	}
	return svc, nil
}

// newOIDC is the OIDC login of auth.oidc (nil when no provider is set).
func newOIDC(cfg configs.Config, svc *auth.Service) (*auth.OIDC, error) {
	if len(cfg.Auth.OIDC) == 0 {
		return nil, nil
	}
	var ps []auth.OIDCProvider
	for _, p := range cfg.Auth.OIDC {
		ps = append(ps, auth.OIDCProvider{Name: p.Name, Issuer: p.Issuer, ClientID: p.ClientID,
			ClientSecret: p.ClientSecret, RedirectURL: p.RedirectURL, Scopes: p.Scopes})
	}
	o, err := svc.NewOIDC(auth.OIDCConfig{Providers: ps})
	if err != nil {
		return nil, fmt.Errorf("auth.oidc: %w", err)
	}
	return o, nil
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
// meta is the metadata store, channels as apiChannels wraps it.
func newAPI(cfg configs.Config, svc *auth.Service, meta apiChannels, sessions store.Sessions, signer api.PlaybackSigner, log *slog.Logger) http.Handler {
	d := api.Deps{Playback: signer,
		Auth: svc, Users: svc, Limiter: rateLimiter(sessions),
		Channels: meta, Content: meta, OIDCPostLoginURL: cfg.Auth.OIDCPostLoginURL,
		Limits: api.Limits{Auth: cfg.Auth.AuthRatePerMinute, API: cfg.Auth.APIRatePerMinute,
			Account: cfg.Auth.AccountRatePerMinute, Window: time.Minute},
		Logger: log,
	}
	// newAuthService checked the providers already.
	if o, err := newOIDC(cfg, svc); err != nil {
		log.Error("OIDC login is off", "err", err)
	} else if o != nil {
		d.OIDC = o
	}
	return api.New(d)
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
	var email, username, role *string
	cfg, code := loadWithFlags("user add", args[1:], stderr, func(fs *flag.FlagSet) {
		email = fs.String("email", "", "email address")
		username = fs.String("username", "", "user name")
		role = fs.String("role", "viewer", "admin, publisher or viewer")
	})
	if code != 0 {
		return code
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

// rateLimiter keeps the API's rate limits where the sessions live: in
// Redis when the sessions are there, so that a limit holds across every
// streamd process sharing it; in process otherwise.
func rateLimiter(sessions store.Sessions) api.Limiter {
	if rs, ok := sessions.(*redissessions.Store); ok {
		return ratelimit.NewRedis(rs.Client(), "streamd:")
	}
	return ratelimit.NewMemory(nil)
}
