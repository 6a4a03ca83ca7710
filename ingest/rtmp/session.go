package rtmp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/message"

	"github.com/streamd/streamd/live"
)

// errRefused marks an end that was already logged where it was decided
// (unknown key, busy channel, play request, ...): run logs nothing more.
var errRefused = errors.New("refused")

// errUnpublished is returned by watchConn when the publisher says it stops.
var errUnpublished = errors.New("publisher unpublished")

// session is one TCP connection.
type session struct {
	srv    *Server
	nc     net.Conn
	dc     *deadlineConn
	remote string
	log    *slog.Logger

	// key is kept only to scrub it from library error texts; it is never
	// logged.
	key    string
	stream *live.Stream
	ended  bool // stream.Close was called
}

func (c *session) run() {
	var reason error
	defer func() {
		// The RTMP library is outside code parsing hostile input: a panic
		// in it (or in our callbacks) must cost only this connection.
		if r := recover(); r != nil {
			c.log.Error("panic in RTMP connection handler; connection dropped",
				"panic", redact(fmt.Sprint(r), c.key), "stack", string(debug.Stack()))
			reason = errors.New("internal error (panic); see the server log")
		}
		c.end(reason)
	}()
	reason = c.serve()
}

// end closes the publication exactly once and logs a refused or failed
// connection that never got to publish.
func (c *session) end(err error) {
	if c.stream != nil {
		if !c.ended {
			c.ended = true
			c.stream.Close(c.publicReason(err))
		}
		return
	}
	if err == nil || errors.Is(err, errRefused) || errors.Is(err, errUnpublished) {
		return
	}
	if c.srv.isClosing() {
		c.log.Debug("connection closed: server shutting down")
		return
	}
	var ge *guardError
	if errors.As(err, &ge) {
		c.log.Warn("connection refused before publishing", "reason", ge.Error())
		return
	}
	if isPeerGone(err) && c.key == "" {
		// Port scanners and health checks that connect and leave: not worth
		// more than a debug line.
		c.log.Debug("connection closed before publishing")
		return
	}
	c.log.Warn("connection dropped before publishing", "reason", c.describe(err))
}

// publicReason turns a read-loop error into the reason given to
// Stream.Close: nil for a clean end.
func (c *session) publicReason(err error) error {
	if err == nil || errors.Is(err, errUnpublished) || errors.Is(err, io.EOF) {
		return nil
	}
	return errors.New(c.describe(err))
}

// describe renders err for a log line: short, and with no trace of the
// stream key.
func (c *session) describe(err error) string {
	if c.srv.isClosing() {
		return "server shutting down"
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if c.dc != nil && c.dc.setupExpired() {
			return fmt.Sprintf("setup not completed within %s", c.dc.setupTotal)
		}
		return fmt.Sprintf("no data from publisher for %s", c.srv.readTimeout)
	}
	switch {
	case errors.Is(err, io.EOF):
		return "connection closed by publisher"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by publisher in the middle of a message"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset by publisher"
	}
	// url.Error quotes the URL, which contains the key, and its inner error
	// may quote part of it ("invalid URL escape"): keep neither.
	var ue *url.Error
	if errors.As(err, &ue) {
		return "invalid publish URL"
	}
	msg := redact(err.Error(), c.key)
	// gortmplib dumps whole commands with %+v ("unexpected command: &{...}")
	// before the key is known; those arguments may hold it.
	if i := strings.Index(msg, ": &{"); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}

func isPeerGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (c *session) serve() error {
	rt := c.srv.readTimeout
	c.dc = &deadlineConn{Conn: c.nc, timeout: rt, setupTotal: rt + setupBudget}
	c.dc.setupUntil = time.Now().Add(c.dc.setupTotal)

	// gortmplib allocates what chunk headers announce: the guard caps the
	// announced sizes and lets the library see only chunks that arrived.
	guard := newGuardConn(c.dc, c.dc)
	sc := &gortmplib.ServerConn{RW: guard}
	if err := sc.Initialize(); err != nil {
		return err
	}
	if err := sc.AcceptConn(); err != nil {
		return err
	}

	if !sc.Publish {
		c.log.Info("play request refused: streamd does not serve RTMP playback, viewers use HLS")
		c.refuse(sc, "NetStream.Play.Failed", "streamd does not serve RTMP playback; watch the channel over HLS")
		return errRefused
	}

	key, err := streamKeyFromPath(sc.URL.Path)
	if err != nil {
		c.log.Warn("publish refused: bad publish URL, expected rtmp://HOST:PORT/"+App+"/STREAM_KEY", "reason", err.Error())
		c.refuse(sc, "NetStream.Publish.BadName", "publish to rtmp://HOST:PORT/"+App+"/STREAM_KEY")
		return errRefused
	}
	c.key = key

	ch, ok := c.srv.Hub.Lookup(key)
	if !ok {
		c.log.Warn("publish refused: unknown stream key")
		c.refuse(sc, "NetStream.Publish.Unauthorized", "unknown stream key")
		return errRefused
	}
	c.log = c.log.With("channel", ch.Name)
	// Refuse a busy channel now rather than after the ~2 s track probe,
	// during which the client would already believe it is live.
	if bc, ok := c.srv.Hub.(busyChecker); ok {
		var busy *live.BusyError
		if err := bc.Busy(ch.Name); errors.As(err, &busy) {
			c.log.Warn("publish refused: channel is already live",
				"current_protocol", busy.Protocol, "current_remote", busy.Remote)
			c.refuse(sc, "NetStream.Publish.BadName", "channel is already live")
			return errRefused
		}
	}

	// The key is good: the publisher may now send messages of media size.
	guard.authorize()
	if err := sc.AcceptAction(); err != nil { // NetStream.Publish.Start
		return err
	}

	// The Reader gets a wrapper, not the *ServerConn: that is how we learn
	// about deleteStream/FCUnpublish (a clean end) and also why we sent
	// Publish.Start ourselves above (the Reader only does it for a bare
	// *ServerConn).
	r := &gortmplib.Reader{Conn: &watchConn{ServerConn: sc}}
	if err := r.Initialize(); err != nil { // probes ~2 s of media for the tracks
		return err
	}

	m := newTrackMapper(c.log)
	tracks := m.mapTracks(r)
	if len(tracks) == 0 {
		c.log.Warn("publish refused: no supported track (streamd takes H.264, H.265, AAC and Opus)")
		c.refuse(sc, "NetStream.Publish.Rejected", "no supported track: send H.264 or H.265 video, AAC or Opus audio")
		return errRefused
	}

	stream, err := c.srv.Hub.Publish(key, "rtmp", c.remote, tracks)
	if err != nil {
		var busy *live.BusyError
		switch {
		case errors.As(err, &busy):
			c.log.Warn("publish refused: channel is already live",
				"current_protocol", busy.Protocol, "current_remote", busy.Remote)
			c.refuse(sc, "NetStream.Publish.BadName", "channel is already live")
		case errors.Is(err, live.ErrUnknownKey):
			// The key was removed between Lookup and Publish (config reload).
			c.log.Warn("publish refused: unknown stream key")
			c.refuse(sc, "NetStream.Publish.Unauthorized", "unknown stream key")
		default:
			c.log.Warn("publish refused", "reason", redact(err.Error(), c.key))
			c.refuse(sc, "NetStream.Publish.Rejected", "publish refused")
		}
		return errRefused
	}
	c.stream = stream

	// Setup is over: from now on only the per-read silence limit applies.
	c.dc.endSetup()
	m.attach(r, stream)

	for {
		if err := r.Read(); err != nil {
			return err
		}
	}
}

