package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The predicate of replay --where is checked token by token against what a
// filter on the table's own columns needs; anything else is refused rather
// than interpreted. PostgreSQL then runs it with search_path = pg_catalog,
// standard_conforming_strings on, a statement_timeout, in a read-only
// transaction and, when --role is given, as that role (ADR 0024).

// predicateKeywords may appear anywhere in a predicate.
var predicateKeywords = []string{
	"and", "or", "not", "is", "null", "true", "false", "unknown", "isnull", "notnull",
	"in", "between", "symmetric", "like", "ilike", "escape", "distinct",
	"current_date", "current_timestamp", "localtimestamp",
}

// predicateLiteralTypes may prefix a string constant (interval '2 hours').
var predicateLiteralTypes = []string{"interval", "date", "timestamp", "timestamptz", "time"}

// predicateTypes may follow '::'.
var predicateTypes = []string{
	"text", "varchar", "int", "int2", "int4", "int8", "integer", "smallint", "bigint",
	"numeric", "real", "float4", "float8", "boolean", "bool", "date", "time", "timestamp",
	"timestamptz", "interval", "uuid", "inet", "json", "jsonb",
}

// predicateFunctions may be called: built-in functions without side
// effects, resolved in pg_catalog only.
var predicateFunctions = []string{
	"lower", "upper", "length", "char_length", "substr", "left", "right", "btrim", "ltrim", "rtrim",
	"starts_with", "md5", "abs", "round", "floor", "ceil", "coalesce", "nullif", "greatest", "least",
	"now", "date_trunc",
}

// predicateOperators may be used; operator characters run together must
// form one of them (write "id = -1", not "id=-1").
var predicateOperators = []string{
	"=", "<>", "!=", "<", ">", "<=", ">=", "+", "-", "*", "/", "%", "||",
	"~", "~*", "!~", "!~*", "@>", "<@", "&&",
}

type tokenKind uint8

const (
	tokWord   tokenKind = iota // an unquoted identifier or keyword, folded to lower case
	tokQuoted                  // a quoted identifier
	tokString                  // a string constant
	tokNumber
	tokOperator
	tokPunct // ( ) , ::
)

type token struct {
	kind tokenKind
	text string
}

// checkPredicate accepts where only if it is a filter on columns: column
// names (any of columns; every name when columns is nil), constants, the
// allowed keywords, operators, casts and functions, and balanced
// parentheses. It refuses everything else: subqueries, other relations,
// qualified names, comments, dollar quotes, parameters, ';'.
func checkPredicate(where string, columns []string) error {
	toks, err := lexPredicate(where)
	if err != nil {
		return fmt.Errorf("--where: %w", err)
	}
	if len(toks) == 0 {
		return errors.New("--where: empty predicate")
	}
	depth := 0
	for i, t := range toks {
		var prev, next token
		if i > 0 {
			prev = toks[i-1]
		}
		if i+1 < len(toks) {
			next = toks[i+1]
		}
		call := next.kind == tokPunct && next.text == "("
		switch t.kind {
		case tokPunct:
			switch t.text {
			case "(":
				depth++
			case ")":
				if depth--; depth < 0 {
					return errors.New("--where: unbalanced parentheses")
				}
			}
		case tokOperator:
			if !slices.Contains(predicateOperators, t.text) {
				return fmt.Errorf("--where: operator %s is not allowed (allowed: %s; separate operators by spaces)", t.text, strings.Join(predicateOperators, " "))
			}
		case tokWord:
			switch {
			case prev.kind == tokPunct && prev.text == "::":
				if !slices.Contains(predicateTypes, t.text) {
					return fmt.Errorf("--where: type %s is not allowed after :: (allowed: %s)", t.text, strings.Join(predicateTypes, ", "))
				}
			case slices.Contains(predicateKeywords, t.text):
			case t.text == "from" && prev.kind == tokWord && prev.text == "distinct": // IS [NOT] DISTINCT FROM
			case slices.Contains(predicateLiteralTypes, t.text) && next.kind == tokString:
			case call:
				if !slices.Contains(predicateFunctions, t.text) {
					return fmt.Errorf("--where: function %s is not allowed (allowed: %s)", t.text, strings.Join(predicateFunctions, ", "))
				}
			case columns == nil || slices.Contains(columns, t.text):
			default:
				return fmt.Errorf("--where: %s is neither a column of the table nor an allowed keyword", t.text)
			}
		case tokQuoted:
			if call {
				return fmt.Errorf("--where: function %q is not allowed", t.text)
			}
			if columns != nil && !slices.Contains(columns, t.text) {
				return fmt.Errorf("--where: %q is not a column of the table", t.text)
			}
		}
	}
	if depth != 0 {
		return errors.New("--where: unbalanced parentheses")
	}
	return nil
}

