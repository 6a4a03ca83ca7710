// Command streamd is a self-hosted live and on-demand streaming server:
// RTMP and RTSP in, CMAF HLS out of an HTTP origin.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/streamd/streamd/configs"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `streamd — live and on-demand streaming server

Usage:
  streamd serve [--config FILE]     run the server (embedded default config without --config)
  streamd config check FILE         validate a config file; print every problem with key and line
  streamd config print [--config FILE] [--show-secrets]
                                    print the effective config (defaults, file, STREAMD_* env)
  streamd transcode INPUT --out DIR [--job FILE]
                                    run the VOD pipeline on one file (probe, ladder, HLS+DASH, poster,
                                    thumbnails, subtitles, QA) without a server
  streamd migrate [--config FILE]   bring the metadata database's schema up to date
  streamd user add --email E --username U [--role admin|publisher|viewer] [--config FILE]
                                    create an account; the password is read from stdin
  streamd version                   print the version

Every config key can be set by environment: STREAMD_ + key path in upper snake case
(http.addr -> STREAMD_HTTP_ADDR).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], stdout, stderr)
	case "config":
		if len(args) < 2 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		switch args[1] {
		case "check":
			return cmdConfigCheck(ctx, args[2:], stdout, stderr)
		case "print":
			return cmdConfigPrint(args[2:], stdout, stderr)
		}
	case "transcode":
		return cmdTranscode(ctx, args[1:], stdout, stderr)
	case "migrate":
		return cmdMigrate(ctx, args[1:], stdout, stderr)
	case "user":
		return cmdUser(ctx, args[1:], stdin, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "streamd", versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "streamd: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v
}

// loadWithFlags parses a subcommand's flags — --config plus whatever
// define adds — and loads the configuration. When it returns a non-zero
// code, the command exits with it (the reason is already printed).
func loadWithFlags(name string, args []string, stderr io.Writer, define func(*flag.FlagSet)) (configs.Config, int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (default: the embedded default config)")
	if define != nil {
		define(fs)
	}
	if err := fs.Parse(args); err != nil {
		return configs.Config{}, 2
	}
	cfg, err := configs.Load(*path, nil)
	if err != nil {
		fmt.Fprintln(stderr, "streamd:", err)
		return configs.Config{}, 1
	}
	return cfg, 0
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, code := loadWithFlags("serve", args, stderr, nil)
	if code != 0 {
		return code
	}
	log := newLogger(stderr, cfg.Log)
	redis.SetLogger(redisLog{log})
	m := &Main{Config: cfg, Log: log, Banner: stdout, BannerShowsKeys: isTerminal(stdout)}
	if err := m.Run(ctx); err != nil {
		// One plain line, the last thing printed: what an operator reads.
		fmt.Fprintln(stderr, "streamd: cannot start:", err)
		return 1
	}
	<-ctx.Done()
	log.Info("shutting down")
	if err := m.Close(); err != nil {
		log.Error("shutdown", "err", err.Error())
		return 1
	}
	return 0
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func cmdConfigCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: streamd config check FILE")
		return 2
	}
	redis.SetLogger(redisLog{slog.New(slog.DiscardHandler)}) // config check prints its own lines
	cfg, err := configs.Load(args[0], nil)
	if err == nil {
		if ps := checkTranscode(cfg); len(ps) > 0 {
			err = &configs.Error{Source: args[0], Problems: ps}
		}
	}
	var ce *configs.Error
	switch {
	case errors.As(err, &ce):
		for _, p := range ce.Problems {
			fmt.Fprintf(stdout, "%s:%s\n", args[0], p)
		}
		fmt.Fprintf(stderr, "%s: %d problem(s)\n", args[0], len(ce.Problems))
		return 1
	case err != nil:
		fmt.Fprintln(stderr, "streamd:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\nbackends:\n", args[0])
	if !checkBackends(ctx, cfg, stdout) {
		fmt.Fprintf(stderr, "%s: a backend cannot be reached\n", args[0])
		return 1
	}
	return 0
}

func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, code := loadWithFlags("migrate", args, stderr, nil)
	if code != 0 {
		return code
	}
	// Opening migrates (an advisory lock on PostgreSQL makes concurrent
	// starts migrate once).
	db, err := openMeta(ctx, cfg.Storage.Meta, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintln(stderr, "streamd: migrate:", err)
		return 1
	}
	db.Close()
	fmt.Fprintf(stdout, "%s database %s: schema up to date\n", cfg.Storage.Meta.Driver, configs.RedactURL(cfg.Storage.Meta.URL))
	return 0
}

func cmdConfigPrint(args []string, stdout, stderr io.Writer) int {
	var secrets *bool
	cfg, code := loadWithFlags("config print", args, stderr, func(fs *flag.FlagSet) {
		secrets = fs.Bool("show-secrets", false, "print stream keys and other secrets instead of <redacted>")
	})
	if code != 0 {
		return code
	}
	out, err := configs.Marshal(cfg, *secrets)
	if err != nil {
		fmt.Fprintln(stderr, "streamd:", err)
		return 1
	}
	stdout.Write(out)
	return 0
}
