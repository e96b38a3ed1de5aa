package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/internal/testsrv"
	"github.com/cachewire/invalidator/publisher"
	"github.com/cachewire/invalidator/router"
)

// the sinks of the sinks workload, in the order they run
const (
	sinkNATS      = "nats"
	sinkJetStream = "jetstream"
	sinkCluster   = "cluster"
)

var allSinks = []string{sinkNATS, sinkJetStream, sinkCluster}

const (
	// subjectPrefix is the NATS form of channelPrefix.
	subjectPrefix = "cache.invalidate."
	// sinkStream is the JetStream stream the daemon creates (and the floor
	// uses when it runs first: the same configuration).
	sinkStream = "INVALIDATOR_BENCH"
	// clusterMasters: the cluster sink's masters, without replicas.
	clusterMasters = 3
	// floorPart is how many rows the floor hands to its client at once
	// during the bulk: a round trip of the daemon carries at most 16,384
	// keys of UNLINKs.
	floorPart = 16_384
	// jsWindow is nats.go's default bound on unacknowledged async
	// publishes, which the daemon's JetStream client keeps.
	jsWindow = 4000
)

// recordSource is what a workload reads a sink's messages from.
type recordSource interface {
	reset()
	from(i int) ([]record, int)
}

// sinkRig is one sink's servers for the sinks workload, a subscriber of
// its messages, and the bare client that is its floor.
type sinkRig struct {
	kind   string
	server string // what the report says about the servers

	nats  *testsrv.NATS
	subNC *nats.Conn // the subscriber's connection
	pubNC *nats.Conn // the floor's connection
	js    jetstream.JetStream
	nsub  *natsSubscriber

	cluster *testsrv.RedisCluster
	cc      *redis.ClusterClient // the floor's client, also counts keys
	nodes   []*redis.Client
	rsub    *subscriber

	src recordSource

	daemonKeys []string // the daemon's own keys, left out of key counts
}

// startSinkRig starts the sink's servers, its subscriber and its floor's client.
func startSinkRig(ctx context.Context, kind string, daemonKeys []string) (_ *sinkRig, err error) {
	r := &sinkRig{kind: kind, daemonKeys: daemonKeys}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	switch kind {
	case sinkNATS, sinkJetStream:
		if r.nats, err = testsrv.NewNATS(kind == sinkJetStream); err != nil {
			return nil, fmt.Errorf("start nats-server: %w", err)
		}
		if r.subNC, err = nats.Connect(r.nats.URL(), nats.Name("bench-subscriber")); err != nil {
			return nil, fmt.Errorf("subscriber: connect nats: %w", err)
		}
		if r.nsub, err = subscribeNATS(r.subNC, subjectPrefix+"shard.>"); err != nil {
			return nil, err
		}
		if r.pubNC, err = nats.Connect(r.nats.URL(), nats.Name("bench-floor")); err != nil {
			return nil, fmt.Errorf("floor: connect nats: %w", err)
		}
		r.src = r.nsub
		r.server = "nats-server " + r.pubNC.ConnectedServerVersion()
		if kind == sinkJetStream {
			if r.js, err = jetstream.New(r.pubNC); err != nil {
				return nil, fmt.Errorf("floor: jetstream: %w", err)
			}
			if _, err := publisher.EnsureStream(ctx, r.js, sinkStream, subjectPrefix); err != nil {
				return nil, err
			}
			r.server += " with JetStream (file storage, stream " + sinkStream + ")"
		}
	case sinkCluster:
		if r.cluster, err = testsrv.NewRedisCluster(clusterMasters); err != nil {
			return nil, fmt.Errorf("start redis cluster: %w", err)
		}
		for _, a := range r.cluster.Addrs() {
			r.nodes = append(r.nodes, redis.NewClient(&redis.Options{Addr: a, DisableIdentity: true, PoolSize: 2}))
		}
		version := ""
		for _, n := range r.nodes {
			// as the single Redis: no persistence, no pubsub output limit
			for _, kv := range [][2]string{{"client-output-buffer-limit", "pubsub 0 0 0"}, {"appendonly", "no"}} {
				if err := n.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
					return nil, fmt.Errorf("cluster node: config set %s: %w", kv[0], err)
				}
			}
			info, err := n.Info(ctx, "server").Result()
			if err != nil {
				return nil, fmt.Errorf("cluster node: info: %w", err)
			}
			if v, ok := infoField(info, "redis_version"); ok {
				version = v
			}
		}
		r.cc = redis.NewClusterClient(&redis.ClusterOptions{Addrs: r.cluster.Addrs(), DisableIdentity: true})
		if r.rsub, err = startSubscriber(ctx, r.cluster.Addrs()[0], channelPrefix+"shard:*"); err != nil {
			return nil, err
		}
		r.src = r.rsub
		r.server = fmt.Sprintf("Redis Cluster of %d masters, no replicas, Redis %s (appendonly no); subscriber on the first node", clusterMasters, version)
	default:
		return nil, fmt.Errorf("unknown sink %q", kind)
	}
	return r, nil
}

