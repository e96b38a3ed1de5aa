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

// buildDaemon builds the daemon exactly as `make build` does, into dir,
// from the module the suite runs in.
func buildDaemon(ctx context.Context, dir string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	modDir, err := moduleDir(ctx, goTool)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "invalidator")
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/invalidator")
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' ./cmd/invalidator: %w\n%s", err, out)
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
