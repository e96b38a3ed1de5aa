package subscriber_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// blackholeProxy forwards TCP connections to a target and can turn the
// connections open at that moment into black holes: they stay open but
// everything sent on them, both ways, is discarded — what a subscriber sees
// when a network path dies without a FIN or RST (a half-open connection).
// Connections accepted later are forwarded normally.
type blackholeProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []*proxiedConn
}

type proxiedConn struct {
	client, upstream net.Conn
	cut              atomic.Bool
}

// startProxy listens on a free loopback port; tb.Cleanup closes the listener
// and every connection and waits for the proxy's goroutines.
func startProxy(tb testing.TB, target string) *blackholeProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("proxy listen: %v", err)
	}
	p := &blackholeProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.client.Close()
			_ = c.upstream.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's listening address.
func (p *blackholeProxy) Addr() string { return p.ln.Addr().String() }

// Cut black-holes every connection currently open.
func (p *blackholeProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.cut.Store(true)
	}
}

func (p *blackholeProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed by cleanup
		}
		upstream, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		c := &proxiedConn{client: client, upstream: upstream}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, client, upstream)
		go p.pipe(c, upstream, client)
	}
}

// pipe copies from src to dst until either side fails, dropping the data
// once c is cut.
func (p *blackholeProxy) pipe(c *proxiedConn, src, dst net.Conn) {
	defer p.wg.Done()
	defer func() { _ = dst.Close(); _ = src.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !c.cut.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
