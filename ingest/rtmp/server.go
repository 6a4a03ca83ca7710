// Package rtmp is streamd's RTMP ingest: it accepts publishers (OBS,
// ffmpeg, hardware encoders) on rtmp://HOST:PORT/live/{stream_key} and
// feeds their tracks and access units into the live hub. Playback over
// RTMP is refused: streamd serves viewers over HLS.
package rtmp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/streamd/streamd/live"
	"github.com/streamd/streamd/media"
)

// Publisher is what the server needs from the hub (*live.Hub implements it).
//
// Lookup is used to refuse an unknown stream key right after the publish
// command, before NetStream.Publish.Start is sent and before any media of
// an unauthenticated peer is parsed. Publish needs the tracks, which are
// only known after ~2 s of media, so it runs later.
type Publisher interface {
	Lookup(key string) (live.Channel, bool)
	Publish(key, protocol, remote string, tracks []*media.Track) (*live.Stream, error)
}

// DefaultReadTimeout is used when Server.ReadTimeout is zero.
const DefaultReadTimeout = 10 * time.Second

// setupBudget bounds the whole setup of a connection (handshake, connect,
// publish command, track probing) on top of ReadTimeout. The per-read
// timeout alone would let a peer that trickles a byte now and then hold a
// goroutine forever; the probing needs about 2 s of media, so this leaves
// ample room for slow links.
const setupBudget = 15 * time.Second

// Server accepts RTMP publishers. Set the fields, then call Start; Close
// stops it. A Server cannot be restarted.
type Server struct {
	Addr string // listen address, e.g. ":1935" or "127.0.0.1:0"
	Hub  Publisher
	Log  *slog.Logger
	// ReadTimeout drops a publisher that sends nothing for this long
	// (DefaultReadTimeout when zero). It also bounds every read during the
	// handshake, so a half-open connection cannot hold a goroutine.
	ReadTimeout time.Duration

	log         *slog.Logger
	readTimeout time.Duration

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]struct{}
	closing bool
	done    chan struct{} // closed by Close; wakes the accept back-off

	wg sync.WaitGroup
}

// Start listens on Addr and accepts connections in the background. It
// returns listen errors, e.g. "rtmp.addr :1935: address already in use".
func (s *Server) Start() error {
	if s.Hub == nil {
		return errors.New("rtmp: Server.Hub is nil")
	}
	s.readTimeout = s.ReadTimeout
	if s.readTimeout <= 0 {
		s.readTimeout = DefaultReadTimeout
	}
	base := s.Log
	if base == nil {
		base = slog.New(slog.DiscardHandler)
	}
	s.log = base.With("component", "rtmp")

	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("rtmp.addr %s: %w", s.Addr, listenCause(err))
	}

	s.mu.Lock()
	if s.ln != nil || s.closing {
		s.mu.Unlock()
		ln.Close()
		return errors.New("rtmp: Server.Start called twice or after Close")
	}
	s.ln = ln
	s.conns = map[net.Conn]struct{}{}
	s.done = make(chan struct{})
	s.mu.Unlock()

	s.log.Info("listening", "addr", ln.Addr().String())
	s.wg.Add(1)
	go s.acceptLoop(ln)
	return nil
}

// listenCause strips "listen tcp :1935: bind:" so the configuration error
// reads "rtmp.addr :1935: address already in use", while staying wrapped
// (errors.Is(err, syscall.EADDRINUSE) still works).
func listenCause(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
	}
	var sc *os.SyscallError
	if errors.As(err, &sc) && sc.Err != nil {
		err = sc.Err
	}
	return err
}

// ListenAddr is the address the server listens on (useful with port 0),
// or nil before Start.
func (s *Server) ListenAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops listening, closes every connection (their publications end
// with reason "server shutting down") and waits for all goroutines.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.wg.Wait()
		return
	}
	s.closing = true
	if s.done != nil {
		close(s.done)
	}
	if s.ln != nil {
		s.ln.Close()
	}
	// Closing the sockets unblocks every pending read and write, which is
	// what makes the Wait below bounded.
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosing() {
				return
			}
			// Typically EMFILE: keep serving the existing publishers and
			// retry instead of spinning or giving up.
			s.log.Error("accept failed; retrying", "err", err.Error(), "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.done:
				return
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond

		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[nc] = struct{}{}
		// Add under the same lock that Close takes before Wait, so Wait
		// never races with a late Add.
		s.wg.Add(1)
		s.mu.Unlock()

		go s.serve(nc)
	}
}

func (s *Server) serve(nc net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
		nc.Close()
	}()

	c := &session{
		srv:    s,
		nc:     nc,
		remote: nc.RemoteAddr().String(),
	}
	c.log = s.log.With("remote", c.remote)
	c.run()
}
