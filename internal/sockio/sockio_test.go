package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns a wrapped client and the server's end of a loopback TCP
// connection.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	w, ok := Wrap(c).(*Conn)
	if !ok {
		t.Fatalf("Wrap(%T) did not wrap", c)
	}
	t.Cleanup(func() { w.Close(); s.Close() })
	return w, s
}

func TestConn_ReadsAndWrites(t *testing.T) {
	c, s := pair(t)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("server read %q, %v", buf, err)
	}
	if _, err := s.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v", buf, err)
	}
}

// A write larger than the socket buffers waits for the reader and sends
// every byte in order.
func TestConn_LargeWriteWaitsForTheReader(t *testing.T) {
	c, s := pair(t)
	want := make([]byte, 32<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(s)
		got <- b
	}()
	n, err := c.Write(want)
	if err != nil || n != len(want) {
		t.Fatalf("write: %d, %v; want %d", n, err, len(want))
	}
	c.Close()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("server read %d bytes, not the %d written", len(b), len(want))
	}
}

func TestConn_EOFWhenThePeerCloses(t *testing.T) {
	c, s := pair(t)
	s.Close()
	if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed: %d, %v; want 0, io.EOF", n, err)
	}
}

// A deadline ends a read as net.Conn's does: a net.Error that times out
// and is os.ErrDeadlineExceeded.
func TestConn_DeadlineIsATimeout(t *testing.T) {
	c, _ := pair(t)
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v; want a timeout", err)
	}
	if msg := err.Error(); strings.Contains(msg, "raw-read") || !strings.HasPrefix(msg, "read tcp ") {
		t.Errorf("timeout reads %q; want it worded as net.Conn words it", msg)
	}
	// the connection is still usable once the deadline is cleared
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
}

// Closing the connection ends a read waiting on it with net.ErrClosed.
func TestConn_CloseEndsAWaitingRead(t *testing.T) {
	c, _ := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 8))
		done <- err
	}()
	// the read may start before or after Close: either way it must end
	// with net.ErrClosed
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on a closed connection: %v; want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read still waiting 10 s after Close")
	}
}

func TestWrap_LeavesOtherConnectionsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("a pipe was wrapped")
	}
}

// Reads from two goroutines at once take turns: every byte sent is read
// once, by one of them.
func TestConn_ConcurrentReadsTakeTurns(t *testing.T) {
	c, s := pair(t)
	const total = 4 << 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := 0
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1000)
			for {
				n, err := c.Read(buf)
				mu.Lock()
				got += n
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	if _, err := s.Write(make([]byte, total)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	wg.Wait()
	if got != total {
		t.Fatalf("read %d bytes, want %d", got, total)
	}
}

// go-redis checks a pooled connection through syscall.Conn before reusing it.
func TestConn_IsASyscallConn(t *testing.T) {
	c, _ := pair(t)
	var sc syscall.Conn = c
	raw, err := sc.SyscallConn()
	if err != nil || raw == nil {
		t.Fatalf("SyscallConn: %v, %v", raw, err)
	}
}