// lexPredicate splits where into PostgreSQL tokens. It knows the forms that
// could hide a parenthesis or a quote from a simpler reading (E-strings with
// backslash escapes, prefixed strings, doubled quotes, nested comments) and
// refuses the ones a filter never needs.
func lexPredicate(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		var (
			t   token
			n   int
			err error
		)
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case c == '-' && strings.HasPrefix(s[i:], "--"), c == '/' && strings.HasPrefix(s[i:], "/*"):
			return nil, errors.New("comments are not allowed")
		case c == '\'':
			n, err = quoted(s[i:], '\'', false)
			t = token{tokString, s[i : i+n]}
		case c == '"':
			n, err = quoted(s[i:], '"', false)
			if err == nil {
				t = token{tokQuoted, strings.ReplaceAll(s[i+1:i+n-1], `""`, `"`)}
			}
		case isIdentStart(c):
			t, n, err = lexWord(s[i:])
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			t, n, err = lexNumber(s[i:])
		case strings.IndexByte(operatorChars, c) >= 0:
			t, n, err = lexOperator(s[i:])
		case c == '(' || c == ')' || c == ',':
			t, n = token{tokPunct, s[i : i+1]}, 1
		case c == ':' && strings.HasPrefix(s[i:], "::"):
			t, n = token{tokPunct, "::"}, 2
		case c == ';':
			return nil, errors.New("a predicate cannot contain ';'")
		case c == '$':
			return nil, errors.New("dollar quoting and parameters are not allowed")
		default:
			return nil, fmt.Errorf("%q is not allowed (no qualified names, subscripts or other punctuation)", s[i:i+1])
		}
		if err != nil {
			return nil, err
		}
		toks = append(toks, t)
		i += n
	}
	return toks, nil
}

// operatorChars are the characters PostgreSQL operators are made of.
const operatorChars = "+-*/<>=~!@#%^&|`?"

// lexWord reads the keyword, name or prefixed string (E'…', B'…', X'…',
// N'…') at the start of s and returns it with its length. Unicode-escaped
// (U&) and other type-prefixed strings and a $ in a name are refused.
func lexWord(s string) (token, int, error) {
	j := 1
	for j < len(s) && isIdentPart(s[j]) {
		j++
	}
	word := strings.ToLower(s[:j])
	if j < len(s) && (s[j] == '\'' || s[j] == '$' || word == "u" && s[j] == '&') {
		if j != 1 || !strings.Contains("ebxn", word) || s[j] != '\'' {
			return token{}, 0, fmt.Errorf("%s is not allowed (a Unicode-escaped or type-prefixed string, or a $ in a name)", s[:j+1])
		}
		n, err := quoted(s[j:], '\'', word == "e")
		if err != nil {
			return token{}, 0, err
		}
		return token{tokString, s[:j+n]}, j + n, nil
	}
	return token{tokWord, word}, j, nil
}

// lexNumber reads the numeric constant at the start of s (digits, a
// fraction, an exponent) and returns it with its length; it must not run
// into a name, a quote or another dot.
func lexNumber(s string) (token, int, error) {
	j := 0
	digits := func() {
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
	}
	digits()
	if j < len(s) && s[j] == '.' {
		j++
		digits()
	}
	if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
		j++
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		k := j
		if digits(); j == k {
			// PostgreSQL would read 1e'…' as 1 and an E-string
			return token{}, 0, fmt.Errorf("%q: an exponent needs digits", s[:j])
		}
	}
	if j < len(s) && (isIdentPart(s[j]) || s[j] == '.' || s[j] == '\'' || s[j] == '"') {
		return token{}, 0, fmt.Errorf("%q: a number must be followed by a space or an operator", s[:j+1])
	}
	return token{tokNumber, s[:j]}, j, nil
}

// lexOperator reads the operator at the start of s and returns it with its
// length; a comment start inside it is refused.
func lexOperator(s string) (token, int, error) {
	j := 0
	for j < len(s) && strings.IndexByte(operatorChars, s[j]) >= 0 {
		if strings.HasPrefix(s[j:], "--") || strings.HasPrefix(s[j:], "/*") {
			return token{}, 0, errors.New("comments are not allowed")
		}
		j++
	}
	return token{tokOperator, s[:j]}, j, nil
}

// quoted returns the length of the quoted token at the start of s, quote
// included; a doubled quote stands for itself, and with backslash (E'…')
// so does an escaped one.
func quoted(s string, q byte, backslash bool) (int, error) {
	for j := 1; j < len(s); j++ {
		switch {
		case backslash && s[j] == '\\':
			j++ // the escaped character, a quote included
		case s[j] == q && j+1 < len(s) && s[j+1] == q:
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, errors.New("unterminated quote")
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
