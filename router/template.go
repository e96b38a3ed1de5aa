package router

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cachewire/invalidator/glob"
)

// Template is a compiled key, pattern or channel template: literal text
// with {column} placeholders.
type Template struct {
	src  string
	segs []segment
}

type segment struct {
	lit string
	col string // set for a placeholder
}

// ParseTemplate compiles a template.
func ParseTemplate(s string) (*Template, error) {
	if s == "" {
		return nil, errors.New("empty template")
	}
	t := &Template{src: s}
	rest := s
	for rest != "" {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			t.segs = append(t.segs, segment{lit: rest})
			break
		}
		if rest[open] == '}' {
			return nil, fmt.Errorf("template %q: '}' without '{'", s)
		}
		if open > 0 {
			t.segs = append(t.segs, segment{lit: rest[:open]})
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] != '}' {
			return nil, fmt.Errorf("template %q: '{' without '}'", s)
		}
		col := strings.TrimSpace(rest[open+1 : open+1+end])
		if col == "" {
			return nil, fmt.Errorf("template %q: empty placeholder {}", s)
		}
		t.segs = append(t.segs, segment{col: col})
		rest = rest[open+1+end+1:]
	}
	return t, nil
}

// String returns the template's source.
func (t *Template) String() string { return t.src }

// Columns returns the columns the template's placeholders name.
func (t *Template) Columns() []string {
	var out []string
	for _, s := range t.segs {
		if s.col != "" {
			out = append(out, s.col)
		}
	}
	return out
}

// hasColumns says whether the template names a column (Columns would
// allocate to say so).
func (t *Template) hasColumns() bool {
	for _, s := range t.segs {
		if s.col != "" {
			return true
		}
	}
	return false
}

// mode says how a template is rendered.
type mode uint8

const (
	modeExact   mode = iota // key or channel: literals and values verbatim
	modePattern             // pattern template: literals are glob syntax, values escaped
	modeWideKey             // key template as a pattern: literals and values escaped, others '*'
	modeWidePat             // pattern template in wide form: literals kept, values escaped, others '*'
	modeWideCh              // channel in wide form: literals and values verbatim, others '*'
)

// appendLiteral appends a template's literal text as mode m renders it:
// glob-escaped when a key template is rendered as a pattern, else verbatim
// (a pattern template's literals are glob syntax).
func (m mode) appendLiteral(dst []byte, lit string) []byte {
	if m == modeWideKey {
		return glob.AppendEscaped(dst, lit)
	}
	return append(dst, lit...)
}

// appendValue appends a row value as mode m renders it: verbatim in a key
// or channel, glob-escaped in a pattern.
func (m mode) appendValue(dst, v []byte) []byte {
	if m == modeExact || m == modeWideCh {
		return append(dst, v...)
	}
	return glob.AppendEscaped(dst, v)
}

// subjectMeta are the bytes escaped in a NATS subject token: separators,
// wildcards, white space, the escape character itself and control bytes.
func subjectMeta(c byte) bool {
	return c <= ' ' || c == '.' || c == '*' || c == '>' || c == '%' || c == 0x7f
}

// appendSubjectToken appends s as one NATS subject token: the bytes above
// are percent-encoded (%2E for '.'), and an empty token is written "%" so
// that the subject never has an empty token.
func appendSubjectToken(dst, s []byte) []byte {
	if len(s) == 0 {
		return append(dst, '%')
	}
	for _, c := range s {
		if subjectMeta(c) {
			dst = append(dst, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&0xf])
			continue
		}
		dst = append(dst, c)
	}
	return dst
}
