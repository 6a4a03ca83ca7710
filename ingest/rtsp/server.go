// Package rtsp is streamd's RTSP ingest: publishers ANNOUNCE, SETUP and
// RECORD on rtsp://HOST:PORT/live/{stream_key} (TCP-interleaved or UDP
// transport), and the server depacketizes their RTP into access units for
// the live hub. Playback over RTSP is refused: streamd serves HLS.
package rtsp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"

	"github.com/streamd/streamd/live"
	"github.com/streamd/streamd/media"
)

const protocolName = "rtsp"

// Publisher is what the server needs from the hub (*live.Hub implements it).
type Publisher interface {
	Publish(key, protocol, remote string, tracks []*media.Track) (*live.Stream, error)
}

// keyChecker is optionally implemented by the Publisher (*live.Hub does).
// It is only needed when a publisher's SDP lacks parameter sets, so
// publishing must wait for in-band ones but an unknown key should still be
// refused in ANNOUNCE.
type keyChecker interface {
	Lookup(key string) (live.Channel, bool)
}

// Server accepts RTSP publishers.
type Server struct {
	Addr        string // TCP, e.g. ":8554" or "127.0.0.1:0"
	UDPRTPAddr  string // e.g. ":8000"; empty disables UDP transport (TCP only)
	UDPRTCPAddr string // e.g. ":8001" (RTP port + 1); derived from UDPRTPAddr when empty
	Hub         Publisher
	Log         *slog.Logger
	ReadTimeout time.Duration // default 10s

	log         *slog.Logger
	readTimeout time.Duration
	srv         *gortsplib.Server
	done        chan struct{} // closed when the gortsplib server has stopped

	mu       sync.Mutex
	closing  bool
	sessions map[*gortsplib.ServerSession]*session
}

// ListenError is a listen failure, named after the setting an operator has
// to change.
type ListenError struct {
	Setting string // "rtsp.addr", "rtsp.udp_rtp_addr", "rtsp.udp_rtcp_addr"
	Addr    string
	Err     error
}

func (e *ListenError) Error() string {
	msg := e.Err.Error()
	// "listen tcp :8554: bind: address already in use" says too much
	// plumbing; the operator needs "address already in use".
	var se *os.SyscallError
	if errors.As(e.Err, &se) {
		msg = se.Err.Error()
	}
	return fmt.Sprintf("%s %s: %s", e.Setting, e.Addr, msg)
}

func (e *ListenError) Unwrap() error { return e.Err }

// Start listens and serves in the background. Listen failures come back as
// *ListenError ("rtsp.addr :8554: address already in use").
func (s *Server) Start() error {
	if s.Hub == nil {
		return errors.New("rtsp: no hub configured")
	}
	if s.Addr == "" {
		return errors.New("rtsp.addr is empty")
	}
	s.log = s.Log
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "rtsp")
	s.readTimeout = s.ReadTimeout
	if s.readTimeout <= 0 {
		s.readTimeout = 10 * time.Second
	}
	rtpAddr, rtcpAddr, err := udpAddrs(s.UDPRTPAddr, s.UDPRTCPAddr)
	if err != nil {
		return err
	}
	s.sessions = map[*gortsplib.ServerSession]*session{}
	s.done = make(chan struct{})

	srv := &gortsplib.Server{
		Handler:        &handler{s: s},
		RTSPAddress:    s.Addr,
		UDPRTPAddress:  rtpAddr,
		UDPRTCPAddress: rtcpAddr,
		ReadTimeout:    s.readTimeout,
		WriteTimeout:   s.readTimeout,
		// IdleTimeout bounds connections that never reach RECORD (scanners,
		// half-sent requests): they cost a goroutine until it expires, so it
		// matches ReadTimeout rather than gortsplib's 60 s default.
		IdleTimeout: s.readTimeout,
		Listen: func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			if err != nil {
				return nil, &ListenError{Setting: "rtsp.addr", Addr: s.Addr, Err: err}
			}
			return &retryListener{Listener: ln, log: s.log}, nil
		},
		ListenPacket: func(network, address string) (net.PacketConn, error) {
			pc, err := net.ListenPacket(network, address)
			if err != nil {
				setting := "rtsp.udp_rtcp_addr"
				if address == rtpAddr {
					setting = "rtsp.udp_rtp_addr"
				}
				return nil, &ListenError{Setting: setting, Addr: address, Err: err}
			}
			return pc, nil
		},
	}
	if err := srv.Start(); err != nil {
		if le, ok := errors.AsType[*ListenError](err); ok {
			return le
		}
		return fmt.Errorf("rtsp: %w", err)
	}
	// Only a started server is recorded, so Close after a failed Start is a no-op.
	s.srv = srv
	go func() {
		defer close(s.done)
		err := s.srv.Wait()
		s.mu.Lock()
		closing := s.closing
		s.mu.Unlock()
		if !closing {
			// Only an accept failure we could not ride out gets here.
			s.log.Error("rtsp server stopped", "error", redact(err.Error()))
		}
	}()
	s.log.Info("rtsp listening", "addr", s.ListenAddr().String(), "udp", rtpAddr != "")
	return nil
}

