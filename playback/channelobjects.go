package playback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/store"
)

// ObjectRemover is what ChannelObjects needs of the object store.
type ObjectRemover interface {
	List(ctx context.Context, prefix string) ([]store.ObjectInfo, error)
	Delete(ctx context.Context, keys ...string) error
}

// ChannelObjects removes what a channel leaves in the object store: its
// live/{name}/ playlists and segments. A deleted channel's objects must
// go with it, or a publisher who creates the same name would serve
// them under the new channel's visibility (a protected recording made
// public).
type ChannelObjects struct {
	Objects ObjectRemover
	// Policy, when set, forgets the channel once its objects are gone, so
	// this node stops serving it at once.
	Policy *Policy
	// OnAir reports whether this process still publishes or packages the
	// channel (its packager would write again); nil: never. A publication
	// on another node sharing the object store is not seen: its new
	// segments keep appearing, which RemoveChannelObjects reports.
	OnAir func(name string) bool
	Log   *slog.Logger
}

// removeRounds bounds how often RemoveChannelObjects lists and deletes:
// objects that still appear after that are being written by someone.
const removeRounds = 3

// deleteBatch is how many keys one Delete call gets.
const deleteBatch = 1000

// ErrUnsafeName is returned for a name that is not one path element.
var ErrUnsafeName = errors.New("playback: not a channel name")

// RemoveChannelObjects deletes every object under live/{name}/ and
// returns once none is left. A channel on air, or whose objects keep
// appearing, is refused with an *auth.Error of code conflict that says
// what to do; a store that fails is an error as is.
func (c *ChannelObjects) RemoveChannelObjects(ctx context.Context, name string) error {
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return fmt.Errorf("%w: %q", ErrUnsafeName, name)
	}
	if c.OnAir != nil && c.OnAir(name) {
		return &auth.Error{Code: auth.CodeConflict, Message: fmt.Sprintf(
			"channel %q is on air: stop publishing, wait a few seconds for its stream to end, then delete it", name)}
	}
	prefix := LivePrefix + name + "/"
	removed := 0
	for range removeRounds {
		infos, err := c.Objects.List(ctx, prefix)
		if err != nil {
			return fmt.Errorf("listing the objects of channel %q: %w", name, err)
		}
		if len(infos) == 0 {
			if c.Policy != nil {
				c.Policy.ForgetChannel(name)
			}
			if removed > 0 && c.Log != nil {
				c.Log.InfoContext(ctx, "channel objects removed", "component", "playback", "channel", name, "objects", removed)
			}
			return nil
		}
		keys := make([]string, len(infos))
		for i, o := range infos {
			keys[i] = o.Key
		}
		for i := 0; i < len(keys); i += deleteBatch {
			if err := c.Objects.Delete(ctx, keys[i:min(i+deleteBatch, len(keys))]...); err != nil {
				return fmt.Errorf("deleting the objects of channel %q: %w", name, err)
			}
		}
		removed += len(keys)
	}
	return &auth.Error{Code: auth.CodeConflict, Message: fmt.Sprintf(
		"objects of channel %q keep appearing (is it published on another node?): stop publishing, then try again", name)}
}
