package main

import (
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// newBar returns a progress bar on stderr for a transfer of total bytes when
// stdout is a terminal and show is set, and nil otherwise. A nil bar is
// quiet.
func newBar(total int64, desc string, show bool) *progressbar.ProgressBar {
	if !show || !term.IsTerminal(int(os.Stdout.Fd())) {
		return nil
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100_000_000),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionFullWidth(),
	)
}

// progressFunc adapts a bar to the SDK's progress callback.
func progressFunc(bar *progressbar.ProgressBar) func(int64) {
	if bar == nil {
		return nil
	}
	return func(done int64) { bar.Set64(done) }
}

func finishBar(bar *progressbar.ProgressBar) {
	if bar != nil {
		bar.Finish()
	}
}
