package testenv

import (
	"testing"

	"github.com/chromedp/chromedp"
)

// ChromiumOptions are the allocator options for Debian's Chromium on a
// closed network: headless, and without the background services whose
// connections the network refuses many at a time. Each test gets a fresh
// profile folder.
func ChromiumOptions(t testing.TB, path string, extra ...chromedp.ExecAllocatorOption) []chromedp.ExecAllocatorOption {
	return append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	}, extra...)
}
