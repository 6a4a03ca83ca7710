package auth

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/streamd/streamd/store"
)

// Revoking signed playback URLs.
//
// A signed URL needs no lookup to check, which is what lets every origin
// check every segment request for the cost of one HMAC; the price is that
// it cannot be taken back. For the moments that must take a viewer's
// access away at once — log out everywhere, a role change, a lower tier,
// a new password — the user's URLs issued until then are revoked: the
// time is kept in the sessions store (auth:playback_revoked:{user}), and
// the origin refuses a token with that Subject issued earlier.
//
// The origin remembers each user's revocation time for RevocationMemoTTL,
// so revoking takes effect within that, and a viewer costs one
// sessions-store read per RevocationMemoTTL, not one per segment. A
// shared cache (a CDN) that already holds a revoked URL's objects keeps
// serving them until the Cache-Control the origin gave them runs out.

// RevocationMemoTTL is how long the origin trusts a user's revocation time.
const RevocationMemoTTL = 5 * time.Second

// MaxURLTokenTTL is the longest a playback URL may work
// (auth.url_token_ttl's limit): a revocation is kept that long.
const MaxURLTokenTTL = 7 * 24 * time.Hour

func playbackRevokedKey(userID string) string { return "auth:playback_revoked:" + userID }

// revokePlayback revokes every playback URL issued to userID until now.
func (s *Service) revokePlayback(ctx context.Context, userID string) error {
	at := strconv.FormatInt(s.now().UnixMilli(), 10)
	if err := s.sessions.Set(ctx, playbackRevokedKey(userID), []byte(at), MaxURLTokenTTL); err != nil {
		return s.storeErr(err)
	}
	s.log.Info("playback URLs revoked", "user", userID)
	return nil
}

// PlaybackRevocations answers, for the origin, whether a signed URL has
// been revoked. Safe for concurrent use.
type PlaybackRevocations struct {
	sessions store.Sessions
	memo     *otter.Cache[string, int64] // user → revoked before (Unix ms; 0: never)
	log      *slog.Logger
}

// NewPlaybackRevocations reads revocations from sessions (the same store
// the Service writes them to). log may be nil.
func NewPlaybackRevocations(sessions store.Sessions, log *slog.Logger) *PlaybackRevocations {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PlaybackRevocations{sessions: sessions, log: log.With("component", "auth"),
		memo: otter.Must(&otter.Options[string, int64]{
			MaximumSize:      1_000_000,
			ExpiryCalculator: otter.ExpiryWriting[string, int64](RevocationMemoTTL),
		})}
}

// Revoked reports whether a token for subject issued at issued has been
// revoked. A token without a subject never is. When the sessions store
// cannot answer, the token is taken as not revoked (logged): revocation
// narrows a URL's life that its expiry bounds anyway, and a sessions
// outage must not stop every paying viewer's playback.
func (r *PlaybackRevocations) Revoked(ctx context.Context, subject string, issued time.Time) bool {
	if subject == "" {
		return false
	}
	before, ok := r.memo.GetIfPresent(subject)
	if !ok {
		before, _ = r.memo.Get(ctx, subject, otter.LoaderFunc[string, int64](r.load))
	}
	return issued.UnixMilli() < before
}

func (r *PlaybackRevocations) load(ctx context.Context, subject string) (int64, error) {
	b, err := r.sessions.Get(ctx, playbackRevokedKey(subject))
	if err != nil {
		if !isNotFound(err) {
			r.log.WarnContext(ctx, "cannot read playback revocations; taking the URL as valid", "user", subject, "err", err)
		}
		return 0, nil // remembered: one warning per user per RevocationMemoTTL
	}
	ms, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, nil
	}
	return ms, nil
}
