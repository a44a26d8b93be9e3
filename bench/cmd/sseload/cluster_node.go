package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/coregx/stream/natsbroker"
	"github.com/coregx/stream/redisbroker"
	"github.com/coregx/stream/sse"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

// A node of -scenario cluster is this binary started with
// -cluster-node=BROKER: an sse.Server with the broker under test (one
// topic, every other setting at its default) beside the control
// endpoints of the other servers, plus GET /ctl/broker with what the
// node read from the broker.

// Brokers of -scenario cluster, as -brokers names them.
const (
	brokerMemory = "memory"
	brokerRedis  = "redis"
	brokerNATS   = "nats"
)

var allBrokers = []string{brokerMemory, brokerRedis, brokerNATS}

// Commands that start the machine's Redis and NATS, for the error when
// one cannot be reached.
const (
	startRedis = `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log`
	startNATS  = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log"
)

// clusterLimits is every broker's history in the cluster scenario: far
// more than a run publishes, so that a node that falls behind during a
// burst reads events the broker still holds.
var clusterLimits = sse.HistoryLimits{MaxEvents: 100_000, MaxBytes: 64 << 20, MaxAge: 10 * time.Minute}

// brokerCounts is the answer of GET /ctl/broker: what one node asked of
// and got from its broker, counted since the node started.
type brokerCounts struct {
	// Subscribes counts the Server's Subscribe calls on the broker.
	Subscribes int64 `json:"subscribes"`
	// Fed counts the messages the broker fed those subscriptions.
	Fed int64 `json:"fed"`
	// ReadCalls counts blocking reads the node sent to the broker
	// (Redis: XREAD); -1 when not counted.
	ReadCalls int64 `json:"read_calls"`
	// ReadEntries counts the entries those reads returned; -1 when not
	// counted.
	ReadEntries int64 `json:"read_entries"`
	// Commands counts every command the node sent to Redis; -1 when not
	// counted.
	Commands int64 `json:"commands"`
	// InMsgs counts the messages the node's NATS connection received;
	// -1 when not counted.
	InMsgs int64 `json:"in_msgs"`
}

// countingBroker counts the Subscribe calls on the broker it wraps and
// the messages they are fed.
type countingBroker struct {
	sse.Broker
	subscribes, fed atomic.Int64
}

func (b *countingBroker) Subscribe(ctx context.Context, topic string, after uint64, fn func(sse.Message)) (sse.Subscription, error) {
	b.subscribes.Add(1)
	return b.Broker.Subscribe(ctx, topic, after, func(m sse.Message) {
		b.fed.Add(1)
		fn(m)
	})
}

// redisCounter is a go-redis hook counting the commands of one client,
// and the XREAD calls and the entries they returned.
type redisCounter struct {
	commands, reads, entries atomic.Int64
}

func (c *redisCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *redisCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		c.commands.Add(1)
		if x, ok := cmd.(*redis.XStreamSliceCmd); ok && cmd.Name() == "xread" {
			c.reads.Add(1)
			for _, st := range x.Val() {
				c.entries.Add(int64(len(st.Messages)))
			}
		}
		return err
	}
}

func (c *redisCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		c.commands.Add(int64(len(cmds)))
		return err
	}
}

// clusterNode is one node: the broadcaster the control endpoints drive.
type clusterNode struct {
	srv     *sse.Server
	broker  *countingBroker
	redis   *redisCounter // nil unless the broker is Redis
	nc      *nats.Conn    // nil unless the broker is NATS
	closers []func()
}

func (n *clusterNode) ServeHTTP(w http.ResponseWriter, r *http.Request) { n.srv.ServeHTTP(w, r) }

func (n *clusterNode) Publish(data string) error {
	_, err := n.srv.Publish(context.Background(), "", sse.NewEvent(data))
	return err
}

func (n *clusterNode) Close() {
	_ = n.srv.Close()
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
}

func (n *clusterNode) counts() engineCounts { return countsFrom(n.srv.Stats()) }

func (n *clusterNode) brokerCounts() brokerCounts {
	c := brokerCounts{Subscribes: n.broker.subscribes.Load(), Fed: n.broker.fed.Load(),
		ReadCalls: -1, ReadEntries: -1, Commands: -1, InMsgs: -1}
	if n.redis != nil {
		c.ReadCalls, c.ReadEntries, c.Commands = n.redis.reads.Load(), n.redis.entries.Load(), n.redis.commands.Load()
	}
	if n.nc != nil {
		c.InMsgs = int64(n.nc.Stats().InMsgs)
	}
	return c
}

