package config_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cachewire/invalidator/config"
)

// settings are the variable names without the prefix. envconfig also reads
// each name without the prefix as a fallback, so both are cleared.
var settings = []string{
	"POSTGRES_URL", "REDIS_URL", "REDIS_CLUSTER_ADDRS", "RULES", "SLOT", "PUBLICATION",
	"CREATE_SLOT", "HTTP_ADDR", "LOG_LEVEL", "LOG_FORMAT", "NATS_URL", "NATS_JETSTREAM",
	"JOURNAL", "HEARTBEAT_INTERVAL", "JOURNAL_MAXLEN", "MAX_KEYS_PER_TXN", "BATCH_MAX_KEYS",
	"BATCH_MAX_TXNS", "BATCH_LINGER", "SHUTDOWN_TIMEOUT", "ON_SLOT_LOST",
	"SLOT_FAILOVER", "PUBLICATION_CHECK_INTERVAL",
}

// clearEnv unsets every variable the configuration may read, for the
// duration of the test. Tests that call it cannot run in parallel.
func clearEnv(tb testing.TB) {
	tb.Helper()
	var names []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, config.Prefix+"_") {
			names = append(names, k)
		}
	}
	for _, s := range settings {
		names = append(names, config.Var(s), s)
	}
	for _, n := range names {
		tb.Setenv(n, "") // restores the old value when the test ends
		if err := os.Unsetenv(n); err != nil {
			tb.Fatal(err)
		}
	}
}

func setEnv(tb testing.TB, kv map[string]string) {
	tb.Helper()
	for k, v := range kv {
		tb.Setenv(config.Var(k), v)
	}
}

func defaults() config.Config {
	return config.Config{
		Rules:             "/etc/invalidator/rules.yaml",
		Slot:              "invalidator",
		Publication:       "invalidator",
		CreateSlot:        true,
		HTTPAddr:          ":9187",
		LogLevel:          "info",
		LogFormat:         "json",
		NATSJetStream:     false,
		Journal:           true,
		HeartbeatInterval: 10 * time.Second,
		JournalMaxLen:     100000,
		MaxKeysPerTxn:     100000,
		BatchMaxKeys:      10000,
		BatchMaxTxns:      1000,
		BatchLinger:       0,
		ShutdownTimeout:   10 * time.Second,
		OnSlotLost:        "fail",
		SlotFailover:      "auto",
		RedisWaitTimeout:  time.Second,
		NATSTimeout:       5 * time.Second,

		PublicationCheckInterval: 10 * time.Second,
	}
}

// validConfig is the defaults plus the required URLs.
func validConfig() *config.Config {
	c := defaults()
	c.PostgresURL = "postgres://app:pw@db:5432/app?sslmode=require"
	c.RedisURL = "redis://cache:6379/0"
	return &c
}

func asConfigError(tb testing.TB, err error) *config.Error {
	tb.Helper()
	if err == nil {
		tb.Fatal("got no error, want a *config.Error")
	}
	var ce *config.Error
	if !errors.As(err, &ce) {
		tb.Fatalf("error %v is %T, want *config.Error", err, err)
	}
	if !strings.HasPrefix(err.Error(), ce.Var+": ") {
		tb.Errorf("error %q does not start with its variable %s", err, ce.Var)
	}
	return ce
}

func TestFromEnv_Defaults(t *testing.T) {
	clearEnv(t)
	c, err := config.FromEnv()
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	if want := defaults(); !reflect.DeepEqual(*c, want) {
		t.Errorf("FromEnv() = %+v\nwant %+v", *c, want)
	}
	// Without the required URLs the defaults do not validate, and the
	// error names the first missing variable.
	if ce := asConfigError(t, c.Validate()); ce.Var != "INVALIDATOR_POSTGRES_URL" {
		t.Errorf("Validate() names %s, want INVALIDATOR_POSTGRES_URL", ce.Var)
	}
}

