package transcode

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// ExitError is how an ffmpeg process ended when it did not end well: the
// exit code (or signal), the last meaningful stderr lines and, when one of
// them is a known message, a sentence a person can act on.
type ExitError struct {
	// Code is the exit status; -1 when a signal ended the process.
	Code int
	// Signal names the signal that ended it ("killed"), if any.
	Signal string
	// Reason is the translated message; empty when no line was recognised.
	Reason string
	// Lines are the last meaningful stderr lines, oldest first.
	Lines []string
}

func (e *ExitError) Error() string {
	how := fmt.Sprintf("exited with code %d", e.Code)
	if e.Signal != "" {
		how = "was ended by signal " + e.Signal
	}
	switch {
	case e.Reason != "":
		return fmt.Sprintf("ffmpeg %s: %s", how, e.Reason)
	case len(e.Lines) > 0:
		return fmt.Sprintf("ffmpeg %s: %s", how, e.Lines[len(e.Lines)-1])
	}
	return "ffmpeg " + how
}

// hint maps a stderr line to an actionable message. $1 in msg is the
// pattern's first group.
type hint struct {
	re  *regexp.Regexp
	msg string
}

// hints are tried in order, each against the newest line first: the
// specific causes come before the generic symptoms ffmpeg prints after
// them ("Cannot load libcuda.so.1" then "Error while opening encoder").
// Model: owncast's table of ffmpeg messages.
var hints = []hint{
	{regexp.MustCompile(`Unknown encoder '([^']+)'`), "encoder $1 is not available in this ffmpeg build"},
	{regexp.MustCompile(`Encoder \(codec ([^)]+)\) not found`), "encoder $1 is not available in this ffmpeg build"},
	{regexp.MustCompile(`No such filter: '([^']+)'`), "filter $1 is not available in this ffmpeg build"},
	{regexp.MustCompile(`Cannot load libcuda|Cannot load libnvidia-encode|No NVENC capable devices found|CUDA_ERROR_NO_DEVICE|cuInit\(0\) failed`), "no NVIDIA GPU for h264_nvenc (driver or device missing)"},
	{regexp.MustCompile(`OpenEncodeSessionEx failed|incompatible client key`), "the NVIDIA GPU refused another h264_nvenc session (consumer cards allow few; use fewer rungs or libx264)"},
	{regexp.MustCompile(`(?i)Failed to initialise VAAPI connection|No VA display found|vaInitialize failed|Failed to set value 'vaapi[^']*' for option 'init_hw_device'`), "no VAAPI device for h264_vaapi (check /dev/dri/renderD128 and the VA driver)"},
	{regexp.MustCompile(`(?i)Error (initializing|creating) an? (internal )?MFX session|MFX_ERR_UNSUPPORTED|Failed to set value 'qsv[^']*' for option 'init_hw_device'`), "no Intel Quick Sync device for h264_qsv (check /dev/dri and the oneVPL/Media SDK runtime)"},
	{regexp.MustCompile(`Device creation failed|for option 'init_hw_device'`), "the hardware encoding device could not be opened"},
	{regexp.MustCompile(`Invalid data found when processing input|could not find codec parameters|non-existing PPS|no frame!`), "the published stream could not be decoded"},
	{regexp.MustCompile(`Stream map '0:a[^']*' matches no streams`), "the published stream has no audio track"},
	{regexp.MustCompile(`Stream map '([^']+)' matches no streams`), "the published stream has no stream $1"},
	{regexp.MustCompile(`Could not find codec parameters for stream \d+ \((Audio|Video)`), "ffmpeg could not read the $1 parameters of the published stream within its probe window"},
	{regexp.MustCompile(`Impossible to convert between the formats`), "the encoder cannot take the filter graph's pixel format (a hardware encoder needs its hwupload)"},
	{regexp.MustCompile(`Cannot allocate memory`), "ffmpeg ran out of memory"},
	{regexp.MustCompile(`Error while opening encoder|Error initializing output stream`), "the encoder rejected its settings (profile, size, bitrate or preset)"},
	{regexp.MustCompile(`Error reinitializing filters|Failed to inject frame into filter network`), "the video changed in a way the filters could not follow (size or format change)"},
	{regexp.MustCompile(`(?i)broken pipe|Error writing trailer|av_interleaved_write_frame\(\)`), "a rendition's output was closed before ffmpeg finished"},
}

// noise are lines that carry no cause of their own.
var noise = regexp.MustCompile(`^(Conversion failed!|Exiting normally, received signal \d+\.|Received > *3 system signals.*|\s*)$`)

// Translate returns the actionable message for the first hint that
// matches one of lines (newest line first), or "".
func Translate(lines []string) string {
	for _, h := range hints {
		for i := len(lines) - 1; i >= 0; i-- {
			if m := h.re.FindStringSubmatchIndex(lines[i]); m != nil {
				return string(h.re.ExpandString(nil, h.msg, lines[i], m))
			}
		}
	}
	return ""
}

// stderrTail keeps the last meaningful stderr lines of one process and
// hands every line to log (so operators see ffmpeg's warnings as they
// happen, not only when it dies).
type stderrTail struct {
	max int
	log func(line string)

	mu      sync.Mutex
	partial []byte
	lines   []string
}

func (t *stderrTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, p...)
	for {
		i := strings.IndexAny(string(t.partial), "\r\n")
		if i < 0 {
			break
		}
		t.add(string(t.partial[:i]))
		t.partial = t.partial[i+1:]
	}
	if len(t.partial) > 4096 { // a runaway line without a newline
		t.add(string(t.partial))
		t.partial = nil
	}
	return len(p), nil
}

func (t *stderrTail) add(line string) {
	line = strings.TrimSpace(line)
	if noise.MatchString(line) {
		return
	}
	if t.log != nil {
		t.log(line)
	}
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

func (t *stderrTail) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.partial) > 0 {
		t.add(string(t.partial))
		t.partial = nil
	}
	return append([]string(nil), t.lines...)
}
