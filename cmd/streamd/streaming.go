package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/configs"
	"github.com/streamd/streamd/playback"
	"github.com/streamd/streamd/store"
)

// urlSigner builds the playback-URL signer from auth.url_signing_key or
// the key generated into data_dir.
func urlSigner(cfg configs.Config, log *slog.Logger) (*auth.URLSigner, error) {
	var key []byte
	if cfg.Auth.URLSigningKey != "" {
		k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cfg.Auth.URLSigningKey))
		if err != nil {
			return nil, errors.New("auth.url_signing_key: not base64 (make one with `openssl rand -base64 32`)")
		}
		key = k
	} else {
		ks := auth.URLSignerKeyStore{Dir: cfg.DataDir}
		k, created, err := ks.LoadOrCreate()
		if err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
		if created {
			log.Info("generated the playback-URL signing key", "dir", cfg.DataDir)
		}
		key = k
	}
	s, err := auth.NewURLSigner(key)
	if err != nil {
		return nil, fmt.Errorf("auth.url_signing_key: %w", err)
	}
	return s, nil
}

// issuer signs playback URLs as auth.url_token_ttl, auth.url_token_bind_ip
// and auth.tier_max_height say, and knows auth.ad_free_tiers.
func issuer(cfg configs.Config, signer *auth.URLSigner) playback.Issuer {
	caps := make(map[store.Tier]int, len(cfg.Auth.TierMaxHeight))
	for tier, h := range cfg.Auth.TierMaxHeight {
		caps[store.Tier(tier)] = h
	}
	adFree := make(map[store.Tier]bool, len(cfg.Auth.AdFreeTiers))
	for _, tier := range cfg.Auth.AdFreeTiers {
		adFree[store.Tier(tier)] = true
	}
	return playback.Issuer{Signer: signer, TTL: time.Duration(cfg.Auth.URLTokenTTL),
		BindIP: cfg.Auth.URLTokenBindIP, TierMaxHeight: caps, AdFree: adFree}
}