func TestFromEnv_Overrides(t *testing.T) {
	clearEnv(t)
	setEnv(t, map[string]string{
		"POSTGRES_URL":        "postgres://u:p@pg:5432/db",
		"REDIS_URL":           "rediss://:p@redis:6380/1",
		"REDIS_CLUSTER_ADDRS": "r1:7000,r2:7001",
		"RULES":               "/tmp/rules.yaml",
		"SLOT":                "inv_1",
		"PUBLICATION":         "pub",
		"CREATE_SLOT":         "false",
		"HTTP_ADDR":           "",
		"LOG_LEVEL":           "debug",
		"LOG_FORMAT":          "console",
		"NATS_URL":            "nats://nats:4222",
		"NATS_JETSTREAM":      "true",
		"JOURNAL":             "false",
		"HEARTBEAT_INTERVAL":  "0",
		"JOURNAL_MAXLEN":      "500",
		"MAX_KEYS_PER_TXN":    "7",
		"BATCH_MAX_KEYS":      "8",
		"BATCH_MAX_TXNS":      "9",
		"BATCH_LINGER":        "5ms",
		"SHUTDOWN_TIMEOUT":    "1m",
		"ON_SLOT_LOST":        "resync",
		"SLOT_FAILOVER":       "true",

		"PUBLICATION_CHECK_INTERVAL": "250ms",
	})
	c, err := config.FromEnv()
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	want := config.Config{
		PostgresURL: "postgres://u:p@pg:5432/db", RedisURL: "rediss://:p@redis:6380/1",
		RedisClusterAddrs: []string{"r1:7000", "r2:7001"}, Rules: "/tmp/rules.yaml", Slot: "inv_1",
		Publication: "pub", CreateSlot: false, HTTPAddr: "", LogLevel: "debug", LogFormat: "console",
		NATSURL: "nats://nats:4222", NATSJetStream: true, Journal: false, HeartbeatInterval: 0,
		JournalMaxLen: 500, MaxKeysPerTxn: 7, BatchMaxKeys: 8, BatchMaxTxns: 9,
		BatchLinger: 5 * time.Millisecond, ShutdownTimeout: time.Minute, OnSlotLost: "resync", SlotFailover: "true", NATSTimeout: 5 * time.Second, RedisWaitTimeout: time.Second,
		PublicationCheckInterval: 250 * time.Millisecond,
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("FromEnv() = %+v\nwant %+v", *c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestFromEnv_InvalidValue(t *testing.T) {
	tests := []struct {
		name, value string
		kind        string // what the message says was expected
	}{
		{"HEARTBEAT_INTERVAL", "ten seconds", "duration"},
		{"HEARTBEAT_INTERVAL", "10", "duration"},
		{"CREATE_SLOT", "maybe", "boolean (true or false)"},
		{"NATS_JETSTREAM", "yes please", "boolean (true or false)"},
		{"MAX_KEYS_PER_TXN", "lots", "integer"},
		{"JOURNAL_MAXLEN", "1e9x", "integer"},
		{"SHUTDOWN_TIMEOUT", "soon", "duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			clearEnv(t)
			setEnv(t, map[string]string{tt.name: tt.value})
			c, err := config.FromEnv()
			if c != nil {
				t.Errorf("FromEnv() = %+v, want nil with the error", c)
			}
			ce := asConfigError(t, err)
			if want := config.Var(tt.name); ce.Var != want {
				t.Errorf("error names %q, want %q", ce.Var, want)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.value)) {
				t.Errorf("error %q does not quote the bad value", err)
			}
			if !strings.Contains(strings.ToLower(err.Error()), tt.kind) {
				t.Errorf("error %q does not say a %s was expected", err, tt.kind)
			}
		})
	}
}

// typeName means to explain durations with an example.
func TestFromEnv_InvalidDurationExplained(t *testing.T) {
	clearEnv(t)
	setEnv(t, map[string]string{"HEARTBEAT_INTERVAL": "ten seconds"})
	_, err := config.FromEnv()
	asConfigError(t, err)
	if want := `INVALIDATOR_HEARTBEAT_INTERVAL: invalid duration (e.g. 10s, 1m) "ten seconds"`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

// The documented variables carry the INVALIDATOR_ prefix; a generic
// LOG_LEVEL or REDIS_URL meant for another program must not configure the
// daemon.
func TestFromEnv_IgnoresUnprefixedNames(t *testing.T) {
	clearEnv(t)
	t.Setenv("LOG_LEVEL", "trace")
	t.Setenv("REDIS_URL", "redis://someone-else:6379")
	c, err := config.FromEnv()
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	if c.LogLevel != "info" || c.RedisURL != "" {
		t.Errorf("LogLevel = %q, RedisURL = %q; want the defaults info and empty", c.LogLevel, c.RedisURL)
	}
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(c *config.Config)
		wantVar string // "" = valid
	}{
		{name: "valid", mutate: func(c *config.Config) {}},
		{name: "postgresql scheme", mutate: func(c *config.Config) { c.PostgresURL = "postgresql://db/app" }},
		{name: "rediss scheme", mutate: func(c *config.Config) { c.RedisURL = "rediss://:pw@cache:6380" }},
		{name: "cluster without REDIS_URL", mutate: func(c *config.Config) {
			c.RedisURL = ""
			c.RedisClusterAddrs = []string{"r1:7000", "r2:7000"}
		}},
		{name: "heartbeat off", mutate: func(c *config.Config) { c.HeartbeatInterval = 0 }},
		{name: "http off", mutate: func(c *config.Config) { c.HTTPAddr = "" }},
		{name: "nats", mutate: func(c *config.Config) { c.NATSURL = "nats://nats:4222" }},
		{name: "missing POSTGRES_URL", mutate: func(c *config.Config) { c.PostgresURL = "" },
			wantVar: "INVALIDATOR_POSTGRES_URL"},
		{name: "mysql POSTGRES_URL", mutate: func(c *config.Config) { c.PostgresURL = "mysql://db/app" },
			wantVar: "INVALIDATOR_POSTGRES_URL"},
		{name: "missing REDIS_URL", mutate: func(c *config.Config) { c.RedisURL = "" },
			wantVar: "INVALIDATOR_REDIS_URL"},
		{name: "bad redis scheme", mutate: func(c *config.Config) { c.RedisURL = "http://cache:6379" },
			wantVar: "INVALIDATOR_REDIS_URL"},
		{name: "redis host without scheme", mutate: func(c *config.Config) { c.RedisURL = "cache:6379" },
			wantVar: "INVALIDATOR_REDIS_URL"},
		{name: "slot with upper case and dash", mutate: func(c *config.Config) { c.Slot = "My-Slot" },
			wantVar: "INVALIDATOR_SLOT"},
		{name: "empty slot", mutate: func(c *config.Config) { c.Slot = "" },
			wantVar: "INVALIDATOR_SLOT"},
		{name: "slot too long", mutate: func(c *config.Config) { c.Slot = strings.Repeat("s", 64) },
			wantVar: "INVALIDATOR_SLOT"},
		{name: "empty publication", mutate: func(c *config.Config) { c.Publication = "" },
			wantVar: "INVALIDATOR_PUBLICATION"},
		{name: "empty rules", mutate: func(c *config.Config) { c.Rules = "" },
			wantVar: "INVALIDATOR_RULES"},
		{name: "bad log level", mutate: func(c *config.Config) { c.LogLevel = "verbose" },
			wantVar: "INVALIDATOR_LOG_LEVEL"},
		{name: "bad log format", mutate: func(c *config.Config) { c.LogFormat = "xml" },
			wantVar: "INVALIDATOR_LOG_FORMAT"},
		{name: "nats without scheme", mutate: func(c *config.Config) { c.NATSURL = "nats-host" },
			wantVar: "INVALIDATOR_NATS_URL"},
		{name: "negative heartbeat", mutate: func(c *config.Config) { c.HeartbeatInterval = -time.Second },
			wantVar: "INVALIDATOR_HEARTBEAT_INTERVAL"},
		{name: "negative linger", mutate: func(c *config.Config) { c.BatchLinger = -time.Millisecond },
			wantVar: "INVALIDATOR_BATCH_LINGER"},
		{name: "negative publication check", mutate: func(c *config.Config) { c.PublicationCheckInterval = -time.Second },
			wantVar: "INVALIDATOR_PUBLICATION_CHECK_INTERVAL"},
		{name: "zero shutdown timeout", mutate: func(c *config.Config) { c.ShutdownTimeout = 0 },
			wantVar: "INVALIDATOR_SHUTDOWN_TIMEOUT"},
		{name: "zero max keys", mutate: func(c *config.Config) { c.MaxKeysPerTxn = 0 },
			wantVar: "INVALIDATOR_MAX_KEYS_PER_TXN"},
		{name: "negative batch keys", mutate: func(c *config.Config) { c.BatchMaxKeys = -1 },
			wantVar: "INVALIDATOR_BATCH_MAX_KEYS"},
		{name: "zero batch txns", mutate: func(c *config.Config) { c.BatchMaxTxns = 0 },
			wantVar: "INVALIDATOR_BATCH_MAX_TXNS"},
		{name: "zero journal length", mutate: func(c *config.Config) { c.JournalMaxLen = 0 },
			wantVar: "INVALIDATOR_JOURNAL_MAXLEN"},
		{name: "on slot lost resync", mutate: func(c *config.Config) { c.OnSlotLost = "resync" }},
		{name: "bad on slot lost", mutate: func(c *config.Config) { c.OnSlotLost = "ignore" },
			wantVar: "INVALIDATOR_ON_SLOT_LOST"},
		{name: "slot failover false", mutate: func(c *config.Config) { c.SlotFailover = "false" }},
		{name: "multi-host read-write", mutate: func(c *config.Config) {
			c.PostgresURL = "postgres://u@10.0.0.1:5432,10.0.0.2:5432/db?target_session_attrs=read-write"
		}},
		{name: "multi-host without target_session_attrs", mutate: func(c *config.Config) {
			c.PostgresURL = "postgres://u@10.0.0.1:5432,10.0.0.2:5432/db"
		}, wantVar: "INVALIDATOR_POSTGRES_URL"},
		{name: "bad slot failover", mutate: func(c *config.Config) { c.SlotFailover = "yes" },
			wantVar: "INVALIDATOR_SLOT_FAILOVER"},
		{name: "sentinel without redis url", mutate: func(c *config.Config) {
			c.RedisURL, c.RedisSentinelAddrs, c.RedisSentinelMaster = "", []string{"s1:26379", "s2:26379"}, "mymaster"
		}},
		{name: "sentinel without master", mutate: func(c *config.Config) { c.RedisSentinelAddrs = []string{"s1:26379"} },
			wantVar: "INVALIDATOR_REDIS_SENTINEL_MASTER"},
		{name: "sentinel master without addrs", mutate: func(c *config.Config) { c.RedisSentinelMaster = "mymaster" },
			wantVar: "INVALIDATOR_REDIS_SENTINEL_ADDRS"},
		{name: "sentinel addr without port", mutate: func(c *config.Config) {
			c.RedisSentinelAddrs, c.RedisSentinelMaster = []string{"s1"}, "mymaster"
		}, wantVar: "INVALIDATOR_REDIS_SENTINEL_ADDRS"},
		{name: "sentinel and cluster", mutate: func(c *config.Config) {
			c.RedisSentinelAddrs, c.RedisSentinelMaster, c.RedisClusterAddrs = []string{"s1:26379"}, "mymaster", []string{"r1:7000"}
		}, wantVar: "INVALIDATOR_REDIS_SENTINEL_ADDRS"},
		{name: "min replicas", mutate: func(c *config.Config) { c.RedisMinReplicas = 1 }},
		{name: "negative min replicas", mutate: func(c *config.Config) { c.RedisMinReplicas = -1 },
			wantVar: "INVALIDATOR_REDIS_MIN_REPLICAS"},
		{name: "min replicas without wait timeout", mutate: func(c *config.Config) { c.RedisMinReplicas, c.RedisWaitTimeout = 1, 0 },
			wantVar: "INVALIDATOR_REDIS_WAIT_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(c)
			err := c.Validate()
			if tt.wantVar == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if ce := asConfigError(t, err); ce.Var != tt.wantVar {
				t.Errorf("Validate() = %q, want it to name %s", err, tt.wantVar)
			}
			if strings.Contains(err.Error(), "pw@") {
				t.Errorf("error %q leaks a password", err)
			}
		})
	}
}

