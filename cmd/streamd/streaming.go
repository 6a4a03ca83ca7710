package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/configs"
	"github.com/streamd/streamd/origin"
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

// protectedPrefixes are the origin paths of protected channels.
func protectedPrefixes(cfg configs.Config) []string {
	var out []string
	for _, ch := range cfg.Channels {
		if ch.Protected {
			out = append(out, "/live/"+ch.Name+"/")
		}
	}
	return out
}

// streamingHandler answers GET /api/streaming/{id}: the playback URLs the
// caller may use. A public channel's URL is given to anyone; a protected
// one needs a logged-in user and comes signed, limited to their tier.
type streamingHandler struct {
	cfg       configs.Config
	signer    *auth.URLSigner
	principal func(r *http.Request) (auth.Principal, error)
	now       func() time.Time
}

func (h streamingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var ch *configs.Channel
	for i := range h.cfg.Channels {
		if h.cfg.Channels[i].Name == id {
			ch = &h.cfg.Channels[i]
		}
	}
	if ch == nil {
		writeAPIError(w, http.StatusNotFound, "not_found", "no channel "+id)
		return
	}
	play := "/live/" + ch.Name + "/index.m3u8"
	if !ch.Protected {
		writeJSON(w, map[string]any{"id": ch.Name, "protected": false, "hls": play})
		return
	}
	p, err := h.principal(r)
	if err != nil {
		writeAPIError(w, http.StatusUnauthorized, "unauthenticated", "log in to play this channel")
		return
	}
	maxH := h.cfg.Auth.TierMaxHeight[string(p.Tier)]
	exp := h.now().Add(time.Duration(h.cfg.Auth.URLTokenTTL)).Truncate(time.Second)
	g := auth.Grant{Prefix: "/live/" + ch.Name + "/", Expires: exp, MaxHeight: maxH}
	if h.cfg.Auth.URLTokenBindIP {
		g.ClientIP = origin.RemoteAddrIP(r)
	}
	tok, err := h.signer.Sign(g)
	if err != nil {
		writeAPIError(w, http.StatusInternalServerError, "internal", "cannot sign the playback URL")
		return
	}
	writeJSON(w, map[string]any{"id": ch.Name, "protected": true, "hls": play + "?st=" + tok,
		"expires_at": exp.UTC().Format(time.RFC3339), "max_height": maxH})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// writeAPIError uses the API's one error shape.
func writeAPIError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
