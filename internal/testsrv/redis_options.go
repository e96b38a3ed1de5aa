package testsrv

import (
	"crypto/tls"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// RedisOptions change the server NewRedisWith starts. The zero value is
// NewRedis's plain server.
type RedisOptions struct {
	// TLS, when set, makes the server accept TLS connections only: it
	// listens with TLS on Port and has no plain TCP port.
	TLS *RedisTLS
	// Users are ACL rules, one user per entry, as after the "user"
	// directive: "inv on >secret ~* &* +@all" or "default off". They are
	// passed as --user arguments.
	Users []string
	// Username and Password are what the helper's own clients (the
	// readiness probe, Client) authenticate with; set them when Users turn
	// the default user off or give it a password.
	Username, Password string
	// Cluster starts the server with cluster-enabled yes, its own
	// nodes.conf in its data directory and an explicit cluster bus port
	// (BusPort, chosen free like Port, so the usual Port+10000 needs neither
	// to be free nor below 65536). The node is not part of any cluster yet;
	// see NewRedisCluster.
	Cluster bool
	// Args are extra redis-server arguments, appended last.
	Args []string
}

// RedisTLS is the TLS setup of a Redis server.
type RedisTLS struct {
	// CertFile, KeyFile and CAFile are the server certificate, its key and
	// the CA that client certificates must chain to (tls-cert-file,
	// tls-key-file, tls-ca-cert-file).
	CertFile, KeyFile, CAFile string
	// AuthClients requires clients to present a certificate
	// (tls-auth-clients yes); otherwise it is optional.
	AuthClients bool
	// ClientConfig is the TLS configuration of the helper's own clients;
	// it must trust the server's certificate and, with AuthClients, carry
	// a client certificate.
	ClientConfig *tls.Config
	// ClientCertFile and ClientKeyFile are the client certificate and key
	// as files, for redis-cli (cluster creation).
	ClientCertFile, ClientKeyFile string
}

// RedisTLS returns a TLS setup for a Redis server with the PKI's server
// certificate, whose helper clients use the PKI's client certificate.
func (p *PKI) RedisTLS(authClients bool) *RedisTLS {
	return &RedisTLS{
		CertFile: p.ServerCertFile, KeyFile: p.ServerKeyFile, CAFile: p.CAFile,
		AuthClients: authClients, ClientConfig: p.ClientTLS(),
		ClientCertFile: p.ClientCertFile, ClientKeyFile: p.ClientKeyFile,
	}
}

// optionArgs are the arguments RedisOptions add to baseArgs; later
// arguments override earlier ones.
func (r *Redis) optionArgs() []string {
	var args []string
	if t := r.opts.TLS; t != nil {
		auth := "no"
		if t.AuthClients {
			auth = "yes"
		}
		args = append(args,
			"--port", "0",
			"--tls-port", strconv.Itoa(r.Port),
			"--tls-cert-file", t.CertFile,
			"--tls-key-file", t.KeyFile,
			"--tls-ca-cert-file", t.CAFile,
			"--tls-auth-clients", auth,
		)
		if r.opts.Cluster {
			args = append(args, "--tls-cluster", "yes")
		}
	}
	for _, u := range r.opts.Users {
		args = append(args, "--user")
		args = append(args, strings.Fields(u)...)
	}
	if r.opts.Cluster {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(r.BusPort),
			"--cluster-node-timeout", "5000",
		)
	}
	return append(args, r.opts.Args...)
}

// freeBusPort returns a free port other than Port for the cluster bus, or 0
// when the server is not a cluster node.
func (r *Redis) freeBusPort() (int, error) {
	if !r.opts.Cluster {
		return 0, nil
	}
	for {
		p, err := FreePort()
		if err != nil || p != r.Port {
			return p, err
		}
	}
}

// clientOptions are the go-redis options of the helper's own clients.
func (r *Redis) clientOptions() *redis.Options {
	o := &redis.Options{
		Addr:            r.Addr(),
		DisableIdentity: true,
		Username:        r.opts.Username,
		Password:        r.opts.Password,
	}
	if r.opts.TLS != nil && r.opts.TLS.ClientConfig != nil {
		o.TLSConfig = r.opts.TLS.ClientConfig.Clone()
	}
	return o
}
