package rtmp

import (
	"errors"
	"io"
)

// handshakeSize is what a client sends before its chunk stream: C0 (the
// version byte), C1 and C2 (1536 bytes each).
const handshakeSize = 1 + 1536 + 1536

// rtmpeVersion is the C0 byte of an encrypted (RTMPE) handshake.
const rtmpeVersion = 6

// guardMinRead is the free space the guard wants before reading from the
// socket. It is also its buffer's initial size, so a silent connection
// costs this much, not a chunk size.
const guardMinRead = 4 << 10

// guardConn sits between the socket and gortmplib. It parses the chunk
// stream as it arrives and hands the library only whole chunks, so the
// library allocates a chunk's body only once those bytes are here: what a
// connection makes the server hold grows with what it really sent. It
// refuses the connection when a limit of chunkParser is crossed.
//
// Before the stream key is accepted, it hands over one chunk per Read, so
// the limits applied to a chunk are those in force when the library reads
// it: a client that sends its first big message right behind the publish
// command is not judged by the pre-publish cap.
//
// It is used from the connection's goroutine only.
type guardConn struct {
	src io.Reader
	dst io.Writer
	p   chunkParser

	hsLeft int    // handshake bytes still to pass through unparsed
	buf    []byte // read from src, not yet taken by the library
	r, w   int    // buf[r:w] may be taken; buf[w:] is an incomplete chunk
	rerr   error  // read error held back while buffered bytes are served
	err    error  // sticky: once refused, every Read fails
}

func newGuardConn(src io.Reader, dst io.Writer) *guardConn {
	return &guardConn{src: src, dst: dst, p: newChunkParser(), hsLeft: handshakeSize}
}

// authorize lifts the pre-publish message cap once the stream key is known
// to be good.
func (g *guardConn) authorize() { g.p.authed = true }

func (g *guardConn) Write(b []byte) (int, error) { return g.dst.Write(b) }

func (g *guardConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for g.r == g.w {
		if g.err != nil {
			return 0, g.err
		}
		// An error found past chunks that are already whole is reported
		// once the library has taken them, as the library would.
		g.err = g.release()
		if g.r < g.w {
			break
		}
		if g.err != nil {
			return 0, g.err
		}
		if g.err = g.fill(); g.err != nil {
			return 0, g.err
		}
	}
	n := copy(b, g.buf[g.r:g.w])
	g.r += n
	return n, nil
}

// release moves w over what the library may take: handshake bytes as they
// come, then whole chunks.
func (g *guardConn) release() error {
	for g.w < len(g.buf) {
		rest := g.buf[g.w:]
		if g.hsLeft > 0 {
			// The RC4 layer of RTMPE would hide the chunk stream from
			// the guard, so encrypted sessions are refused outright.
			if g.hsLeft == handshakeSize && rest[0] == rtmpeVersion {
				return refusal("encrypted RTMP (RTMPE) is not supported; publish with rtmp://")
			}
			n := min(len(rest), g.hsLeft)
			g.w += n
			g.hsLeft -= n
			return nil
		}
		n, err := g.p.next(rest)
		if err != nil || n == 0 {
			return err
		}
		g.w += n
		if !g.p.authed {
			return nil
		}
	}
	return nil
}

// fill reads more from src. It is called only when everything released
// has been taken, so buf then holds at most one incomplete chunk, and it
// grows only when that chunk's bytes fill it.
func (g *guardConn) fill() error {
	if g.rerr != nil {
		return g.finalErr()
	}
	if g.r > 0 {
		n := copy(g.buf, g.buf[g.r:])
		g.buf = g.buf[:n]
		g.w -= g.r
		g.r = 0
	}
	if cap(g.buf)-len(g.buf) < guardMinRead {
		nb := make([]byte, len(g.buf), max(2*cap(g.buf), len(g.buf)+guardMinRead))
		copy(nb, g.buf)
		g.buf = nb
	}
	n, err := g.src.Read(g.buf[len(g.buf):cap(g.buf)])
	g.buf = g.buf[:len(g.buf)+n]
	if err != nil {
		g.rerr = err
		if n == 0 {
			return g.finalErr()
		}
	}
	return nil
}

// finalErr is the read error as the library should see it: an end of
// stream inside a chunk is unexpected, as it would have been without the
// guard.
func (g *guardConn) finalErr() error {
	if errors.Is(g.rerr, io.EOF) && len(g.buf) > g.w {
		return io.ErrUnexpectedEOF
	}
	return g.rerr
}