// ValidateConnections is what check/setup/status/replay need: it ignores
// the daemon-only settings.
func TestConfig_ValidateConnections(t *testing.T) {
	c := validConfig()
	c.BatchLinger = -time.Second
	c.ShutdownTimeout = 0
	if err := c.ValidateConnections(); err != nil {
		t.Errorf("ValidateConnections: %v", err)
	}
	c.Slot = "My-Slot"
	if ce := asConfigError(t, c.ValidateConnections()); ce.Var != "INVALIDATOR_SLOT" {
		t.Errorf("ValidateConnections names %s, want INVALIDATOR_SLOT", ce.Var)
	}
}

func TestConfig_BindFlags(t *testing.T) {
	env := map[string]string{
		"POSTGRES_URL":       "postgres://env/db",
		"REDIS_URL":          "redis://env:6379",
		"SLOT":               "env_slot",
		"LOG_LEVEL":          "warn",
		"HEARTBEAT_INTERVAL": "30s",
		"CREATE_SLOT":        "true",
	}
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, c *config.Config)
	}{
		{
			name: "no flags keep the environment",
			check: func(t *testing.T, c *config.Config) {
				if c.Slot != "env_slot" || c.LogLevel != "warn" || c.HeartbeatInterval != 30*time.Second ||
					c.PostgresURL != "postgres://env/db" || !c.CreateSlot {
					t.Errorf("config %+v does not carry the environment", c)
				}
			},
		},
		{
			name: "connection flags override",
			args: []string{"--postgres-url", "postgres://flag/db", "--redis-url=rediss://flag:6380",
				"--slot", "flag_slot", "--publication", "flagpub", "--rules", "/r.yaml",
				"--log-level", "error", "--log-format", "console"},
			check: func(t *testing.T, c *config.Config) {
				got := []string{c.PostgresURL, c.RedisURL, c.Slot, c.Publication, c.Rules, c.LogLevel, c.LogFormat}
				want := []string{"postgres://flag/db", "rediss://flag:6380", "flag_slot", "flagpub", "/r.yaml", "error", "console"}
				if !slices.Equal(got, want) {
					t.Errorf("got %q, want %q", got, want)
				}
				if c.HeartbeatInterval != 30*time.Second {
					t.Errorf("HeartbeatInterval = %v, want the environment's 30s", c.HeartbeatInterval)
				}
			},
		},
		{
			name: "run flags override",
			args: []string{"--heartbeat-interval=0", "--create-slot=false", "--http-addr=", "--nats-url", "nats://n:4222",
				"--nats-jetstream", "--journal=false", "--journal-maxlen", "42", "--max-keys-per-txn", "5",
				"--batch-max-keys", "6", "--batch-max-txns", "7", "--batch-linger", "3ms", "--shutdown-timeout", "2s",
				"--on-slot-lost", "resync", "--slot-failover", "false", "--publication-check-interval", "1s"},
			check: func(t *testing.T, c *config.Config) {
				want := config.Config{
					PostgresURL: "postgres://env/db", RedisURL: "redis://env:6379",
					Rules: "/etc/invalidator/rules.yaml", Slot: "env_slot", Publication: "invalidator",
					CreateSlot: false, HTTPAddr: "", LogLevel: "warn", LogFormat: "json",
					NATSURL: "nats://n:4222", NATSJetStream: true, Journal: false, HeartbeatInterval: 0,
					JournalMaxLen: 42, MaxKeysPerTxn: 5, BatchMaxKeys: 6, BatchMaxTxns: 7,
					BatchLinger: 3 * time.Millisecond, ShutdownTimeout: 2 * time.Second, OnSlotLost: "resync", SlotFailover: "false", NATSTimeout: 5 * time.Second, RedisWaitTimeout: time.Second,
					PublicationCheckInterval: time.Second,
				}
				if !reflect.DeepEqual(*c, want) {
					t.Errorf("config = %+v\nwant %+v", *c, want)
				}
			},
		},
		{
			name: "cluster addrs list",
			args: []string{"--redis-cluster-addrs", " r1:7000, r2:7001,,"},
			check: func(t *testing.T, c *config.Config) {
				if want := []string{"r1:7000", "r2:7001"}; !slices.Equal(c.RedisClusterAddrs, want) {
					t.Errorf("RedisClusterAddrs = %q, want %q", c.RedisClusterAddrs, want)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			setEnv(t, env)
			c, err := config.FromEnv()
			if err != nil {
				t.Fatalf("FromEnv: %v", err)
			}
			fs := runFlags(c)
			if f := fs.Lookup("slot"); f == nil || f.DefValue != "env_slot" {
				t.Errorf("--slot default = %v, want the environment's env_slot", f)
			}
			if err := fs.Parse(tt.args); err != nil {
				t.Fatalf("Parse(%q): %v", tt.args, err)
			}
			tt.check(t, c)
		})
	}
}