// clusterNames are the names one run gives its broker state, unique per
// run so that runs never share (or delete) each other's.
type clusterNames struct {
	redisPrefix string // Redis key prefix
	natsStream  string // JetStream stream name
	natsSubject string // its subject prefix
}

func namesFor(run string) clusterNames {
	return clusterNames{redisPrefix: "sseload:" + run + ":", natsStream: "SSELOAD_" + run, natsSubject: "sseload_" + run}
}

// newClusterNode connects to the broker and returns the node.
func newClusterNode(ctx context.Context, broker, url, run string) (*clusterNode, error) {
	names := namesFor(run)
	n := &clusterNode{}
	var b sse.Broker
	switch broker {
	case brokerMemory:
		mb := sse.NewMemoryBroker(clusterLimits)
		b = mb
		n.closers = append(n.closers, func() { _ = mb.Close() })
	case brokerRedis:
		rdb, err := dialRedis(ctx, url, "sseload-node-"+run)
		if err != nil {
			return nil, err
		}
		n.redis = &redisCounter{}
		rdb.AddHook(n.redis)
		rb := redisbroker.New(rdb, &redisbroker.Options{Prefix: names.redisPrefix, Limits: clusterLimits})
		b = rb
		n.closers = append(n.closers, func() { _ = rdb.Close() }, func() { _ = rb.Close() })
	case brokerNATS:
		nc, err := dialNATS(ctx, url, "sseload-node-"+run)
		if err != nil {
			return nil, err
		}
		nb, err := natsbroker.New(ctx, nc, &natsbroker.Options{Stream: names.natsStream, Subject: names.natsSubject, Limits: clusterLimits})
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("natsbroker: %w", err)
		}
		n.nc = nc
		b = nb
		n.closers = append(n.closers, nc.Close, func() { _ = nb.Close() })
	default:
		return nil, fmt.Errorf("unknown broker %q", broker)
	}
	n.broker = &countingBroker{Broker: b}
	n.srv = &sse.Server{Broker: n.broker}
	return n, nil
}

// dialRedis connects to the Redis at url and checks that it answers; a
// Redis that cannot be reached is an error with the command that starts
// the machine's.
func dialRedis(ctx context.Context, url, name string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("-redis-url: %w", err)
	}
	if err := checkLoopbackHostPort(opts.Addr); err != nil {
		return nil, fmt.Errorf("-redis-url: %w", err)
	}
	opts.ClientName = name
	rdb := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis at %s is not reachable (%v); start it with: %s", opts.Addr, err, startRedis)
	}
	return rdb, nil
}

// dialNATS connects to the NATS server at url and checks that it has
// JetStream; one that cannot be reached is an error with the command
// that starts the machine's.
func dialNATS(ctx context.Context, url, name string) (*nats.Conn, error) {
	if err := checkNATSURL(url); err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url, nats.Name(name), nats.Timeout(3*time.Second), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("nats at %s is not reachable (%v); start it with: %s", url, err, startNATS)
	}
	js, err := nc.JetStream()
	if err == nil {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err = js.AccountInfo(nats.Context(actx))
		cancel()
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats at %s has no JetStream (%v); start it with: %s", url, err, startNATS)
	}
	return nc, nil
}

// checkNATSURL accepts nats://host:port on loopback only.
func checkNATSURL(url string) error {
	hp, ok := cutScheme(url, "nats://")
	if !ok {
		return fmt.Errorf("-nats-url: %q is not nats://host:port", url)
	}
	if err := checkLoopbackHostPort(hp); err != nil {
		return fmt.Errorf("-nats-url: %w", err)
	}
	return nil
}

func cutScheme(url, scheme string) (string, bool) {
	if len(url) <= len(scheme) || url[:len(scheme)] != scheme {
		return "", false
	}
	return url[len(scheme):], true
}

// serveClusterNode runs one node until ctx ends.
func serveClusterNode(ctx context.Context, cfg *config, stdout io.Writer) error {
	node, err := newClusterNode(ctx, cfg.cluster.node, cfg.cluster.brokerURL, cfg.cluster.run)
	if err != nil {
		return err
	}
	c := &control{impl: "cluster-" + cfg.cluster.node, b: node}
	mux := http.NewServeMux()
	mux.Handle("/", c.handler())
	mux.HandleFunc("GET /ctl/broker", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, node.brokerCounts()) })
	return serveControl(ctx, cfg.listen, mux, node.Close, stdout)
}
