package faultproxy

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// echoServer answers every line it receives with the same line.
func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader) time.Duration {
	start := time.Now()
	_, err := c.Write([]byte("ping\n"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ping\n", line)
	return time.Since(start)
}

func TestProxyAddsLatencyOncePerRequest(t *testing.T) {
	p, err := New("127.0.0.1:0", echoServer(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })

	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)

	require.Less(t, roundTrip(t, c, r), 100*time.Millisecond, "no delay configured")

	p.SetDelay(300 * time.Millisecond)
	d := roundTrip(t, c, r)
	require.GreaterOrEqual(t, d, 300*time.Millisecond)
	require.Less(t, d, 600*time.Millisecond)

	p.SetDelay(0)
	require.Less(t, roundTrip(t, c, r), 100*time.Millisecond, "delay removed")
}

func TestProxyDownCutsAndRefusesConnections(t *testing.T) {
	p, err := New("127.0.0.1:0", echoServer(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })

	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	roundTrip(t, c, r)

	p.SetDown(true)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
	_, _ = c.Write([]byte("ping\n"))
	_, err = r.ReadString('\n')
	require.Error(t, err, "open connection must be cut")

	c2, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err, "the listener stays open; the connection is closed at once")
	require.NoError(t, c2.SetReadDeadline(time.Now().Add(2*time.Second)))
	_, err = bufio.NewReader(c2).ReadString('\n')
	require.Error(t, err)
	_ = c2.Close()

	p.SetDown(false)
	c3, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c3.Close()
	roundTrip(t, c3, bufio.NewReader(c3))
}
