// Package live is the in-memory hub of live streams: ingest servers publish
// tracks and access units into it, and readers (the packager, later the
// transcoder) subscribe to each publication. The hub also owns the mapping
// from stream key to channel and the one-publisher-per-channel rule.
package live

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/streamd/streamd/media"
)

// ErrUnknownKey is returned by Publish when no channel has the given key.
var ErrUnknownKey = errors.New("unknown stream key")

// BusyError is returned by Publish when the channel already has a publisher.
type BusyError struct {
	Channel  string
	Protocol string
	Remote   string
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("channel %q is already being published over %s from %s", e.Channel, e.Protocol, e.Remote)
}

// Channel is a channel. The configured channels given to NewHub carry
// their key; a channel found through a KeyResolver carries only its name.
type Channel struct {
	Name      string
	StreamKey string
}

// KeyResolver finds the channel a stream key opens (the metadata store,
// which keeps only keys' hashes). ok is false, with a nil error, for a key
// no channel has; err is for a resolver that cannot answer, in which case
// the hub falls back to its configured channels. err must not contain the
// key: the hub logs it.
type KeyResolver interface {
	ChannelByKey(ctx context.Context, key string) (name string, ok bool, err error)
}

// ChannelLister is optionally implemented by a KeyResolver: the names of
// every channel, for Status (the page's list).
type ChannelLister interface {
	ChannelNames(ctx context.Context) ([]string, error)
}

// Defaults of the resolver calls.
const (
	// ResolveTimeout bounds one ChannelByKey or ChannelNames call.
	ResolveTimeout = 3 * time.Second
	// listTTL is how long Status reuses a channel list: the page polls,
	// and anyone may ask.
	listTTL = 2 * time.Second
)

// Listener is told about every new publication, before its first unit.
// It attaches readers with Stream.AddReader.
type Listener interface {
	OnPublish(s *Stream)
}

// Admitter is a Listener that may refuse a publication before it starts
// (a transcoder pool that is full and configured to refuse). The error
// goes back to ingest, which refuses the publisher with it.
type Admitter interface {
	Admit(channel string, tracks []*media.Track) error
}

// Reader receives a publication's units. WriteUnit is called from the
// publisher's goroutine and must not block for long; Close is called once
// when the publication ends.
type Reader interface {
	WriteUnit(u *media.Unit)
	Close()
}

// Hub holds the channels and their current publications.
type Hub struct {
	log *slog.Logger

	mu        sync.Mutex
	channels  []Channel
	streams   map[string]*Stream // by channel name
	listeners []Listener
	resolver  KeyResolver
	resolverN int      // counts SetKeyResolver calls
	listed    []string // the resolver's last channel list
	listedAt  time.Time
}

// NewHub creates a hub for the given channels.
func NewHub(log *slog.Logger, channels []Channel) *Hub {
	return &Hub{
		log:      log.With("component", "hub"),
		channels: append([]Channel(nil), channels...),
		streams:  map[string]*Stream{},
	}
}

// AddListener registers l for future publications.
func (h *Hub) AddListener(l Listener) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.listeners = append(h.listeners, l)
}

// SetKeyResolver makes r the authority on stream keys: from then on a key
// opens the channel r says, at the moment of each Lookup or Publish, so a
// key rotated in r stops working for new publications at once (a running
// publication is not interrupted). The configured channels given to NewHub
// are used only while r returns errors (the store is unreachable), and
// each such fallback is logged. nil goes back to the configured channels.
func (h *Hub) SetKeyResolver(r KeyResolver) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resolver, h.listed, h.listedAt = r, nil, time.Time{}
	h.resolverN++
}

