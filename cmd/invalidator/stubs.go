package main

import (
	"context"
	"fmt"
	"io"
)

func replayCommand(_ context.Context, _ []string, _, stderr io.Writer) int {
	_, _ = fmt.Fprintln(stderr, "invalidator replay: not implemented yet")
	return exitProblems
}
