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
// When the metadata store does not answer, the last answer it gave for
// that name stands (logged): a database blip must not stop every viewer
// of every channel, and a visibility that was true a moment ago is the
// best guess. Only a name never seen before is an error (the origin then
// fails closed).
type Policy struct {
	meta Meta
	memo *otter.Cache[string, bool]
	last *otter.Cache[string, bool] // the last answer the store gave, per name
	log  *slog.Logger
}

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
		memo: otter.Must(&otter.Options[string, bool]{
			MaximumSize:      100_000,
			ExpiryCalculator: otter.ExpiryWriting[string, bool](ttl),
		}),
		last: otter.Must(&otter.Options[string, bool]{MaximumSize: 100_000})}
}

// Protected reports whether the object key (no leading slash) belongs to
// a protected channel or catalog item. Keys outside live/{channel}/ and
// vod/{id}/, and names the store does not know, are public: there is
// nothing to protect them with. An unreachable store is an error (the
// origin then fails closed).
func (p *Policy) Protected(ctx context.Context, key string) (bool, error) {
	memoKey, ok := resource(key)
	if !ok {
		return false, nil
	}
	// Every request of every viewer passes here: the hit path allocates
	// nothing (memoKey is a substring of key).
	if prot, ok := p.memo.GetIfPresent(memoKey); ok {
		return prot, nil
	}
	return p.memo.Get(ctx, memoKey, otter.LoaderFunc[string, bool](p.load))
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

func (p *Policy) load(ctx context.Context, memoKey string) (bool, error) {
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
		p.last.Set(memoKey, false)
		return false, nil
	case err != nil:
		if prot, ok := p.last.GetIfPresent(memoKey); ok {
			// Remembered for the memo's lifetime: one warning per name per
			// MemoTTL while the store is down.
			p.log.WarnContext(ctx, "metadata store unavailable; keeping the last known visibility",
				"resource", memoKey, "protected", prot, "err", err)
			return prot, nil
		}
		return false, fmt.Errorf("visibility of %s: %w", memoKey, err)
	}
	prot := vis == store.VisibilityProtected
	p.last.Set(memoKey, prot)
	return prot, nil
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
