// Package config loads the daemon's settings: defaults, then INVALIDATOR_*
// environment variables, then command-line flags. Validate names the
// variable that is wrong.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Prefix is the environment variable prefix.
const Prefix = "INVALIDATOR"

// Config holds every setting. The envconfig tag names the environment
// variable; every variable has a flag of the same name in kebab case
// (INVALIDATOR_NATS_TIMEOUT is --nats-timeout), with desc as its help.
// flag:"connection" registers the flag for every command that loads the
// configuration; the others are the daemon's own (run and check).
type Config struct {
	PostgresURL       string        `envconfig:"INVALIDATOR_POSTGRES_URL" flag:"connection" desc:"PostgreSQL URL"`
	RedisURL          string        `envconfig:"INVALIDATOR_REDIS_URL" flag:"connection" desc:"Redis URL, redis:// or rediss://"`
	RedisClusterAddrs []string      `envconfig:"INVALIDATOR_REDIS_CLUSTER_ADDRS" flag:"connection" desc:"comma-separated Redis Cluster seed nodes"`
	Rules             string        `envconfig:"INVALIDATOR_RULES" default:"/etc/invalidator/rules.yaml" flag:"connection" desc:"rules file"`
	Slot              string        `envconfig:"INVALIDATOR_SLOT" default:"invalidator" flag:"connection" desc:"logical replication slot"`
	Publication       string        `envconfig:"INVALIDATOR_PUBLICATION" default:"invalidator" flag:"connection" desc:"publication"`
	CreateSlot        bool          `envconfig:"INVALIDATOR_CREATE_SLOT" default:"true" desc:"create the slot and publication when missing"`
	HTTPAddr          string        `envconfig:"INVALIDATOR_HTTP_ADDR" default:":9187" desc:"health, metrics and status address; empty = off"`
	LogLevel          string        `envconfig:"INVALIDATOR_LOG_LEVEL" default:"info" flag:"connection" desc:"debug, info, warn or error"`
	LogFormat         string        `envconfig:"INVALIDATOR_LOG_FORMAT" default:"json" flag:"connection" desc:"json or console"`
	NATSURL           string        `envconfig:"INVALIDATOR_NATS_URL" desc:"bridge every message to NATS"`
	NATSJetStream     bool          `envconfig:"INVALIDATOR_NATS_JETSTREAM" default:"false" desc:"publish to JetStream"`
	Journal           bool          `envconfig:"INVALIDATOR_JOURNAL" default:"true" desc:"append applied batches to the journal stream"`
	HeartbeatInterval time.Duration `envconfig:"INVALIDATOR_HEARTBEAT_INTERVAL" default:"10s" desc:"heartbeat interval, 0 = off"`

	// Beyond the core settings: bounds and timings an operator may tune.
	JournalMaxLen   int64         `envconfig:"INVALIDATOR_JOURNAL_MAXLEN" default:"100000" desc:"approximate journal length"`
	MaxKeysPerTxn   int           `envconfig:"INVALIDATOR_MAX_KEYS_PER_TXN" default:"100000" desc:"keys per transaction before a rule switches to its wide form"`
	BatchMaxKeys    int           `envconfig:"INVALIDATOR_BATCH_MAX_KEYS" default:"10000" desc:"keys per coalesced batch"`
	BatchMaxTxns    int           `envconfig:"INVALIDATOR_BATCH_MAX_TXNS" default:"1000" desc:"transactions per coalesced batch"`
	BatchLinger     time.Duration `envconfig:"INVALIDATOR_BATCH_LINGER" default:"0s" desc:"wait this long for more transactions to join a batch"`
	ShutdownTimeout time.Duration `envconfig:"INVALIDATOR_SHUTDOWN_TIMEOUT" default:"10s" desc:"bound on draining at SIGTERM"`
	OnSlotLost      string        `envconfig:"INVALIDATOR_ON_SLOT_LOST" default:"fail" desc:"fail or resync when the slot was lost"`
	SlotFailover    string        `envconfig:"INVALIDATOR_SLOT_FAILOVER" default:"auto" desc:"auto, true or false: create the slot as a failover slot (PostgreSQL 17+)"`

	// Redis Sentinel (ADR 21): the master the sentinels name, found again
	// after every failure; REDIS_URL then only gives credentials, database
	// and TLS.
	RedisSentinelAddrs  []string `envconfig:"INVALIDATOR_REDIS_SENTINEL_ADDRS" flag:"connection" desc:"comma-separated Redis Sentinel addresses; set = Sentinel mode"`
	RedisSentinelMaster string   `envconfig:"INVALIDATOR_REDIS_SENTINEL_MASTER" flag:"connection" desc:"the master's name in the sentinels' configuration"`

	// Replica acknowledgement (ADR 22): a batch is confirmed only once this
	// many replicas of each master written to have it.
	RedisMinReplicas int           `envconfig:"INVALIDATOR_REDIS_MIN_REPLICAS" default:"0" desc:"replicas of each Redis master that must acknowledge a batch (WAIT) before it is confirmed"`
	RedisWaitTimeout time.Duration `envconfig:"INVALIDATOR_REDIS_WAIT_TIMEOUT" default:"1s" desc:"how long a WAIT for replicas waits before the batch is retried"`

	// Redis TLS (rediss:// or a cluster) and sharded pub/sub.
	RedisTLSCAFile     string        `envconfig:"INVALIDATOR_REDIS_TLS_CA_FILE" flag:"connection" desc:"CA bundle that signs the Redis server certificate"`
	RedisTLSCertFile   string        `envconfig:"INVALIDATOR_REDIS_TLS_CERT_FILE" flag:"connection" desc:"client certificate for Redis"`
	RedisTLSKeyFile    string        `envconfig:"INVALIDATOR_REDIS_TLS_KEY_FILE" flag:"connection" desc:"client key for Redis"`
	RedisShardedPubSub bool          `envconfig:"INVALIDATOR_REDIS_SHARDED_PUBSUB" default:"false" flag:"connection" desc:"publish with SPUBLISH (Redis 7 sharded pub/sub)"`
	RedisClusterTLS    bool          `envconfig:"INVALIDATOR_REDIS_CLUSTER_TLS" default:"false" flag:"connection" desc:"use TLS to the cluster nodes"`
	NATSCAFile         string        `envconfig:"INVALIDATOR_NATS_CA_FILE" desc:"CA bundle that signs the NATS server certificate"`
	NATSCertFile       string        `envconfig:"INVALIDATOR_NATS_CERT_FILE" desc:"client certificate for NATS"`
	NATSKeyFile        string        `envconfig:"INVALIDATOR_NATS_KEY_FILE" desc:"client key for NATS"`
	NATSCredsFile      string        `envconfig:"INVALIDATOR_NATS_CREDS_FILE" desc:"NATS credentials file (JWT and nkey)"`
	NATSStream         string        `envconfig:"INVALIDATOR_NATS_STREAM" desc:"create this JetStream stream for the subjects when missing"`
	NATSTimeout        time.Duration `envconfig:"INVALIDATOR_NATS_TIMEOUT" default:"5s" desc:"bound on a NATS flush or on the JetStream acks of each window of 1,024 publishes"`

	// PublicationCheckInterval is how often the active daemon checks that
	// the publication still covers every rule table (ADR 16); 0 = never.
	PublicationCheckInterval time.Duration `envconfig:"INVALIDATOR_PUBLICATION_CHECK_INTERVAL" default:"10s" desc:"how often to check that the publication covers every rule table, 0 = never"`
}

