package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cachewire/invalidator/internal/resp"
)

// redisReply is a Redis error reply as go-redis returns it.
type redisReply string

func (r redisReply) Error() string { return string(r) }
func (redisReply) RedisError()     {}

func TestPermanentClassifiesOnce(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "28P01"}, true},  // wrong password
		{&pgconn.PgError{Code: "28000"}, true},  // no pg_hba.conf entry, no such role
		{&pgconn.PgError{Code: "3D000"}, true},  // no such database
		{&pgconn.PgError{Code: "42501"}, true},  // insufficient privilege
		{&pgconn.PgError{Code: "57P01"}, false}, // server shutting down
		{&pgconn.PgError{Code: "57P03"}, false}, // server starting up
		{&pgconn.PgError{Code: "55006"}, false}, // slot in use
		{redisReply("WRONGPASS invalid username-password pair or user is disabled."), true},
		{redisReply("NOAUTH Authentication required."), true},
		{redisReply("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"), true},
		{redisReply("ERR DB index is out of range"), true},
		{redisReply("ERR invalid DB index"), true},
		{resp.Error("ERR AUTH <password> called without any password configured for the default user."), true}, // the publisher's connection
		{resp.Error("LOADING Redis is loading the dataset in memory"), false},
		{redisReply("READONLY You can't write against a read only replica."), false},
		{redisReply("LOADING Redis is loading the dataset in memory"), false},
		{errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), false},
	}
	for _, tc := range cases {
		if got := permanent(fmt.Errorf("wrapped: %w", tc.err)); got != tc.want {
			t.Errorf("permanent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
