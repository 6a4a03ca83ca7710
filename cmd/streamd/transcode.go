package main

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/streamd/streamd/configs"
	"github.com/streamd/streamd/packager"
	"github.com/streamd/streamd/transcode"
)

// ladders converts the config's ladders to the transcoder's and checks
// them with its rules, naming each problem by its config key.
func ladders(cfg configs.Config) (map[string]transcode.Ladder, []configs.Problem) {
	out := map[string]transcode.Ladder{}
	var ps []configs.Problem
	for i, l := range cfg.Ladders {
		tl := transcode.Ladder{Name: l.Name, Audio: transcode.Audio(l.Audio)}
		for _, r := range l.Rungs {
			tl.Rungs = append(tl.Rungs, transcode.Rung(r))
		}
		if err := tl.Validate(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				key, msg, _ := strings.Cut(line, ": ")
				ps = append(ps, configs.Problem{Key: fmt.Sprintf("ladders[%d].%s", i, key), Message: msg})
			}
		}
		out[l.Name] = tl
	}
	return out, ps
}

// checkTranscode is the part of validation that needs the transcoder's
// rules and the machine: ladders, the encoder, and ffmpeg for channels
// that use a ladder.
func checkTranscode(cfg configs.Config) []configs.Problem {
	_, ps := ladders(cfg)
	if _, err := transcode.EncoderByName(cfg.Transcode.Encoder, cfg.Transcode.HWDevice); err != nil {
		ps = append(ps, configs.Problem{Key: "transcode.hw_device", Message: err.Error()})
	}
	var users []string
	for _, ch := range cfg.Channels {
		if ch.Ladder != "" {
			users = append(users, ch.Name)
		}
	}
	if len(users) > 0 {
		if _, err := transcode.FindFFmpeg(cfg.Transcode.FFmpegPath); err != nil {
			ps = append(ps, configs.Problem{Key: "transcode.ffmpeg_path",
				Message: fmt.Sprintf("%v (needed by the ladder of channel %s)", err, strings.Join(users, ", "))})
		}
	}
	return ps
}

// maxLiveWorkers resolves 0 to half the cores, at least one.
func maxLiveWorkers(n int) int {
	if n > 0 {
		return n
	}
	return max(1, runtime.NumCPU()/2)
}

// packagerSinks hands the transcoder the packager's rendition writers.
type packagerSinks struct{ p *packager.Packager }

func (s packagerSinks) NewSink(channel, rendition string) transcode.Sink {
	return s.p.Rendition(channel, rendition)
}

func (s packagerSinks) Expect(channel string, renditions []string) { s.p.Expect(channel, renditions) }