func TestConfig_BindFlagsBadValue(t *testing.T) {
	tests := [][]string{
		{"--heartbeat-interval", "often"},
		{"--max-keys-per-txn", "many"},
		{"--create-slot=perhaps"},
		{"--no-such-flag"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			c := validConfig()
			fs := runFlags(c)
			err := fs.Parse(args)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded", args)
			}
			name := strings.TrimLeft(strings.SplitN(args[0], "=", 2)[0], "-")
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name the flag %s", err, name)
			}
		})
	}
}

const secret = "s3cr3tPW"

func TestRedactURL(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "empty", in: "", want: ""},
		{name: "no password", in: "redis://cache:6379/0", want: "redis://cache:6379/0"},
		{name: "postgres user info",
			in:   "postgres://app:" + secret + "@db:5432/app?sslmode=require",
			want: "postgres://app:xxxxx@db:5432/app?sslmode=require"},
		{name: "postgres password parameter",
			in:   "postgres://app@db/app?sslmode=require&password=" + secret,
			want: "postgres://app@db/app?password=xxxxx&sslmode=require"},
		{name: "postgres sslpassword parameter",
			in:   "postgres://app@db/app?sslpassword=" + secret,
			want: "postgres://app@db/app?sslpassword=xxxxx"},
		{name: "both places",
			in:   "postgres://app:" + secret + "@db/app?password=" + secret,
			want: "postgres://app:xxxxx@db/app?password=xxxxx"},
		{name: "redis password only",
			in:   "rediss://:" + secret + "@cache:6380/1",
			want: "rediss://:xxxxx@cache:6380/1"},
		{name: "redis user and password",
			in:   "redis://default:" + secret + "@cache:6379",
			want: "redis://default:xxxxx@cache:6379"},
		{name: "escaped characters in password",
			in:   "postgres://app:" + secret + "%40%2F%3A@db/app",
			want: "postgres://app:xxxxx@db/app"},
		{name: "nats user and password",
			in:   "nats://u:" + secret + "@nats:4222",
			want: "nats://u:xxxxx@nats:4222"},
		{name: "postgres multi-host",
			in:   "postgres://app:" + secret + "@10.0.0.1:5432,10.0.0.2:5432/app?target_session_attrs=read-write",
			want: "postgres://app:xxxxx@10.0.0.1:5432,10.0.0.2:5432/app?target_session_attrs=read-write"},
		{name: "unparsable", in: "postgres://app:" + secret + "@db:port/app", want: "(unparsable URL redacted)"},
		{name: "bad escape", in: "postgres://app:" + secret + "%zz@db/app", want: "(unparsable URL redacted)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := config.RedactURL(tt.in)
			if got != tt.want {
				t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if strings.Contains(got, secret) {
				t.Errorf("RedactURL(%q) = %q leaks the secret", tt.in, got)
			}
		})
	}
}

