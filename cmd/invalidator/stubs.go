package main

import (
	"context"
	"fmt"
	"io"
)

func notYet(name string) command {
	return func(_ context.Context, _ []string, _, stderr io.Writer) int {
		_, _ = fmt.Fprintf(stderr, "invalidator %s: not implemented yet\n", name)
		return exitProblems
	}
}

var (
	checkCommand  = notYet("check")
	setupCommand  = notYet("setup")
	statusCommand = notYet("status")
	replayCommand = notYet("replay")
)