// Lookup finds the channel for a stream key: through the KeyResolver when
// one is set (a hash lookup: the time it takes tells nothing about how
// much of a guessed key was right), else among the configured channels,
// compared in constant time for the same reason.
func (h *Hub) Lookup(key string) (Channel, bool) {
	if key == "" {
		return Channel{}, false
	}
	h.mu.Lock()
	r := h.resolver
	h.mu.Unlock()
	if r != nil {
		ctx, cancel := context.WithTimeout(context.Background(), ResolveTimeout)
		name, ok, err := r.ChannelByKey(ctx, key)
		cancel()
		switch {
		case err == nil && ok && name != "":
			return Channel{Name: name}, true
		case err == nil:
			return Channel{}, false
		}
		h.log.Warn("stream key store unreachable: checking the key against the configured channels only", "err", err.Error())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lookupLocked(key)
}

func (h *Hub) lookupLocked(key string) (Channel, bool) {
	var found Channel
	ok := false
	for _, c := range h.channels {
		if c.StreamKey != "" && subtle.ConstantTimeCompare([]byte(c.StreamKey), []byte(key)) == 1 {
			found, ok = c, true
		}
	}
	return found, ok
}

// Publish starts a publication on the channel whose stream key is key.
// protocol ("rtmp", "rtsp") and remote (the peer address) are for logs and
// status. The caller must Close the returned stream when the publisher goes.
func (h *Hub) Publish(key, protocol, remote string, tracks []*media.Track) (*Stream, error) {
	// Resolved outside the lock: a store round trip must not hold up
	// every other publisher and reader.
	ch, ok := h.Lookup(key)
	if !ok {
		return nil, ErrUnknownKey
	}
	h.mu.Lock()
	if cur := h.streams[ch.Name]; cur != nil {
		h.mu.Unlock()
		return nil, &BusyError{Channel: ch.Name, Protocol: cur.Protocol, Remote: cur.Remote}
	}
	for _, l := range h.listeners {
		if a, ok := l.(Admitter); ok {
			if err := a.Admit(ch.Name, tracks); err != nil {
				h.mu.Unlock()
				return nil, err
			}
		}
	}
	s := &Stream{
		hub:      h,
		Channel:  ch.Name,
		Protocol: protocol,
		Remote:   remote,
		Tracks:   tracks,
		Started:  time.Now(),
	}
	h.streams[ch.Name] = s
	listeners := append([]Listener(nil), h.listeners...)
	h.mu.Unlock()

	codecs := make([]string, len(tracks))
	for i, t := range tracks {
		codecs[i] = t.Codec.Name()
	}
	h.log.Info("publish started", "channel", ch.Name, "protocol", protocol, "remote", remote, "tracks", codecs)
	for _, l := range listeners {
		l.OnPublish(s)
	}
	return s, nil
}

// Busy returns a *BusyError when the channel has a publisher right now.
// Ingest asks before spending seconds probing a new publisher's tracks;
// Publish still decides, so two racing publishers cannot both win.
func (h *Hub) Busy(channel string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cur := h.streams[channel]; cur != nil {
		return &BusyError{Channel: channel, Protocol: cur.Protocol, Remote: cur.Remote}
	}
	return nil
}

// ChannelStatus describes a channel for the API and the web page.
type ChannelStatus struct {
	Name     string    `json:"name"`
	Live     bool      `json:"live"`
	Protocol string    `json:"protocol,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	Codecs   []string  `json:"codecs,omitempty"`
}

// Status lists every channel, live ones first, then by name. The channels
// are the KeyResolver's when it is a ChannelLister (reused for 2 s; the
// last good list, or the configured channels, while it fails), else the
// configured ones; a channel with a publication is always listed.
func (h *Hub) Status() []ChannelStatus {
	names := h.channelNames()
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]ChannelStatus, 0, len(names))
	seen := make(map[string]bool, len(names))
	add := func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		st := ChannelStatus{Name: name}
		if s := h.streams[name]; s != nil {
			st.Live, st.Protocol, st.Since = true, s.Protocol, s.Started
			for _, t := range s.Tracks {
				st.Codecs = append(st.Codecs, t.Codec.Name())
			}
		}
		out = append(out, st)
	}
	for _, n := range names {
		add(n)
	}
	for n := range h.streams {
		add(n)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Live != out[j].Live {
			return out[i].Live
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// channelNames is the list Status shows.
func (h *Hub) channelNames() []string {
	h.mu.Lock()
	l, _ := h.resolver.(ChannelLister)
	if l != nil && h.listed != nil && time.Since(h.listedAt) < listTTL {
		names := h.listed
		h.mu.Unlock()
		return names
	}
	gen, fallback := h.resolverN, h.listed
	if fallback == nil {
		for _, c := range h.channels {
			fallback = append(fallback, c.Name)
		}
	}
	h.mu.Unlock()
	if l == nil {
		return fallback
	}
	ctx, cancel := context.WithTimeout(context.Background(), ResolveTimeout)
	names, err := l.ChannelNames(ctx)
	cancel()
	if err != nil {
		h.log.Warn("channel store unreachable: listing the last known channels", "err", err.Error())
		return fallback
	}
	if names == nil {
		names = []string{}
	}
	h.mu.Lock()
	if h.resolverN == gen {
		h.listed, h.listedAt = names, time.Now()
	}
	h.mu.Unlock()
	return names
}

// Stream is one publication on one channel.
type Stream struct {
	hub      *Hub
	Channel  string
	Protocol string
	Remote   string
	Tracks   []*media.Track
	Started  time.Time

	mu      sync.RWMutex
	readers []Reader
	closed  bool
}

// AddReader attaches r; it receives every unit written after this call.
func (s *Stream) AddReader(r Reader) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		r.Close()
		return
	}
	s.readers = append(s.readers, r)
}

// WriteUnit hands u to every reader. It is called by the single ingest
// goroutine of the publication.
func (s *Stream) WriteUnit(u *media.Unit) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	for _, r := range s.readers {
		r.WriteUnit(u)
	}
}

// Close ends the publication; reason is logged (nil for a clean stop).
// It is safe to call more than once.
func (s *Stream) Close(reason error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	readers := s.readers
	s.readers = nil
	s.mu.Unlock()

	for _, r := range readers {
		r.Close()
	}

	h := s.hub
	h.mu.Lock()
	if h.streams[s.Channel] == s {
		delete(h.streams, s.Channel)
	}
	h.mu.Unlock()
	attrs := []any{"channel", s.Channel, "protocol", s.Protocol, "remote", s.Remote, "duration", time.Since(s.Started).Round(time.Millisecond)}
	if reason != nil {
		attrs = append(attrs, "reason", reason.Error())
	}
	h.log.Info("publish ended", attrs...)
}