// nats.go takes a user name without a password as an auth token
// ("nats://TOKEN@host:4222"): it is a secret.
func TestRedactURL_NATSToken(t *testing.T) {
	if got := config.RedactURL("nats://" + secret + "@nats:4222"); strings.Contains(got, secret) {
		t.Errorf("RedactURL = %q leaks the NATS token", got)
	}
}

func TestConfig_Redacted(t *testing.T) {
	c := validConfig()
	c.PostgresURL = "postgres://app:" + secret + "@db:5432/app?sslpassword=" + secret
	c.RedisURL = "rediss://default:" + secret + "@cache:6380"
	c.RedisClusterAddrs = []string{"r1:7000"}
	c.NATSURL = "nats://u:" + secret + "@nats:4222"
	red := c.Redacted()

	text := fmt.Sprint(red)
	js, err := json.Marshal(red)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{text, string(js)} {
		if strings.Contains(s, secret) {
			t.Errorf("Redacted() leaks the secret: %s", s)
		}
	}
	for key, want := range map[string]any{
		"postgres_url":       "postgres://app:xxxxx@db:5432/app?sslpassword=xxxxx",
		"redis_url":          "rediss://default:xxxxx@cache:6380",
		"nats_url":           "nats://u:xxxxx@nats:4222",
		"slot":               "invalidator",
		"heartbeat_interval": "10s",
		"max_keys_per_txn":   100000,
	} {
		if got := red[key]; !reflect.DeepEqual(got, want) {
			t.Errorf("Redacted()[%q] = %#v, want %#v", key, got, want)
		}
	}
	// Redacting must not change the configuration itself.
	if !strings.Contains(c.PostgresURL, secret) {
		t.Errorf("Redacted() modified PostgresURL: %q", c.PostgresURL)
	}
}
