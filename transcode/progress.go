package transcode

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"time"
)

// Progress is one `-progress` report of ffmpeg.
type Progress struct {
	Frame      int64
	FPS        float64
	DropFrames int64
	DupFrames  int64
	// OutTime is how much output has been written (the output timeline).
	OutTime time.Duration
	// Speed is output time per wall-clock time; 1.0 keeps up with a live
	// input. 0 when ffmpeg reports N/A.
	Speed float64
	// End is set on the last report of a process.
	End bool
	// FallingBehind is set once speed has stayed below SlowSpeed for
	// SlowReports consecutive reports: the encoder cannot keep up and the
	// renditions will lag further and further (too many rungs or too slow
	// a preset for the machine).
	FallingBehind bool
}

// Progress thresholds: ffmpeg reports about twice a second, so 10 reports
// is five seconds of sustained slowness, long enough to skip start-up and
// GC pauses.
const (
	SlowSpeed   = 0.95
	SlowReports = 10
)

// ProgressParser turns ffmpeg's key=value blocks (ended by
// progress=continue or progress=end) into Progress values.
type ProgressParser struct {
	// SlowReports overrides the default count of slow reports before
	// FallingBehind (tests use small values).
	SlowReports int

	cur  Progress
	slow int
}

// Line consumes one line; it returns a Progress when the line ends a block.
func (p *ProgressParser) Line(line string) (Progress, bool) {
	k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
	if !ok {
		return Progress{}, false
	}
	v = strings.TrimSpace(v)
	switch k {
	case "frame":
		p.cur.Frame, _ = strconv.ParseInt(v, 10, 64)
	case "fps":
		p.cur.FPS, _ = strconv.ParseFloat(v, 64)
	case "drop_frames":
		p.cur.DropFrames, _ = strconv.ParseInt(v, 10, 64)
	case "dup_frames":
		p.cur.DupFrames, _ = strconv.ParseInt(v, 10, 64)
	case "out_time_us":
		if us, err := strconv.ParseInt(v, 10, 64); err == nil {
			p.cur.OutTime = time.Duration(us) * time.Microsecond
		}
	case "speed":
		p.cur.Speed, _ = strconv.ParseFloat(strings.TrimSuffix(v, "x"), 64)
	case "progress":
		out := p.cur
		out.End = v == "end"
		limit := p.SlowReports
		if limit <= 0 {
			limit = SlowReports
		}
		// N/A (0) says nothing either way: it does not reset the count.
		switch {
		case out.Speed > 0 && out.Speed < SlowSpeed:
			p.slow++
		case out.Speed >= SlowSpeed:
			p.slow = 0
		}
		out.FallingBehind = p.slow >= limit
		p.cur = Progress{}
		return out, true
	}
	return Progress{}, false
}

// ReadProgress parses r until EOF, calling fn for every report.
func ReadProgress(r io.Reader, slowReports int, fn func(Progress)) error {
	p := ProgressParser{SlowReports: slowReports}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if pr, ok := p.Line(sc.Text()); ok && fn != nil {
			fn(pr)
		}
	}
	return sc.Err()
}
