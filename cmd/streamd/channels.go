package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/streamd/streamd/api"
	"github.com/streamd/streamd/live"
	"github.com/streamd/streamd/packager"
	"github.com/streamd/streamd/playback"
	"github.com/streamd/streamd/store"
)

// syncChannels makes the metadata store agree with the config file's
// channels (resolved keys included), which are the source of truth for
// the channels they name:
//
//   - a configured channel missing from the store is created, marked
//     FromConfig, with no owner (admins manage it);
//   - one whose stored key hash differs from the configured (or generated)
//     key gets that key: a key rotated in the store is rotated back;
//   - one that exists as an API-created channel is taken over by the
//     config (marked FromConfig, key replaced; logged as a warning);
//   - a FromConfig channel no longer in the config is deleted, so its key
//     stops working as it would have without a store.
//
// A configured channel's visibility is the config's (protected: true makes
// it "protected"), set again at each start like its key.
//
// Channels created through the API (FromConfig false) are left alone: both
// kinds live in the same table and publish the same way. The API refuses
// to rotate or delete FromConfig channels (the file would undo it at the
// next start). log may be nil; keys are never logged.
func syncChannels(ctx context.Context, meta store.Meta, chans []live.Channel, protected map[string]bool, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "channels")
	want := make(map[string]bool, len(chans))
	for _, c := range chans {
		want[c.Name] = true
		if c.StreamKey == "" {
			return fmt.Errorf("channel %q: no stream key to sync", c.Name)
		}
		vis := store.VisibilityPublic
		if protected[c.Name] {
			vis = store.VisibilityProtected
		}
		cur, err := meta.GetChannel(ctx, c.Name)
		if errors.Is(err, store.ErrNotFound) {
			if _, err := meta.CreateChannel(ctx, store.Channel{Name: c.Name, FromConfig: true, Visibility: vis}, c.StreamKey); err != nil {
				if errors.Is(err, store.ErrConflict) {
					return fmt.Errorf("channel %q: its stream key is already used by another channel in the metadata store; change one of them", c.Name)
				}
				return fmt.Errorf("channel %q: %w", c.Name, err)
			}
			log.Info("channel from the config added to the metadata store", "channel", c.Name)
			continue
		}
		if err != nil {
			return fmt.Errorf("channel %q: %w", c.Name, err)
		}
		if cur.Visibility != vis {
			if _, err := meta.UpdateChannel(ctx, c.Name, store.ChannelUpdate{Visibility: &vis}); err != nil {
				return fmt.Errorf("channel %q: %w", c.Name, err)
			}
			log.Info("channel visibility set from the config", "channel", c.Name, "visibility", vis)
		}
		if !cur.FromConfig {
			if _, err := meta.UpdateChannel(ctx, c.Name, store.ChannelUpdate{FromConfig: ptrTo(true)}); err != nil {
				return fmt.Errorf("channel %q: %w", c.Name, err)
			}
			log.Warn("a channel created through the API is now managed by the config file (its key is the config's)",
				"channel", c.Name, "owner", cur.OwnerID)
		}
		byKey, err := meta.ChannelByStreamKey(ctx, c.StreamKey)
		switch {
		case err == nil && byKey.Name == c.Name:
			continue // the key is already this channel's
		case err == nil:
			return fmt.Errorf("channel %q: its stream key is already used by channel %q in the metadata store; change one of them", c.Name, byKey.Name)
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("channel %q: %w", c.Name, err)
		}
		if _, err := meta.RotateStreamKey(ctx, c.Name, c.StreamKey); err != nil {
			return fmt.Errorf("channel %q: %w", c.Name, err)
		}
		log.Info("stream key of a channel from the config set in the metadata store", "channel", c.Name)
	}
	all, err := meta.ListChannels(ctx)
	if err != nil {
		return fmt.Errorf("channels: %w", err)
	}
	for _, c := range all {
		if c.FromConfig && !want[c.Name] {
			if err := meta.DeleteChannel(ctx, c.Name); err != nil && !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("channel %q: %w", c.Name, err)
			}
			log.Info("channel no longer in the config removed from the metadata store", "channel", c.Name)
		}
	}
	return nil
}

func ptrTo[T any](v T) *T { return &v }

// channelKeys is what storeKeys needs of the metadata store.
type channelKeys interface {
	ChannelByStreamKey(ctx context.Context, streamKey string) (store.Channel, error)
	ListChannels(ctx context.Context) ([]store.Channel, error)
}

// storeKeys lets the hub check stream keys in the metadata store (by the
// key's SHA-256: the plain key is never stored) and list its channels.
type storeKeys struct {
	meta channelKeys
}

var (
	_ live.KeyResolver   = storeKeys{}
	_ live.ChannelLister = storeKeys{}
)

// ChannelByKey implements live.KeyResolver: unknown keys are (_, false,
// nil); only an unreachable store is an error (whose text, by the store's
// contract, never holds the key).
func (s storeKeys) ChannelByKey(ctx context.Context, key string) (string, bool, error) {
	ch, err := s.meta.ChannelByStreamKey(ctx, key)
	switch {
	case err == nil:
		return ch.Name, true, nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
		return "", false, nil
	}
	return "", false, err
}

// ChannelNames implements live.ChannelLister.
func (s storeKeys) ChannelNames(ctx context.Context) ([]string, error) {
	list, err := s.meta.ListChannels(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(list))
	for i, c := range list {
		names[i] = c.Name
	}
	return names, nil
}

// apiChannels is the metadata store as the channel API sees it: deleting
// a channel removes its live objects first (api.ChannelObjects), and a
// name is taken again only once no object of an earlier channel of that
// name is left — those would be served under the new channel's
// visibility.
type apiChannels struct {
	store.Meta
	objects *playback.ChannelObjects
}

var _ api.ChannelObjects = apiChannels{}

// RemoveChannelObjects implements api.ChannelObjects.
func (c apiChannels) RemoveChannelObjects(ctx context.Context, name string) error {
	return c.objects.RemoveChannelObjects(ctx, name)
}

// CreateChannel removes what a deleted channel of that name may have left
// (a segment its packager wrote after the delete, on another node) before
// creating it; a name still in use is the store's conflict as usual.
func (c apiChannels) CreateChannel(ctx context.Context, ch store.Channel, streamKey string) (store.Channel, error) {
	if _, err := c.Meta.GetChannel(ctx, ch.Name); errors.Is(err, store.ErrNotFound) {
		if err := c.objects.RemoveChannelObjects(ctx, ch.Name); err != nil {
			return store.Channel{}, err
		}
	}
	return c.Meta.CreateChannel(ctx, ch, streamKey)
}

// onAir reports whether this node publishes or still packages a channel
// (after the publisher leaves, the packager ends the playlist end_grace
// later).
func onAir(hub *live.Hub, pk *packager.Packager) func(name string) bool {
	return func(name string) bool {
		if hub.Busy(name) != nil {
			return true
		}
		st, ok := pk.Stats(name)
		return ok && (st.Live || !st.Ended)
	}
}
