package rtmp

import (
	"errors"
	"fmt"
)

// Limits on what a publisher may make the server hold. gortmplib allocates
// a chunk's body (up to the chunk size) and a message's fragments as soon
// as a header announces them, and accepts chunk sizes and messages of up to
// 10 MiB: with no caps in front of it, a peer that sends a dozen bytes
// costs the server megabytes.
const (
	// maxChunkSize is what a publisher may set with Set Chunk Size. OBS and
	// ffmpeg use 4096, gortmplib's client 65536; SRS has the same cap.
	maxChunkSize = 64 << 10
	// minChunkSize is the protocol's initial chunk size. Smaller chunks
	// would cost the library a fragment header per few bytes received.
	minChunkSize = 128
	// maxSetupMessage bounds a message before the stream key is accepted:
	// only commands (connect, createStream, publish) are expected then.
	maxSetupMessage = 64 << 10
	// maxMessage bounds a message of an accepted publisher: room for the
	// keyframe of a high-bitrate 4K stream.
	maxMessage = 8 << 20
)

// RTMP message types the guard has to interpret, as the library does.
const (
	typeSetChunkSize = 1
	typeAbortMessage = 2
)

// guardError is a connection the input guard refused (a limit was crossed
// or a feature it cannot check was asked for). Its text names the limit
// and what the peer asked for, never anything the peer sent as data.
type guardError struct{ reason string }

func (e *guardError) Error() string { return e.reason }

func refusal(format string, args ...any) error {
	return &guardError{reason: fmt.Sprintf(format, args...)}
}

// chunkStream mirrors, for one chunk stream ID, the state gortmplib's
// chunk reader keeps (rawmessage.readerChunkStream), so that the guard
// frames chunks exactly as the library will read them.
type chunkStream struct {
	started bool   // a type 0 chunk was seen: later formats inherit from it
	msgType uint8  // type of the current (or last) message
	length  uint32 // length of the current (or last) message
	recv    uint32 // bytes of the current message received so far
	extTS   bool   // type 3 chunks carry a 4-byte extended timestamp
	ctl     [4]byte
}

// chunkParser frames an RTMP chunk stream (after the handshake) and
// enforces the limits above. It looks at headers and at the body of Set
// Chunk Size and Abort messages only; it copies nothing else.
type chunkParser struct {
	chunkSize uint32
	authed    bool // the stream key was accepted: maxMessage applies
	// Indexed by chunk stream ID; the library supports IDs 2..63 only.
	streams [64]chunkStream
}

func newChunkParser() chunkParser { return chunkParser{chunkSize: minChunkSize} }

func (p *chunkParser) messageLimit() uint32 {
	if p.authed {
		return maxMessage
	}
	return maxSetupMessage
}

func errProtocol(what string) error {
	return errors.New("RTMP protocol error: " + what)
}

// next looks at the chunk at the start of b. It returns the chunk's length
// once b holds all of it, and 0 while more bytes are needed. The limits
// are checked as soon as the header is in, before the body arrives. The
// parser's state changes only when a whole chunk is consumed, so next may
// be called again on the same, longer, input.
func (p *chunkParser) next(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	format, csid := b[0]>>6, b[0]&0x3f
	if csid < 2 {
		return 0, errProtocol("extended chunk stream IDs are not supported")
	}
	hdr := 1 + [4]int{11, 7, 3, 0}[format]
	if len(b) < hdr {
		return 0, nil
	}
	st := p.streams[csid]
	if err := p.header(&st, format, b[:hdr]); err != nil {
		return 0, err
	}
	ext := 0
	if format < 3 {
		ts := be24(b[1:4])
		if ts == 0xffffff {
			ext = 4
			if len(b) < hdr+ext {
				return 0, nil
			}
			ts = be32(b[hdr : hdr+ext])
		}
		// The library keys type 3 chunks on the timestamp value, not on
		// whether the field was extended: do the same.
		st.extTS = ts >= 0xffffff
	} else if st.extTS {
		ext = 4
	}
	total := hdr + ext + int(min(st.length-st.recv, p.chunkSize))
	if len(b) < total {
		return 0, nil
	}
	if err := p.consume(csid, &st, b[hdr+ext:total]); err != nil {
		return 0, err
	}
	return total, nil
}

// header applies a chunk's message header to st (a copy of the stream's
// state) and refuses what the library would refuse, plus oversized
// messages.
func (p *chunkParser) header(st *chunkStream, format byte, h []byte) error {
	if format != 0 && format != 3 && !st.started {
		return errProtocol(fmt.Sprintf("type %d chunk without a previous chunk", format))
	}
	if format == 3 && st.recv == 0 && !st.started {
		return errProtocol("type 3 chunk without a previous chunk")
	}
	if format != 3 && st.recv != 0 {
		return errProtocol(fmt.Sprintf("type %d chunk in the middle of a message", format))
	}
	if format > 1 {
		return nil
	}
	st.started = true
	st.length = be24(h[4:7])
	st.msgType = h[7]
	if limit := p.messageLimit(); st.length > limit {
		if !p.authed {
			return refusal("message of %d bytes announced before the stream key was accepted, limit %d", st.length, limit)
		}
		return refusal("message of %d bytes announced, limit %d", st.length, limit)
	}
	return nil
}

// consume commits a whole chunk: it advances its stream and, when a
// control message completes, applies it the way the library will.
func (p *chunkParser) consume(csid byte, st *chunkStream, body []byte) error {
	if st.recv < uint32(len(st.ctl)) {
		copy(st.ctl[st.recv:], body)
	}
	st.recv += uint32(len(body))
	done := st.recv == st.length
	if done {
		st.recv = 0
	}
	p.streams[csid] = *st
	// The library refuses control messages whose body is not 4 bytes.
	if !done || st.length != 4 {
		return nil
	}
	v := be32(st.ctl[:])
	switch st.msgType {
	case typeSetChunkSize:
		if v < minChunkSize || v > maxChunkSize {
			return refusal("chunk size %d requested, allowed %d to %d", v, minChunkSize, maxChunkSize)
		}
		p.chunkSize = v
	case typeAbortMessage:
		if v >= 2 && v < uint32(len(p.streams)) && p.streams[v].recv != 0 {
			p.streams[v].length, p.streams[v].recv = 0, 0
		}
	}
	return nil
}

func be24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
