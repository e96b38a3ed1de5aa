package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/cachewire/invalidator/config"
	"github.com/cachewire/invalidator/internal/backoff"
	"github.com/cachewire/invalidator/internal/sockio"
	"github.com/cachewire/invalidator/publisher"
	"github.com/cachewire/invalidator/router"
)

// newNATS connects to NATS, reconnecting for ever. Publishing while
// disconnected fails at once instead of filling a client-side buffer, so
// the applier retries and confirms nothing meanwhile.
func newNATS(cfg *config.Config, log *zap.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("invalidator"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(-1),
		// raw socket reads and writes (ADR 30); nats.go puts TLS on top
		nats.SetCustomDialer(sockio.NATSDialer{Timeout: nats.GetDefaultOptions().Timeout}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", zap.Error(err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", zap.String("server", nc.ConnectedUrlRedacted()))
		}),
	}
	if cfg.NATSCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.NATSCAFile))
	}
	if cfg.NATSCertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.NATSCertFile, cfg.NATSKeyFile))
	}
	if cfg.NATSCredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCredsFile))
	}
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	if err != nil {
		return nil, &config.Error{Var: config.Var("NATS_URL"), Msg: "cannot use: " + redactErr(err, cfg)}
	}
	return nc, nil
}

// natsBridge connects to NATS when INVALIDATOR_NATS_URL is set and returns
// its sink (nil without NATS) and what closes the connection, to call in
// every case once the sink is no longer used.
func natsBridge(ctx context.Context, cfg *config.Config, rt *router.Router, log *zap.Logger) (*publisher.NATSSink, func(), error) {
	if cfg.NATSURL == "" {
		return nil, func() {}, nil
	}
	rt.RenderSubjects()
	nc, err := newNATS(cfg, log)
	if err != nil {
		return nil, func() {}, err
	}
	bridge, err := newBridge(ctx, cfg, nc, rt.SubjectPrefix(), log)
	return bridge, nc.Close, err
}

// newBridge returns the NATS sink; for JetStream it creates the stream
// when asked to, waiting for NATS if it is down.
func newBridge(ctx context.Context, cfg *config.Config, nc *nats.Conn, subjectPrefix string, log *zap.Logger) (*publisher.NATSSink, error) {
	if !cfg.NATSJetStream {
		return publisher.NewNATSSink(nc, nil, cfg.Slot, subjectPrefix, cfg.NATSTimeout), nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b := backoff.Backoff{Min: 250 * time.Millisecond, Max: 15 * time.Second}
	for cfg.NATSStream != "" {
		sctx, cancel := context.WithTimeout(ctx, cfg.NATSTimeout)
		created, err := publisher.EnsureStream(sctx, js, cfg.NATSStream, subjectPrefix)
		cancel()
		if err == nil {
			if created {
				log.Info("created jetstream stream", zap.String("stream", cfg.NATSStream), zap.String("subjects", subjectPrefix+">"))
			}
			break
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		if !pauseAfter(ctx, &b, log, "cannot ensure the jetstream stream; retrying", err) {
			return nil, nil
		}
	}
	return publisher.NewNATSSink(nc, js, cfg.Slot, subjectPrefix, cfg.NATSTimeout), nil
}
