package validate

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// buildCommand is the one way the release binary is built: the Makefile's
// build, with the commit stamped in (the image has no .git).
const buildCommand = `make build BIN=invalidator COMMIT="$COMMIT"`

func TestDockerfile(t *testing.T) {
	src := readFile(t, filepath.Join(repoRoot, "Dockerfile"))
	// Join continuation lines, drop comments.
	var lines []string
	cur := ""
	for _, l := range strings.Split(src, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		lines = append(lines, strings.TrimSpace(cur+l))
		cur = ""
	}

	var froms, users []string
	var entrypoint, cmd string
	build := false
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			froms = append(froms, rest)
			users = nil // USER applies per stage; keep the final stage's
		case "USER":
			users = append(users, rest)
		case "RUN":
			if rest == buildCommand {
				build = true
			}
		case "ENTRYPOINT":
			entrypoint = rest
		case "CMD":
			cmd = rest
		}
	}
	if !build {
		t.Errorf("Dockerfile: no `RUN %s`", buildCommand)
	}
	if len(froms) < 2 {
		t.Errorf("Dockerfile: want a multi-stage build, found FROM %v", froms)
	} else {
		final := froms[len(froms)-1]
		if !strings.HasPrefix(final, "gcr.io/distroless/static") && !strings.HasPrefix(final, "scratch") {
			t.Errorf("Dockerfile: final stage %q: want distroless/static or scratch", final)
		}
	}
	if len(users) == 0 {
		t.Errorf("Dockerfile: the final stage sets no USER")
	} else {
		u := users[len(users)-1]
		if !regexp.MustCompile(`^[1-9][0-9]*(:[1-9][0-9]*)?$`).MatchString(u) {
			t.Errorf("Dockerfile: USER %q: want a numeric non-root uid[:gid] (Kubernetes runAsNonRoot needs a number)", u)
		}
	}
	if !regexp.MustCompile(`(?m)^EXPOSE\s+9187\b`).MatchString(src) {
		t.Errorf("Dockerfile: no EXPOSE 9187")
	}
	if entrypoint != `["/invalidator"]` || cmd != `["run"]` {
		t.Errorf(`Dockerfile: want ENTRYPOINT ["/invalidator"] and CMD ["run"], got %s and %s`, entrypoint, cmd)
	}

	ignore := readFile(t, filepath.Join(repoRoot, ".dockerignore"))
	for _, l := range strings.Split(ignore, "\n") {
		l = strings.TrimSpace(l)
		for _, needed := range []string{"go.mod", "go.sum", "cmd", "*.go", "**/*.go"} {
			if l == needed || l == "/"+needed {
				t.Errorf(".dockerignore excludes %s, which the build needs", l)
			}
		}
	}
}
