// Package config loads the daemon's settings: defaults, then INVALIDATOR_*
// environment variables, then command-line flags. Validate names the
// variable that is wrong.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Prefix is the environment variable prefix.
const Prefix = "INVALIDATOR"

// Config holds every setting. Field tags name the environment variables.
type Config struct {
	PostgresURL       string        `envconfig:"INVALIDATOR_POSTGRES_URL"`
	RedisURL          string        `envconfig:"INVALIDATOR_REDIS_URL"`
	RedisClusterAddrs []string      `envconfig:"INVALIDATOR_REDIS_CLUSTER_ADDRS"`
	Rules             string        `envconfig:"INVALIDATOR_RULES" default:"/etc/invalidator/rules.yaml"`
	Slot              string        `envconfig:"INVALIDATOR_SLOT" default:"invalidator"`
	Publication       string        `envconfig:"INVALIDATOR_PUBLICATION" default:"invalidator"`
	CreateSlot        bool          `envconfig:"INVALIDATOR_CREATE_SLOT" default:"true"`
	HTTPAddr          string        `envconfig:"INVALIDATOR_HTTP_ADDR" default:":9187"`
	LogLevel          string        `envconfig:"INVALIDATOR_LOG_LEVEL" default:"info"`
	LogFormat         string        `envconfig:"INVALIDATOR_LOG_FORMAT" default:"json"`
	NATSURL           string        `envconfig:"INVALIDATOR_NATS_URL"`
	NATSJetStream     bool          `envconfig:"INVALIDATOR_NATS_JETSTREAM" default:"false"`
	Journal           bool          `envconfig:"INVALIDATOR_JOURNAL" default:"true"`
	HeartbeatInterval time.Duration `envconfig:"INVALIDATOR_HEARTBEAT_INTERVAL" default:"10s"`

	// Beyond the SPEC's table: bounds and timings an operator may tune.
	JournalMaxLen   int64         `envconfig:"INVALIDATOR_JOURNAL_MAXLEN" default:"100000"`
	MaxKeysPerTxn   int           `envconfig:"INVALIDATOR_MAX_KEYS_PER_TXN" default:"100000"`
	BatchMaxKeys    int           `envconfig:"INVALIDATOR_BATCH_MAX_KEYS" default:"10000"`
	BatchMaxTxns    int           `envconfig:"INVALIDATOR_BATCH_MAX_TXNS" default:"1000"`
	BatchLinger     time.Duration `envconfig:"INVALIDATOR_BATCH_LINGER" default:"0s"`
	ShutdownTimeout time.Duration `envconfig:"INVALIDATOR_SHUTDOWN_TIMEOUT" default:"10s"`
	OnSlotLost      string        `envconfig:"INVALIDATOR_ON_SLOT_LOST" default:"fail"`

	// Redis TLS (rediss:// or a cluster) and sharded pub/sub.
	RedisTLSCAFile     string        `envconfig:"INVALIDATOR_REDIS_TLS_CA_FILE"`
	RedisTLSCertFile   string        `envconfig:"INVALIDATOR_REDIS_TLS_CERT_FILE"`
	RedisTLSKeyFile    string        `envconfig:"INVALIDATOR_REDIS_TLS_KEY_FILE"`
	RedisShardedPubSub bool          `envconfig:"INVALIDATOR_REDIS_SHARDED_PUBSUB" default:"false"`
	RedisClusterTLS    bool          `envconfig:"INVALIDATOR_REDIS_CLUSTER_TLS" default:"false"`
	NATSCAFile         string        `envconfig:"INVALIDATOR_NATS_CA_FILE"`
	NATSCertFile       string        `envconfig:"INVALIDATOR_NATS_CERT_FILE"`
	NATSKeyFile        string        `envconfig:"INVALIDATOR_NATS_KEY_FILE"`
	NATSCredsFile      string        `envconfig:"INVALIDATOR_NATS_CREDS_FILE"`
	NATSStream         string        `envconfig:"INVALIDATOR_NATS_STREAM"`
	NATSTimeout        time.Duration `envconfig:"INVALIDATOR_NATS_TIMEOUT" default:"5s"`

	// PublicationCheckInterval is how often the active daemon checks that
	// the publication still covers every rule table (ADR 16); 0 = never.
	PublicationCheckInterval time.Duration `envconfig:"INVALIDATOR_PUBLICATION_CHECK_INTERVAL" default:"10s"`
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

// listValue is a comma-separated flag.
type listValue struct{ dst *[]string }

func (l listValue) String() string {
	if l.dst == nil {
		return ""
	}
	return strings.Join(*l.dst, ",")
}

func (l listValue) Set(s string) error {
	*l.dst = splitList(s)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// BindConnectionFlags registers the flags every command that talks to
// PostgreSQL or Redis takes, with the current values as defaults (so
// flags override the environment).
func (c *Config) BindConnectionFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.PostgresURL, "postgres-url", c.PostgresURL, "PostgreSQL URL (env "+Var("POSTGRES_URL")+")")
	fs.StringVar(&c.RedisURL, "redis-url", c.RedisURL, "Redis URL, redis:// or rediss:// (env "+Var("REDIS_URL")+")")
	fs.Var(listValue{&c.RedisClusterAddrs}, "redis-cluster-addrs", "comma-separated Redis Cluster seed nodes (env "+Var("REDIS_CLUSTER_ADDRS")+")")
	fs.StringVar(&c.Rules, "rules", c.Rules, "rules file (env "+Var("RULES")+")")
	fs.StringVar(&c.Slot, "slot", c.Slot, "logical replication slot (env "+Var("SLOT")+")")
	fs.StringVar(&c.Publication, "publication", c.Publication, "publication (env "+Var("PUBLICATION")+")")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error (env "+Var("LOG_LEVEL")+")")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "json or console (env "+Var("LOG_FORMAT")+")")
	fs.StringVar(&c.RedisTLSCAFile, "redis-tls-ca-file", c.RedisTLSCAFile, "CA bundle that signs the Redis server certificate (env "+Var("REDIS_TLS_CA_FILE")+")")
	fs.StringVar(&c.RedisTLSCertFile, "redis-tls-cert-file", c.RedisTLSCertFile, "client certificate for Redis (env "+Var("REDIS_TLS_CERT_FILE")+")")
	fs.StringVar(&c.RedisTLSKeyFile, "redis-tls-key-file", c.RedisTLSKeyFile, "client key for Redis (env "+Var("REDIS_TLS_KEY_FILE")+")")
	fs.BoolVar(&c.RedisClusterTLS, "redis-cluster-tls", c.RedisClusterTLS, "use TLS to the cluster nodes (env "+Var("REDIS_CLUSTER_TLS")+")")
}

