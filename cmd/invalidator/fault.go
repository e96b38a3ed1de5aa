package main

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/internal/resp"
)

// permanent reports whether an error met while starting is one that
// retrying cannot mend (ADR 17): PostgreSQL refused the credentials, the
// database or the privilege, or Redis refused the password or the database
// number. Everything else (connection refused, timeouts, a server starting
// up or shutting down, READONLY, LOADING, MASTERDOWN...) is transient.
func permanent(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "28"): // invalid authorization: wrong password, no pg_hba.conf entry, no such role
			return true
		case strings.HasPrefix(pgErr.Code, "3D"): // no such database
			return true
		case pgErr.Code == "42501": // insufficient privilege
			return true
		}
		return false
	}
	var msg string
	var redisErr redis.Error
	var reply resp.Error // the publisher's own connection
	switch {
	case errors.As(err, &redisErr):
		msg = redisErr.Error()
	case errors.As(err, &reply):
		msg = string(reply)
	}
	if msg != "" {
		// the starts of the replies that say the configuration is wrong
		for _, prefix := range []string{
			"WRONGPASS",                    // wrong user or password
			"NOAUTH",                       // the server wants a password and none is configured
			"NOPERM",                       // the ACL user may not run a command the daemon needs
			"ERR AUTH",                     // "AUTH <password> called without any password configured"
			"ERR Client sent AUTH",         // the same, before Redis 6
			"ERR invalid password",         // before Redis 6
			"ERR DB index is out of range", // SELECT of a database the server does not have
			"ERR invalid DB index",
		} {
			if strings.HasPrefix(msg, prefix) {
				return true
			}
		}
	}
	return false
}
