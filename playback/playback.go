// Package playback decides who may play what: which origin paths need a
// signed URL (channels and catalog items whose visibility is "protected",
// as the metadata store says), and the signed URLs a viewer's tier
// entitles them to. The origin asks Policy before serving an object; the
// API asks Issuer when a viewer wants to play.
//
// The origin layout it knows: live/{channel}/... for channels,
// vod/{content id}/... for catalog items (index.m3u8 the HLS master,
// manifest.mpd the DASH manifest, both in that folder).
package playback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/store"
)

// Meta is what playback reads of the metadata store.
type Meta interface {
	GetChannel(ctx context.Context, name string) (store.Channel, error)
	GetContent(ctx context.Context, id string) (store.Content, error)
}

// Origin paths of the two kinds of playable things.
const (
	LivePrefix = "live/"
	VODPrefix  = "vod/"
)

// ChannelPrefix is the absolute origin path a channel's objects live
// under. Channel names and content ids need no escaping (lower-case
// letters, digits, - and _), and the token's prefix is compared with the
// unescaped path.
func ChannelPrefix(name string) string { return "/" + LivePrefix + name + "/" }

// ContentPrefix is the absolute origin path a catalog item's objects live under.
func ContentPrefix(id string) string { return "/" + VODPrefix + id + "/" }

// DefaultMemoTTL is how long Policy trusts what it read: making a channel
// or an item protected (or public) takes effect at the origin at most
// this much later.
const DefaultMemoTTL = 2 * time.Second

// Policy answers, for an object key, whether it needs a playback token.
// Answers are remembered for a short while (one metadata read per
// channel or item per MemoTTL, however many viewers ask), and concurrent
// misses of one name share one read.
//
// A name the store does not know fails closed: Protected says it needs a
// token (none can be issued for it) and Gate answers 404. Objects of a
// deleted channel or item must never become public, nor be served under
// the visibility of a new channel that takes the name.
//
// When the metadata store does not answer, the last answer it gave for
// that name stands (logged): a database blip must not stop every viewer
// of every channel, and a visibility that was true a moment ago is the
// best guess. Only a name never seen before is an error (the origin then
// fails closed).
type Policy struct {
	meta Meta
	memo *otter.Cache[string, access]
	last *otter.Cache[string, access] // the last answer the store gave, per name
	log  *slog.Logger
}

// access is what the store says of a channel or item.
type access uint8

const (
	accessUnknown access = iota // no such channel or item
	accessPublic
	accessProtected
)

