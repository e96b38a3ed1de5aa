package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// buildDaemon builds the daemon as `make build` does, into dir, from the
// module the suite runs in; symbols keeps the symbol table (for perf).
func buildDaemon(ctx context.Context, dir string, symbols bool) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	modDir, err := moduleDir(ctx, goTool)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "invalidator")
	// the Makefile's build; with symbols kept, perf report names functions
	ldflags := "-ldflags=-s -w"
	if symbols {
		ldflags = "-ldflags="
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", ldflags, "-o", bin, "./cmd/invalidator")
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("CGO_ENABLED=0 go build -trimpath %s ./cmd/invalidator: %w\n%s", ldflags, err, out)
	}
	return bin, nil
}

// moduleDir returns the directory of the main module's go.mod.
func moduleDir(ctx context.Context, goTool string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, goTool, "env", "GOMOD")
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(out.String())
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("run the suite inside the invalidator module (go env GOMOD is empty)")
	}
	return filepath.Dir(gomod), nil
}