// Error is a bad setting, named by its environment variable.
type Error struct {
	Var string
	Msg string
}

func (e *Error) Error() string { return e.Var + ": " + e.Msg }

// FromEnv returns the defaults overridden by the environment.
func FromEnv() (*Config, error) {
	var c Config
	// Full names in the tags and no prefix here: envconfig would otherwise
	// fall back to unprefixed names (LOG_LEVEL, REDIS_URL) meant for others.
	if err := envconfig.Process("", &c); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{Var: pe.KeyName, Msg: fmt.Sprintf("invalid %s %q", typeName(pe.TypeName), pe.Value)}
		}
		return nil, fmt.Errorf("environment: %w", err)
	}
	return &c, nil
}

func typeName(t string) string {
	switch t {
	case "Duration", "time.Duration":
		return "duration (e.g. 10s, 1m)"
	case "bool":
		return "boolean (true or false)"
	case "int", "int64":
		return "integer"
	}
	return t
}

// Var returns the environment variable name of a setting.
func Var(name string) string { return Prefix + "_" + name }

var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// ValidateConnections checks what every connecting command needs.
func (c *Config) ValidateConnections() error {
	if c.PostgresURL == "" {
		return &Error{Var: Var("POSTGRES_URL"), Msg: "required, e.g. postgres://user:pass@host:5432/db?sslmode=require"}
	}
	u, err := url.Parse(c.PostgresURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return &Error{Var: Var("POSTGRES_URL"), Msg: "must be a postgres:// URL"}
	}
	if attrs := u.Query().Get("target_session_attrs"); strings.Contains(u.Host, ",") && attrs != "read-write" && attrs != "primary" {
		// the first host that answers would win, a standby included, and a
		// standby can neither stream a slot nor take the heartbeat's writes
		return &Error{Var: Var("POSTGRES_URL"), Msg: "names several hosts: add target_session_attrs=read-write so that only the primary is used"}
	}
	if len(c.RedisSentinelAddrs) > 0 || c.RedisSentinelMaster != "" {
		switch {
		case len(c.RedisClusterAddrs) > 0:
			return &Error{Var: Var("REDIS_SENTINEL_ADDRS"), Msg: "Sentinel and " + Var("REDIS_CLUSTER_ADDRS") + " exclude each other: set one"}
		case len(c.RedisSentinelAddrs) == 0:
			return &Error{Var: Var("REDIS_SENTINEL_ADDRS"), Msg: "required with " + Var("REDIS_SENTINEL_MASTER") + ", e.g. sentinel-1:26379,sentinel-2:26379,sentinel-3:26379"}
		case c.RedisSentinelMaster == "":
			return &Error{Var: Var("REDIS_SENTINEL_MASTER"), Msg: "required with " + Var("REDIS_SENTINEL_ADDRS") + ": the master's name in the sentinels' configuration (e.g. mymaster)"}
		}
		for _, a := range c.RedisSentinelAddrs {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				return &Error{Var: Var("REDIS_SENTINEL_ADDRS"), Msg: fmt.Sprintf("%q: use host:port", a)}
			}
		}
		if c.RedisURL != "" {
			if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
				return &Error{Var: Var("REDIS_URL"), Msg: "must be a redis:// or rediss:// URL (with Sentinel, its host is not used)"}
			}
		}
	} else if len(c.RedisClusterAddrs) == 0 {
		if c.RedisURL == "" {
			return &Error{Var: Var("REDIS_URL"), Msg: "required (or set " + Var("REDIS_CLUSTER_ADDRS") + "), e.g. redis://localhost:6379/0"}
		}
		if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			return &Error{Var: Var("REDIS_URL"), Msg: "must be a redis:// or rediss:// URL"}
		}
	}
	if !slotName.MatchString(c.Slot) {
		return &Error{Var: Var("SLOT"), Msg: fmt.Sprintf("%q: use 1 to 63 lower-case letters, digits or underscores", c.Slot)}
	}
	if c.Publication == "" {
		return &Error{Var: Var("PUBLICATION"), Msg: "must not be empty"}
	}
	switch c.SlotFailover {
	case "", "auto", "true", "false": // "" (a Config built in code) is auto
	default:
		return &Error{Var: Var("SLOT_FAILOVER"), Msg: fmt.Sprintf("%q: use auto, true or false", c.SlotFailover)}
	}
	if c.Rules == "" {
		return &Error{Var: Var("RULES"), Msg: "must name the rules file"}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return &Error{Var: Var("LOG_LEVEL"), Msg: fmt.Sprintf("%q: use debug, info, warn or error", c.LogLevel)}
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		return &Error{Var: Var("LOG_FORMAT"), Msg: fmt.Sprintf("%q: use json or console", c.LogFormat)}
	}
	return nil
}