// busyChecker is the optional hub method that tells whether a channel has
// a publisher already (live.Hub has it).
type busyChecker interface {
	Busy(channel string) error
}

// refuse tells the client why with an onStatus error, then closes the
// connection in a way that lets the client read it.
func (c *session) refuse(sc *gortmplib.ServerConn, code, description string) {
	// Transaction ID 0 is what onStatus conventionally carries; ffmpeg, OBS
	// and gortmplib's own client accept it. (The library's RejectAction
	// would reuse the publish command's ID, but it only knows one code.)
	err := sc.Write(&message.CommandAMF0{
		ChunkStreamID:   5,
		MessageStreamID: 0x1000000, // stream 1, encoded the way gortmplib does
		Name:            "onStatus",
		CommandID:       0,
		Arguments: []any{
			nil,
			amf0.Object{
				{Key: "level", Value: "error"},
				{Key: "code", Value: code},
				{Key: "description", Value: description},
			},
		},
	})
	if err != nil {
		return
	}
	c.linger()
}

// linger half-closes the connection and drains what the client still
// sends for a short while. Closing a socket that has unread input makes
// the kernel send RST, which can destroy the onStatus we just wrote before
// the client reads it.
func (c *session) linger() {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(c.nc, 1<<20))
}

// deadlineConn refreshes the read deadline before every read, so the
// limit is "silent for timeout" rather than "slower than X overall", and
// caps it with an absolute setup deadline until endSetup. Writes get the
// same bound so a peer that stops reading cannot block us either. It is
// used from the connection's goroutine only.
//
// Reads go through a buffer: the RTMP reader asks for a few bytes at a
// time (chunk headers, then payloads of at most the chunk size), and one
// system call plus one deadline update per small read was the largest
// cost of a passthrough channel. The deadline is refreshed only when the
// buffer is empty, i.e. when we really wait for the peer.
type deadlineConn struct {
	net.Conn
	timeout    time.Duration
	setupTotal time.Duration
	setupUntil time.Time // zero after endSetup
	br         *bufio.Reader
}

// readBuffer holds what one socket read may bring: several RTMP chunks.
const readBuffer = 32 << 10

// socketReader is the unbuffered side of deadlineConn.
type socketReader struct{ d *deadlineConn }

func (r socketReader) Read(p []byte) (int, error) {
	if err := r.d.Conn.SetReadDeadline(r.d.deadline()); err != nil {
		return 0, err
	}
	return r.d.Conn.Read(p)
}

func (d *deadlineConn) deadline() time.Time {
	t := time.Now().Add(d.timeout)
	if !d.setupUntil.IsZero() && d.setupUntil.Before(t) {
		t = d.setupUntil
	}
	return t
}

func (d *deadlineConn) setupExpired() bool {
	return !d.setupUntil.IsZero() && !time.Now().Before(d.setupUntil)
}

func (d *deadlineConn) endSetup() { d.setupUntil = time.Time{} }

func (d *deadlineConn) Read(p []byte) (int, error) {
	if d.br == nil {
		d.br = bufio.NewReaderSize(socketReader{d}, readBuffer)
	}
	return d.br.Read(p)
}

func (d *deadlineConn) Write(p []byte) (int, error) {
	if err := d.Conn.SetWriteDeadline(d.deadline()); err != nil {
		return 0, err
	}
	return d.Conn.Write(p)
}

// watchConn turns the publisher's "I am done" commands into errUnpublished
// so the end is reported as clean rather than as a dropped connection.
type watchConn struct {
	*gortmplib.ServerConn
}

func (w *watchConn) Read() (message.Message, error) {
	msg, err := w.ServerConn.Read()
	if err != nil {
		return nil, err
	}
	if cmd, ok := msg.(*message.CommandAMF0); ok {
		switch cmd.Name {
		case "FCUnpublish", "deleteStream", "closeStream":
			return nil, errUnpublished
		}
	}
	return msg, nil
}