// NewPolicy reads visibilities from meta; ttl <= 0 means DefaultMemoTTL.
// log may be nil.
func NewPolicy(meta Meta, ttl time.Duration, log *slog.Logger) *Policy {
	if ttl <= 0 {
		ttl = DefaultMemoTTL
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Policy{meta: meta, log: log.With("component", "playback"),
		memo: otter.Must(&otter.Options[string, access]{
			MaximumSize:      100_000,
			ExpiryCalculator: otter.ExpiryWriting[string, access](ttl),
		}),
		last: otter.Must(&otter.Options[string, access]{MaximumSize: 100_000})}
}

// Protected reports whether the object key (no leading slash) needs a
// playback token: it belongs to a protected channel or catalog item, or
// to a name the store does not know (fail closed). Keys outside
// live/{channel}/ and vod/{id}/ are public: there is nothing to protect
// them with. An unreachable store is an error (the origin then fails
// closed).
func (p *Policy) Protected(ctx context.Context, key string) (bool, error) {
	a, ok, err := p.access(ctx, key)
	return ok && a != accessPublic, err
}

// access is the channel's or item's access for key; ok is false for keys
// that belong to neither.
func (p *Policy) access(ctx context.Context, key string) (access, bool, error) {
	memoKey, ok := resource(key)
	if !ok {
		return 0, false, nil
	}
	// Every request of every viewer passes here: the hit path allocates
	// nothing (memoKey is a substring of key).
	if a, ok := p.memo.GetIfPresent(memoKey); ok {
		return a, true, nil
	}
	a, err := p.memo.Get(ctx, memoKey, otter.LoaderFunc[string, access](p.load))
	return a, true, err
}

// ForgetChannel drops what the policy remembers of a channel, so that a
// deletion or a change made on this node takes effect here at once
// (other nodes follow within the memo's TTL).
func (p *Policy) ForgetChannel(name string) {
	p.memo.Invalidate(LivePrefix + name)
	p.last.Invalidate(LivePrefix + name)
}

// resource maps a key to "live/{name}" or "vod/{id}".
func resource(key string) (string, bool) {
	for _, prefix := range []string{LivePrefix, VODPrefix} {
		rest, ok := strings.CutPrefix(key, prefix)
		if !ok {
			continue
		}
		name, _, found := strings.Cut(rest, "/")
		if !found || name == "" {
			return "", false // a file directly under live/ or vod/: no one's
		}
		return key[:len(prefix)+len(name)], true
	}
	return "", false
}

func (p *Policy) load(ctx context.Context, memoKey string) (access, error) {
	var vis store.Visibility
	var err error
	if name, ok := strings.CutPrefix(memoKey, LivePrefix); ok {
		var ch store.Channel
		ch, err = p.meta.GetChannel(ctx, name)
		vis = ch.Visibility
	} else {
		var c store.Content
		c, err = p.meta.GetContent(ctx, strings.TrimPrefix(memoKey, VODPrefix))
		vis = c.Visibility
	}
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
		p.last.Set(memoKey, accessUnknown)
		return accessUnknown, nil
	case err != nil:
		if a, ok := p.last.GetIfPresent(memoKey); ok {
			// Remembered for the memo's lifetime: one warning per name per
			// MemoTTL while the store is down.
			p.log.WarnContext(ctx, "metadata store unavailable; keeping the last known visibility",
				"resource", memoKey, "protected", a == accessProtected, "known", a != accessUnknown, "err", err)
			return a, nil
		}
		return accessUnknown, fmt.Errorf("visibility of %s: %w", memoKey, err)
	}
	a := accessPublic
	if vis == store.VisibilityProtected {
		a = accessProtected
	}
	p.last.Set(memoKey, a)
	return a, nil
}

// Gate answers 404 for origin paths under /live/{name}/ and /vod/{id}/
// whose channel or item the metadata store does not know, and passes
// every other request to next (the origin). An unreachable store is left
// to next, whose Protected call then fails closed with 503.
func (p *Policy) Gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok, err := p.access(r.Context(), strings.TrimPrefix(r.URL.Path, "/"))
		if ok && err == nil && a == accessUnknown {
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "no such channel or item", http.StatusNotFound)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Issuer signs playback URLs.
type Issuer struct {
	Signer *auth.URLSigner
	// TTL is how long a signed URL works.
	TTL time.Duration
	// BindIP ties each URL to the address that asked for it.
	BindIP bool
	// TierMaxHeight caps, per subscription tier, the rendition height
	// (short side) a viewer may play; absent or 0: no cap.
	TierMaxHeight map[store.Tier]int
	// AdFree are the tiers whose viewers see no ads.
	AdFree map[store.Tier]bool
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Ads reports whether a viewer of tier (empty: not logged in) sees ads.
func (i Issuer) Ads(tier store.Tier) bool { return !i.AdFree[tier] }

// Signed is a playback token and what it allows.
type Signed struct {
	Token     string
	Expires   time.Time
	MaxHeight int // 0: every rendition
}

// Viewer is who a playback URL is for.
type Viewer struct {
	UserID string // the token's subject: revoking the user's URLs stops it
	Tier   store.Tier
}

// Sign issues a token for everything under prefix (ChannelPrefix or
// ContentPrefix) to v asking from clientIP.
func (i Issuer) Sign(prefix string, v Viewer, clientIP string) (Signed, error) {
	now := time.Now
	if i.Now != nil {
		now = i.Now
	}
	t := now()
	// Whole seconds: the token carries seconds, and the expiry the API
	// reports must be the one the origin enforces.
	exp := t.Add(i.TTL).Truncate(time.Second)
	g := auth.Grant{Prefix: prefix, Expires: exp, MaxHeight: i.TierMaxHeight[v.Tier], Subject: v.UserID, IssuedAt: t}
	if i.BindIP {
		g.ClientIP = clientIP
	}
	tok, err := i.Signer.Sign(g)
	if err != nil {
		return Signed{}, fmt.Errorf("sign playback URL for %s: %w", prefix, err)
	}
	return Signed{Token: tok, Expires: exp, MaxHeight: g.MaxHeight}, nil
}
