package main

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/streamd/streamd/api"
	"github.com/streamd/streamd/configs"
)

// serverHandler is what the HTTP server runs: mux behind what every
// request gets, whatever it asks for.
//
// SecureHeaders covers every /api route in one place, this package's
// handlers (/api/transcode, uploads, job cancel) and the web page's
// /api/channels as much as package api's. LimitBodies is outermost: it
// sets read deadlines, which needs the server's own ResponseWriter.
func serverHandler(cfg configs.Config, mux http.Handler, log *slog.Logger) http.Handler {
	h := api.SecureHeaders(refuseDotSegments(mux))
	return api.LimitBodies(h, api.BodyLimits{
		Timeout: time.Duration(cfg.HTTP.BodyTimeout),
		MinRate: int64(cfg.HTTP.MinBodyRateKiB) << 10,
		Window:  time.Duration(cfg.HTTP.BodyRateWindow),
		Upload:  isUpload,
		Logger:  log,
	})
}

// isUpload: masters arrive through tus (PATCH, or POST with
// creation-with-upload) and may rightly take hours, so they get the rate
// floor but not the ordinary bodies' deadline. Presigned multipart parts
// go to S3, not here.
func isUpload(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, uploadBase) || r.URL.Path+"/" == uploadBase
}
