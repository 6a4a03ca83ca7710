// Package live is the in-memory hub of live streams: ingest servers publish
// tracks and access units into it, and readers (the packager, later the
// transcoder) subscribe to each publication. The hub also owns the mapping
// from stream key to channel and the one-publisher-per-channel rule.
package live

import (
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

// Channel is a configured channel.
type Channel struct {
	Name      string
	StreamKey string
}

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

// Lookup finds the channel for a stream key, comparing in constant time so
// the response time does not leak how much of a guessed key was right.
func (h *Hub) Lookup(key string) (Channel, bool) {
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
	h.mu.Lock()
	ch, ok := h.lookupLocked(key)
	if !ok {
		h.mu.Unlock()
		return nil, ErrUnknownKey
	}
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

// Status lists every channel, live ones first, then by name.
func (h *Hub) Status() []ChannelStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]ChannelStatus, 0, len(h.channels))
	for _, c := range h.channels {
		st := ChannelStatus{Name: c.Name}
		if s := h.streams[c.Name]; s != nil {
			st.Live, st.Protocol, st.Since = true, s.Protocol, s.Started
			for _, t := range s.Tracks {
				st.Codecs = append(st.Codecs, t.Codec.Name())
			}
		}
		out = append(out, st)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Live != out[j].Live {
			return out[i].Live
		}
		return out[i].Name < out[j].Name
	})
	return out
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