// udpAddrs validates the UDP settings up front so errors name the setting.
func udpAddrs(rtpAddr, rtcpAddr string) (string, string, error) {
	if rtpAddr == "" {
		if rtcpAddr != "" {
			return "", "", errors.New("rtsp.udp_rtcp_addr is set but rtsp.udp_rtp_addr is empty")
		}
		return "", "", nil
	}
	host, port, err := net.SplitHostPort(rtpAddr)
	if err != nil {
		return "", "", fmt.Errorf("rtsp.udp_rtp_addr %s: %w", rtpAddr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65534 || p%2 != 0 {
		return "", "", fmt.Errorf("rtsp.udp_rtp_addr %s: port must be an even number between 2 and 65534 (RTP uses even ports, RTCP the next one)", rtpAddr)
	}
	want := net.JoinHostPort(host, strconv.Itoa(p+1))
	if rtcpAddr == "" {
		return rtpAddr, want, nil
	}
	_, rport, err := net.SplitHostPort(rtcpAddr)
	if err != nil {
		return "", "", fmt.Errorf("rtsp.udp_rtcp_addr %s: %w", rtcpAddr, err)
	}
	if rport != strconv.Itoa(p+1) {
		return "", "", fmt.Errorf("rtsp.udp_rtcp_addr %s: must be the RTP port + 1 (%d)", rtcpAddr, p+1)
	}
	return rtpAddr, rtcpAddr, nil
}

// ListenAddr is the actual TCP address (useful with port 0). Nil before Start.
func (s *Server) ListenAddr() net.Addr {
	if s.srv == nil {
		return nil
	}
	return s.srv.NetListener().Addr()
}

// Close stops the server, ends every publication and waits for all
// goroutines. Safe to call more than once, or without Start.
func (s *Server) Close() {
	if s.srv == nil {
		return
	}
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	// gortsplib closes every session and waits for them; each session's
	// close reaches OnSessionClose, which closes its stream.
	s.srv.Close()
	<-s.done
}

// retryListener keeps the server alive across transient accept failures
// (EMFILE under load, aborted handshakes): gortsplib treats any accept
// error as fatal and would stop serving RTSP for good.
type retryListener struct {
	net.Listener
	log *slog.Logger
}

func (l *retryListener) Accept() (net.Conn, error) {
	delay := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err == nil || errors.Is(err, net.ErrClosed) {
			return c, err
		}
		l.log.Warn("rtsp accept failed, retrying", "error", err.Error(), "retry_in", delay)
		time.Sleep(delay)
		delay = min(2*delay, time.Second)
	}
}

func (s *Server) sessionFor(ss *gortsplib.ServerSession) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[ss]
}

// logPublishRefusal logs why the hub refused a publication and returns a
// key-free reason. Unknown keys are WARN: they are either a misconfigured
// encoder or someone guessing keys, and the operator wants the address.
func (s *Server) logPublishRefusal(log *slog.Logger, err error) error {
	if errors.Is(err, live.ErrUnknownKey) {
		log.Warn("rtsp publish refused: unknown stream key")
		return errUnknownKey
	}
	if be, ok := errors.AsType[*live.BusyError](err); ok {
		log.Warn("rtsp publish refused: channel already has a publisher",
			"channel", be.Channel, "current_protocol", be.Protocol, "current_remote", be.Remote)
		return fmt.Errorf("channel %q is busy", be.Channel)
	}
	log.Error("rtsp publish refused", "error", err.Error())
	return errors.New("publish refused")
}

// Errors returned to gortsplib with refusals. gortsplib closes the
// connection after sending the response and reports these in OnConnClose,
// so they must not quote the path.
var (
	errUnknownKey   = errors.New("unknown stream key")
	errBadPath      = errors.New("publish path is not /live/{stream_key}")
	errNoTracks     = errors.New("no supported track")
	errBusy         = errors.New("channel busy")
	errNoPlayback   = errors.New("rtsp playback is not supported")
	errInternal     = errors.New("internal error")
	errNoRecord     = errors.New("no RECORD request after ANNOUNCE")
	errNoParamsSeen = errors.New("no video parameter sets received")
)
