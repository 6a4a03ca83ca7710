package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/playback"
	"github.com/streamd/streamd/store"
)

// PlaybackSigner issues signed playback URLs (playback.Issuer).
type PlaybackSigner interface {
	Sign(prefix string, v playback.Viewer, clientIP string) (playback.Signed, error)
	// Ads reports whether a viewer of tier (empty: anonymous) sees ads.
	Ads(tier store.Tier) bool
}

// streamingJSON are the playback URLs a caller may use.
type streamingJSON struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"` // "channel" or "content"
	Protected bool   `json:"protected"`
	HLS       string `json:"hls"`
	// DASH is the MPD of a catalog item (live channels are HLS only).
	DASH string `json:"dash,omitempty"`
	// ExpiresAt is when the signed URLs stop working (protected only).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// MaxHeight is the tallest rendition the caller's tier may play
	// (protected only; absent: every rendition). Taller ones are not in
	// the master playlist the URL opens.
	MaxHeight int `json:"max_height,omitempty"`
	// Ads tells the player whether this viewer's tier shows ads (premium
	// and family do not, by default: auth.ad_free_tiers).
	Ads bool `json:"ads"`
}

// streaming answers GET /api/streaming/{id}, where id is a catalog item's
// id or a channel's name: the URLs the caller may play it with. A public
// one's are given to anyone; a protected one needs a logged-in caller and
// comes signed, for the caller's tier and for auth.url_token_ttl.
func (a *API) streaming(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	out, vis, err := a.playable(r, id)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	p := principal(r)
	tier := a.currentTier(r, p)
	out.Ads = a.d.Playback == nil || a.d.Playback.Ads(tier)
	if vis == store.VisibilityProtected {
		if p.UserID == "" {
			a.writeError(w, r, apiError(auth.CodeUnauthenticated, "log in to play this "+kindWord(out.Kind)))
			return
		}
		if a.d.Playback == nil {
			a.writeError(w, r, apiError(auth.CodeUnavailable, "signed playback is not configured on this server"))
			return
		}
		prefix := playback.ChannelPrefix(id)
		if out.Kind == "content" {
			prefix = playback.ContentPrefix(id)
		}
		s, err := a.d.Playback.Sign(prefix, playback.Viewer{UserID: p.UserID, Tier: tier}, a.d.ClientIP(r))
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		out.Protected, out.ExpiresAt, out.MaxHeight = true, &s.Expires, s.MaxHeight
		out.HLS += "?st=" + s.Token
		if out.DASH != "" {
			out.DASH += "?st=" + s.Token
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// currentTier is the caller's tier as stored now: the access token's may
// be up to its lifetime old, and a viewer who has just subscribed expects
// the better renditions at once (lowering a tier ends the sessions
// anyway). When the store cannot answer, the token's tier will do.
func (a *API) currentTier(r *http.Request, p auth.Principal) store.Tier {
	if p.UserID == "" {
		return ""
	}
	u, err := a.d.Users.GetUser(r.Context(), p.UserID)
	if err != nil {
		a.log.WarnContext(r.Context(), "tier lookup failed; using the access token's", "user", p.UserID, "err", err)
		return p.Tier
	}
	return u.Tier
}

func kindWord(kind string) string {
	if kind == "content" {
		return "item"
	}
	return kind
}

// playable finds id among catalog items, then channels.
func (a *API) playable(r *http.Request, id string) (streamingJSON, store.Visibility, error) {
	if len(id) > maxGenre {
		return streamingJSON{}, "", apiError(auth.CodeNotFound, "nothing to play with that id")
	}
	if a.d.Content != nil {
		c, err := a.d.Content.GetContent(r.Context(), id)
		switch {
		case err == nil:
			if c.EncodingStatus != store.EncodingReady {
				return streamingJSON{}, "", apiError(auth.CodeConflict,
					"not ready to play: encoding is "+string(c.EncodingStatus)+" (GET /api/content/"+id+" shows its progress)")
			}
			// The catalog hides protected items from anonymous callers;
			// so does this (401 below, before any URL).
			base := playback.ContentPrefix(c.ID)
			return streamingJSON{ID: c.ID, Kind: "content", HLS: base + "index.m3u8", DASH: base + "manifest.mpd"},
				orPublic(c.Visibility), nil
		case !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrInvalid):
			return streamingJSON{}, "", err
		}
	}
	if a.d.Channels != nil {
		ch, err := a.d.Channels.GetChannel(r.Context(), id)
		switch {
		case err == nil:
			return streamingJSON{ID: ch.Name, Kind: "channel", HLS: playback.ChannelPrefix(ch.Name) + "index.m3u8"},
				orPublic(ch.Visibility), nil
		case !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrInvalid):
			return streamingJSON{}, "", err
		}
	}
	return streamingJSON{}, "", apiError(auth.CodeNotFound, "nothing to play with that id")
}