// daemonEnv is what points the daemon at the sink.
func (r *sinkRig) daemonEnv() []string {
	switch r.kind {
	case sinkNATS:
		return []string{"INVALIDATOR_NATS_URL=" + r.nats.URL()}
	case sinkJetStream:
		return []string{"INVALIDATOR_NATS_URL=" + r.nats.URL(), "INVALIDATOR_NATS_JETSTREAM=true", "INVALIDATOR_NATS_STREAM=" + sinkStream}
	default:
		return []string{"INVALIDATOR_REDIS_URL=", "INVALIDATOR_REDIS_CLUSTER_ADDRS=" + strings.Join(r.cluster.Addrs(), ",")}
	}
}

func (r *sinkRig) close() {
	if r.rsub != nil {
		r.rsub.close()
	}
	if r.cc != nil {
		_ = r.cc.Close()
	}
	for _, n := range r.nodes {
		_ = n.Close()
	}
	if r.cluster != nil {
		_ = r.cluster.Close()
	}
	if r.pubNC != nil {
		r.pubNC.Close()
	}
	if r.subNC != nil {
		r.subNC.Close()
	}
	if r.nats != nil {
		_ = r.nats.Close()
	}
}

// floorMsg is one message the floor sends: the row's key, and the
// channel/subject and payload the daemon would send for it.
type floorMsg struct {
	key, channel, subject string
	payload               []byte
}

// floorBatch renders the messages of rows (tenant, id) as the daemon
// does (publisher.AppendMessage of the rule's message), with xid and
// commit_time = now, so the subscriber measures them the same way.
func floorBatch(dst []floorMsg, rows [][2]int, lsn cdc.LSN, xid uint32, now time.Time) []floorMsg {
	for _, row := range rows {
		t, id := row[0], row[1]
		key := shardKey(t, id)
		m := router.Message{Op: cdc.OpUpdate, Table: "public.shards", Rule: "shard-structured", Keys: []string{key}}
		dst = append(dst, floorMsg{
			key:     key,
			channel: fmt.Sprintf("%sshard:t%d:%d", channelPrefix, t, id),
			subject: fmt.Sprintf("%sshard.t%d.%d", subjectPrefix, t, id),
			payload: publisher.AppendMessage(nil, &m, lsn, xid, now),
		})
	}
	return dst
}

