package rtsp

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// publishPrefix is the only path publishers may use: rtsp://HOST:PORT/live/{stream_key}.
const publishPrefix = "/live/"

// maxKeyLen bounds the stream key we accept from the request path. Keys are
// operator-configured secrets, far shorter than this; the bound keeps a
// hostile client from making us compare or hold megabytes of "key".
const maxKeyLen = 256

// streamKeyFromPath extracts the stream key from the path of an ANNOUNCE
// request ("/live/{stream_key}", already percent-decoded by the URL parser).
// One trailing slash is tolerated because some clients append it. The key
// must be a single non-empty path segment of printable characters; anything
// else is rejected rather than guessed at, so a typo in the URL fails loudly
// instead of publishing somewhere unexpected.
func streamKeyFromPath(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, publishPrefix)
	if !ok {
		return "", false
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" || len(rest) > maxKeyLen || !utf8.ValidString(rest) {
		return "", false
	}
	for _, r := range rest {
		// No further segments, and no control or space characters: those
		// never appear in a configured key and would only make log
		// injection or confusing lookups possible.
		if r == '/' || r <= ' ' || r == 0x7f {
			return "", false
		}
	}
	return rest, true
}

const redacted = "[redacted]"

var (
	// Full URLs (the request URL carries the key in its path).
	redactURL = regexp.MustCompile(`(?i)rtsps?://[^\s'"()]*`)
	// Bare publish paths, as in gortsplib's "path has changed, was '/live/…'".
	redactLivePath = regexp.MustCompile(`/live/[^\s'"()]*`)
	// base.Request.Unmarshal echoes a malformed request URL verbatim.
	redactInvalidURL = regexp.MustCompile(`invalid URL \([^)]*\)?`)
	// "expected 'RTSP/1.0', got <token>" echoes part of the request line.
	redactGot = regexp.MustCompile(`got .*$`)
)

// redact makes a message from outside code (gortsplib errors) safe to log:
// the stream key is a secret and must never reach a log line, but library
// errors may quote request URLs and paths. Known keys are replaced first,
// then anything that looks like a URL or a publish path is masked, since a
// mistyped key is just as secret as a correct one.
func redact(msg string, keys ...string) string {
	for _, k := range keys {
		if k != "" {
			msg = strings.ReplaceAll(msg, k, redacted)
		}
	}
	msg = redactURL.ReplaceAllString(msg, "rtsp://"+redacted)
	msg = redactLivePath.ReplaceAllString(msg, publishPrefix+redacted)
	msg = redactInvalidURL.ReplaceAllString(msg, "invalid URL ("+redacted+")")
	msg = redactGot.ReplaceAllString(msg, "got "+redacted)
	return msg
}