// Validate checks every setting of the daemon.
func (c *Config) Validate() error {
	if err := c.ValidateConnections(); err != nil {
		return err
	}
	if c.NATSURL != "" {
		for _, one := range strings.Split(c.NATSURL, ",") {
			if u, err := url.Parse(strings.TrimSpace(one)); err != nil || u.Scheme == "" || u.Host == "" {
				return &Error{Var: Var("NATS_URL"), Msg: "must be URLs such as nats://host:4222 (comma-separated)"}
			}
		}
		if c.NATSTimeout <= 0 {
			return &Error{Var: Var("NATS_TIMEOUT"), Msg: "must be positive"}
		}
	}
	if c.NATSStream != "" && !c.NATSJetStream {
		return &Error{Var: Var("NATS_STREAM"), Msg: "needs " + Var("NATS_JETSTREAM") + "=true"}
	}
	if (c.RedisTLSCertFile == "") != (c.RedisTLSKeyFile == "") {
		return &Error{Var: Var("REDIS_TLS_KEY_FILE"), Msg: "the client certificate and key go together"}
	}
	if (c.NATSCertFile == "") != (c.NATSKeyFile == "") {
		return &Error{Var: Var("NATS_KEY_FILE"), Msg: "the client certificate and key go together"}
	}
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"HEARTBEAT_INTERVAL", c.HeartbeatInterval}, {"BATCH_LINGER", c.BatchLinger}, {"PUBLICATION_CHECK_INTERVAL", c.PublicationCheckInterval}} {
		if v.d < 0 {
			return &Error{Var: Var(v.name), Msg: "must not be negative"}
		}
	}
	if c.RedisMinReplicas < 0 {
		return &Error{Var: Var("REDIS_MIN_REPLICAS"), Msg: "must not be negative"}
	}
	if c.RedisMinReplicas > 0 && c.RedisWaitTimeout <= 0 {
		return &Error{Var: Var("REDIS_WAIT_TIMEOUT"), Msg: "must be positive when " + Var("REDIS_MIN_REPLICAS") + " is set"}
	}
	switch c.OnSlotLost {
	case "fail", "resync":
	default:
		return &Error{Var: Var("ON_SLOT_LOST"), Msg: fmt.Sprintf("%q: use fail or resync", c.OnSlotLost)}
	}
	if c.ShutdownTimeout <= 0 {
		return &Error{Var: Var("SHUTDOWN_TIMEOUT"), Msg: "must be positive"}
	}
	for _, v := range []struct {
		name string
		n    int64
	}{{"MAX_KEYS_PER_TXN", int64(c.MaxKeysPerTxn)}, {"BATCH_MAX_KEYS", int64(c.BatchMaxKeys)}, {"BATCH_MAX_TXNS", int64(c.BatchMaxTxns)}, {"JOURNAL_MAXLEN", c.JournalMaxLen}} {
		if v.n <= 0 {
			return &Error{Var: Var(v.name), Msg: "must be a positive integer"}
		}
	}
	return nil
}