// floorSend hands msgs to the bare client: core NATS publishes (the
// client's flusher writes them), JetStream async publishes with a message
// id, the cluster one pipeline of their UNLINKs, then their PUBLISHes.
// The caller waits with floorFinish.
func (r *sinkRig) floorSend(ctx context.Context, msgs []floorMsg, idPrefix string, futures *[]jetstream.PubAckFuture) error {
	switch r.kind {
	case sinkNATS:
		for _, m := range msgs {
			if err := r.pubNC.Publish(m.subject, m.payload); err != nil {
				return fmt.Errorf("floor: nats publish: %w", err)
			}
		}
	case sinkJetStream:
		for _, m := range msgs {
			// keep within the client's window of unacknowledged publishes
			// (a publish past it waits 200 ms at most, then fails)
			if r.js.PublishAsyncPending() >= jsWindow {
				select {
				case <-r.js.PublishAsyncComplete():
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			msg := &nats.Msg{Subject: m.subject, Data: m.payload, Header: nats.Header{}}
			f, err := r.js.PublishMsgAsync(msg, jetstream.WithMsgID(idPrefix+strconv.Itoa(len(*futures))))
			if err != nil {
				return fmt.Errorf("floor: jetstream publish: %w", err)
			}
			*futures = append(*futures, f)
		}
	default:
		pipe := r.cc.Pipeline()
		for _, m := range msgs {
			pipe.Unlink(ctx, m.key)
		}
		for _, m := range msgs {
			pipe.Publish(ctx, m.channel, m.payload)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("floor: cluster pipeline: %w", err)
		}
	}
	return nil
}

// floorFinish waits until the sink has every message floorSend handed
// over: a flush (core NATS), every ack (JetStream); the cluster's
// pipelines have returned already. It returns how many acks failed.
func (r *sinkRig) floorFinish(ctx context.Context, futures []jetstream.PubAckFuture) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	switch r.kind {
	case sinkNATS:
		if err := r.pubNC.FlushWithContext(ctx); err != nil {
			return 0, fmt.Errorf("floor: nats flush: %w", err)
		}
	case sinkJetStream:
		select {
		case <-r.js.PublishAsyncComplete():
		case <-ctx.Done():
			return 0, fmt.Errorf("floor: jetstream acks: %w", ctx.Err())
		}
		failed := 0
		for _, f := range futures {
			select {
			case <-f.Err():
				failed++
			default:
			}
		}
		return failed, nil
	}
	return 0, nil
}

// prepare readies a bulk run of perTenant rows a tenant: it counts the
// keys that are not the daemon's (otherKeys), then caches the run's keys
// (preload), and returns that count.
func (r *sinkRig) prepare(ctx context.Context, perTenant int) (baseline int64, err error) {
	if baseline, err = r.otherKeys(ctx); err != nil {
		return 0, err
	}
	return baseline, r.preload(ctx, perTenant)
}

// preload caches the keys of rows id <= perTenant of every tenant in the
// cluster (pipelined SETs); the other sinks delete from the single Redis,
// whose keys the bulk workload covers.
func (r *sinkRig) preload(ctx context.Context, perTenant int) error {
	if r.kind != sinkCluster {
		return nil
	}
	pipe := r.cc.Pipeline()
	for t := range tenants {
		for id := 1; id <= perTenant; id++ {
			pipe.Set(ctx, shardKey(t, id), "cached", 0)
			if pipe.Len() >= 10_000 {
				if _, err := pipe.Exec(ctx); err != nil {
					return fmt.Errorf("cluster preload: %w", err)
				}
			}
		}
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("cluster preload: %w", err)
		}
	}
	return nil
}

// otherKeys returns how many keys the cluster holds that are not the
// daemon's (0 for the NATS sinks).
func (r *sinkRig) otherKeys(ctx context.Context) (int64, error) {
	if r.kind != sinkCluster {
		return 0, nil
	}
	var n int64
	for _, node := range r.nodes {
		v, err := node.DBSize(ctx).Result()
		if err != nil {
			return 0, fmt.Errorf("cluster dbsize: %w", err)
		}
		n += v
	}
	// in different slots: one EXISTS each, pipelined (go-redis splits the
	// pipeline by node)
	pipe := r.cc.Pipeline()
	exists := make([]*redis.IntCmd, len(r.daemonKeys))
	for i, k := range r.daemonKeys {
		exists[i] = pipe.Exists(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("cluster exists: %w", err)
	}
	for _, e := range exists {
		n -= e.Val()
	}
	return n, nil
}

// natsSubscriber keeps a record of every message on its subject, as the
// suite's Redis subscriber does.
type natsSubscriber struct {
	sub *nats.Subscription
	recordLog
}

func subscribeNATS(nc *nats.Conn, subject string) (*natsSubscriber, error) {
	s := &natsSubscriber{recordLog: recordLog{recs: make([]record, 0, 1<<20)}}
	sub, err := nc.Subscribe(subject, s.add)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	// a 200,000-message burst must not be dropped by the client
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, fmt.Errorf("subscribe %s: pending limits: %w", subject, err)
	}
	if err := nc.Flush(); err != nil {
		return nil, fmt.Errorf("subscribe %s: flush: %w", subject, err)
	}
	s.sub = sub
	return s, nil
}

func (s *natsSubscriber) add(m *nats.Msg) {
	s.recordLog.add(m.Data, strings.Contains(m.Subject, "%2A"), hashChannel(m.Subject))
}
