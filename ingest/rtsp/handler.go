package rtsp

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/pion/rtp"

	"github.com/streamd/streamd/live"
)

// handler receives gortsplib's callbacks. Implementing the OnPacketsLost,
// OnDecodeError and OnStreamWriteError hooks also keeps gortsplib from
// writing to the process-wide standard logger.
type handler struct {
	s *Server
}

var allowHeader = base.HeaderValue{"OPTIONS, ANNOUNCE, SETUP, RECORD, TEARDOWN"}

func remoteOf(c *gortsplib.ServerConn) string {
	if c == nil || c.NetConn() == nil {
		return ""
	}
	return c.NetConn().RemoteAddr().String()
}

// recoverHandler turns a panic in a request handler into a 500 for that
// request; gortsplib then closes the connection (we return an error).
func (h *handler) recoverHandler(log *slog.Logger, where string, res **base.Response, err *error) {
	r := recover()
	if r == nil {
		return
	}
	log.Error("panic in rtsp handler", "where", where, "panic", redact(fmt.Sprint(r)), "stack", string(debug.Stack()))
	*res = &base.Response{StatusCode: base.StatusInternalServerError}
	*err = errInternal
}

func (h *handler) OnConnOpen(ctx *gortsplib.ServerHandlerOnConnOpenCtx) {
	h.s.log.Debug("rtsp connection opened", "remote", remoteOf(ctx.Conn))
}

func (h *handler) OnConnClose(ctx *gortsplib.ServerHandlerOnConnCloseCtx) {
	attrs := []any{"remote", remoteOf(ctx.Conn)}
	if ctx.Error != nil {
		var keys []string
		if ss := ctx.Conn.Session(); ss != nil {
			if sess := h.s.sessionFor(ss); sess != nil {
				keys = append(keys, sess.key)
			}
		}
		attrs = append(attrs, "reason", redact(ctx.Error.Error(), keys...))
	}
	// DEBUG: port scanners and health checks would otherwise fill the log;
	// anything that matters to a publisher is logged at the session level.
	h.s.log.Debug("rtsp connection closed", attrs...)
}

func (h *handler) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	h.s.mu.Lock()
	sess := h.s.sessions[ctx.Session]
	delete(h.s.sessions, ctx.Session)
	h.s.mu.Unlock()
	if sess != nil {
		sess.close(ctx.Error)
	}
}

// OnDescribe refuses playback: streamd serves viewers over HLS. 405 with an
// Allow header is the RTSP way to say "this server does not do that here".
func (h *handler) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	h.s.log.Info("rtsp playback refused: streamd serves HLS, not RTSP playback", "remote", remoteOf(ctx.Conn))
	return &base.Response{StatusCode: base.StatusMethodNotAllowed, Header: base.Header{"Allow": allowHeader}}, nil, nil
}