// RedactURL hides the password of a URL (user info and password query
// parameters); an unparsable URL is hidden whole.
func RedactURL(raw string) string {
	if raw == "" {
		return ""
	}
	if strings.Contains(raw, ",") && !strings.HasPrefix(raw, "postgres") { // a server list (NATS): each one
		// (a multi-host postgres:// URL is one URL, with one password)
		parts := strings.Split(raw, ",")
		for i, p := range parts {
			parts[i] = RedactURL(strings.TrimSpace(p))
		}
		return strings.Join(parts, ",")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL redacted)"
	}
	if u.User != nil {
		if _, hasPassword := u.User.Password(); !hasPassword && u.User.Username() != "" && u.Scheme != "postgres" && u.Scheme != "postgresql" {
			// nats://TOKEN@host: a lone user is the auth token
			u.User = url.User("xxxxx")
		}
	}
	q := u.Query()
	changed := false
	for _, k := range []string{"password", "sslpassword"} {
		if q.Has(k) {
			q.Set(k, "xxxxx")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// Redacted returns the settings for logging, secrets hidden.
func (c *Config) Redacted() map[string]any {
	return map[string]any{
		"postgres_url":         RedactURL(c.PostgresURL),
		"redis_url":            RedactURL(c.RedisURL),
		"redis_cluster_addrs":  c.RedisClusterAddrs,
		"rules":                c.Rules,
		"slot":                 c.Slot,
		"publication":          c.Publication,
		"create_slot":          c.CreateSlot,
		"http_addr":            c.HTTPAddr,
		"log_level":            c.LogLevel,
		"log_format":           c.LogFormat,
		"nats_url":             RedactURL(c.NATSURL),
		"nats_jetstream":       c.NATSJetStream,
		"journal":              c.Journal,
		"journal_maxlen":       c.JournalMaxLen,
		"heartbeat_interval":   c.HeartbeatInterval.String(),
		"max_keys_per_txn":     c.MaxKeysPerTxn,
		"batch_max_keys":       c.BatchMaxKeys,
		"batch_max_txns":       c.BatchMaxTxns,
		"batch_linger":         c.BatchLinger.String(),
		"shutdown_timeout":     c.ShutdownTimeout.String(),
		"on_slot_lost":         c.OnSlotLost,
		"slot_failover":        c.SlotFailover,
		"redis_tls_ca_file":    c.RedisTLSCAFile,
		"redis_tls_cert_file":  c.RedisTLSCertFile,
		"redis_sharded_pubsub": c.RedisShardedPubSub,
		"redis_cluster_tls":    c.RedisClusterTLS,
		"nats_ca_file":         c.NATSCAFile,
		"nats_cert_file":       c.NATSCertFile,
		"nats_creds_file":      c.NATSCredsFile,
		"nats_stream":          c.NATSStream,
		"nats_timeout":         c.NATSTimeout.String(),

		"publication_check_interval": c.PublicationCheckInterval.String(),

		"redis_sentinel_addrs": c.RedisSentinelAddrs, "redis_sentinel_master": c.RedisSentinelMaster,
		"redis_min_replicas": c.RedisMinReplicas, "redis_wait_timeout": c.RedisWaitTimeout.String(),
	}
}