// BindRunFlags registers the daemon's own flags.
func (c *Config) BindRunFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.CreateSlot, "create-slot", c.CreateSlot, "create the slot and publication when missing (env "+Var("CREATE_SLOT")+")")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "health, metrics and status address; empty = off (env "+Var("HTTP_ADDR")+")")
	fs.StringVar(&c.NATSURL, "nats-url", c.NATSURL, "bridge every message to NATS (env "+Var("NATS_URL")+")")
	fs.BoolVar(&c.NATSJetStream, "nats-jetstream", c.NATSJetStream, "publish to JetStream (env "+Var("NATS_JETSTREAM")+")")
	fs.BoolVar(&c.Journal, "journal", c.Journal, "append applied batches to the journal stream (env "+Var("JOURNAL")+")")
	fs.Int64Var(&c.JournalMaxLen, "journal-maxlen", c.JournalMaxLen, "approximate journal length (env "+Var("JOURNAL_MAXLEN")+")")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", c.HeartbeatInterval, "heartbeat interval, 0 = off (env "+Var("HEARTBEAT_INTERVAL")+")")
	fs.IntVar(&c.MaxKeysPerTxn, "max-keys-per-txn", c.MaxKeysPerTxn, "keys per transaction before a rule switches to its wide form (env "+Var("MAX_KEYS_PER_TXN")+")")
	fs.IntVar(&c.BatchMaxKeys, "batch-max-keys", c.BatchMaxKeys, "keys per coalesced batch (env "+Var("BATCH_MAX_KEYS")+")")
	fs.IntVar(&c.BatchMaxTxns, "batch-max-txns", c.BatchMaxTxns, "transactions per coalesced batch (env "+Var("BATCH_MAX_TXNS")+")")
	fs.DurationVar(&c.BatchLinger, "batch-linger", c.BatchLinger, "wait this long for more transactions to join a batch (env "+Var("BATCH_LINGER")+")")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "bound on draining at SIGTERM (env "+Var("SHUTDOWN_TIMEOUT")+")")
	fs.BoolVar(&c.RedisShardedPubSub, "redis-sharded-pubsub", c.RedisShardedPubSub, "publish with SPUBLISH (Redis 7 sharded pub/sub) (env "+Var("REDIS_SHARDED_PUBSUB")+")")
	fs.StringVar(&c.NATSStream, "nats-stream", c.NATSStream, "create this JetStream stream for the subjects when missing (env "+Var("NATS_STREAM")+")")
	fs.StringVar(&c.OnSlotLost, "on-slot-lost", c.OnSlotLost, "fail or resync when the slot was lost (env "+Var("ON_SLOT_LOST")+")")
	fs.DurationVar(&c.PublicationCheckInterval, "publication-check-interval", c.PublicationCheckInterval, "how often to check that the publication covers every rule table, 0 = never (env "+Var("PUBLICATION_CHECK_INTERVAL")+")")
}

var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// ValidateConnections checks what every connecting command needs.
func (c *Config) ValidateConnections() error {
	if c.PostgresURL == "" {
		return &Error{Var: Var("POSTGRES_URL"), Msg: "required, e.g. postgres://user:pass@host:5432/db?sslmode=require"}
	}
	if u, err := url.Parse(c.PostgresURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return &Error{Var: Var("POSTGRES_URL"), Msg: "must be a postgres:// URL"}
	}
	if len(c.RedisClusterAddrs) == 0 {
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
	if strings.Contains(raw, ",") { // a server list (NATS): each one
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
	}
}