func (h *handler) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (res *base.Response, err error) {
	remote := remoteOf(ctx.Conn)
	log := h.s.log.With("remote", remote)
	defer h.recoverHandler(log, "ANNOUNCE", &res, &err)

	// Both a malformed path and an unknown key get 404 Not Found: the key
	// is part of the resource name, so a wrong key really is a path that
	// does not exist. 401 would be wrong here: RTSP requires it to carry a
	// WWW-Authenticate challenge, and clients would retry with credentials
	// that streamd does not use. Answering both cases the same also gives
	// a key-guesser no hint about which part was wrong.
	key, ok := streamKeyFromPath(ctx.Path)
	if !ok {
		log.Warn("rtsp publish refused: URL must be rtsp://HOST:PORT/live/{stream_key}")
		return &base.Response{StatusCode: base.StatusNotFound}, errBadPath
	}

	sess := &session{srv: h.s, ss: ctx.Session, packetPTS: ctx.Session.PacketPTS, remote: remote, key: key, log: log}
	for _, medi := range ctx.Description.Medias {
		t, offered := newTrack(medi)
		if t == nil {
			log.Info("rtsp ignoring track with unsupported codec", "media", string(medi.Type), "formats", offered)
			continue
		}
		t.mt.ID = len(sess.tracks)
		sess.tracks = append(sess.tracks, t)
	}
	if len(sess.tracks) == 0 {
		log.Warn("rtsp publish refused: no supported track (need H.264, H.265, AAC or Opus)")
		return &base.Response{StatusCode: base.StatusUnsupportedMediaType}, errNoTracks
	}

	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.needsParams() {
		// The SDP had no usable parameter sets, so readers could not be
		// told what the video is yet: publish once they arrive in band.
		// The key is still checked now when the hub allows it.
		if kc, ok := h.s.Hub.(keyChecker); ok {
			ch, found := kc.Lookup(key)
			if !found {
				h.s.logPublishRefusal(log, live.ErrUnknownKey)
				return &base.Response{StatusCode: base.StatusNotFound}, errUnknownKey
			}
			sess.channel = ch.Name
			sess.log = log.With("channel", ch.Name)
		}
		sess.log.Info("rtsp publish waiting for in-band parameter sets")
	} else {
		stream, perr := h.s.Hub.Publish(key, protocolName, remote, sess.mediaTracks())
		if perr != nil {
			reason := h.s.logPublishRefusal(log, perr)
			if errors.Is(reason, errUnknownKey) {
				return &base.Response{StatusCode: base.StatusNotFound}, errUnknownKey
			}
			// 503 Service Unavailable: the channel is temporarily taken and
			// publishing will work again once the current publisher stops.
			return &base.Response{StatusCode: base.StatusServiceUnavailable}, errBusy
		}
		sess.stream = stream
		sess.channel = stream.Channel
		sess.log = log.With("channel", stream.Channel)
		sess.log.Info("rtsp publish started", "tracks", codecNames(sess.tracks))
	}

	// A client that announces and never records must not keep the channel
	// (or its connection) forever.
	sess.armTimer(h.s.readTimeout, func() bool { return !sess.recording }, errNoRecord)

	h.s.mu.Lock()
	h.s.sessions[ctx.Session] = sess
	h.s.mu.Unlock()
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (h *handler) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() != gortsplib.ServerSessionStatePreRecord || h.s.sessionFor(ctx.Session) == nil {
		// A SETUP outside of a publish is a player.
		h.s.log.Info("rtsp playback refused: streamd serves HLS, not RTSP playback", "remote", remoteOf(ctx.Conn))
		return &base.Response{StatusCode: base.StatusMethodNotAllowed, Header: base.Header{"Allow": allowHeader}}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, nil, nil
}

func (h *handler) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	h.s.log.Info("rtsp playback refused: streamd serves HLS, not RTSP playback", "remote", remoteOf(ctx.Conn))
	return &base.Response{StatusCode: base.StatusMethodNotAllowed, Header: base.Header{"Allow": allowHeader}}, errNoPlayback
}

func (h *handler) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (res *base.Response, err error) {
	sess := h.s.sessionFor(ctx.Session)
	log := h.s.log.With("remote", remoteOf(ctx.Conn))
	if sess != nil {
		log = sess.log
	}
	defer h.recoverHandler(log, "RECORD", &res, &err)
	if sess == nil {
		return &base.Response{StatusCode: base.StatusMethodNotValidInThisState}, nil
	}

	sess.mu.Lock()
	defer sess.mu.Unlock()
	sess.recording = true
	if sess.stream == nil {
		// Waiting for in-band parameter sets: they come with the first
		// keyframe; if none arrives in time, give the connection back.
		sess.armTimer(h.s.readTimeout, func() bool { return sess.stream == nil }, errNoParamsSeen)
	} else if sess.timer != nil {
		sess.timer.Stop()
	}
	for _, t := range sess.tracks {
		ctx.Session.OnPacketRTP(t.media, t.format, func(pkt *rtp.Packet) {
			sess.onPacket(t, pkt)
		})
	}
	sess.log.Info("rtsp recording", "transport", transportName(ctx.Session))
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func transportName(ss *gortsplib.ServerSession) string {
	if tr := ss.Transport(); tr != nil {
		return tr.Protocol.String()
	}
	return ""
}

func (h *handler) OnPacketsLost(ctx *gortsplib.ServerHandlerOnPacketsLostCtx) {
	if sess := h.s.sessionFor(ctx.Session); sess != nil {
		sess.mu.Lock()
		log := sess.log
		sess.mu.Unlock()
		log.Debug("rtsp RTP packets lost", "lost", ctx.Lost)
	}
}

func (h *handler) OnDecodeError(ctx *gortsplib.ServerHandlerOnDecodeErrorCtx) {
	sess := h.s.sessionFor(ctx.Session)
	if sess == nil {
		return
	}
	sess.mu.Lock()
	log := sess.log
	sess.mu.Unlock()
	log.Debug("rtsp decode error", "error", redact(ctx.Error.Error(), sess.key))
}

func (h *handler) OnStreamWriteError(ctx *gortsplib.ServerHandlerOnStreamWriteErrorCtx) {
	// Only readers are written to, and streamd has none; keep it quiet.
	h.s.log.Debug("rtsp stream write error", "error", redact(ctx.Error.Error()))
}
