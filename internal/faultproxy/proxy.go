// Package faultproxy is a TCP proxy on loopback that injects the faults a region suffers in real
// life: latency and outage. Tests, benchmarks and `meridian dev` put it between the querier and a
// store to slow a region down or cut it off without touching the store itself.
package faultproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards every connection accepted on its listener to a target address. Data sent by the
// client is held for the current delay before it is forwarded, so each request reaches the target
// (and its answer comes back) that much later. While down, new connections are refused (closed at
// once) and open ones are cut.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	delay time.Duration
	down  bool
	conns map[net.Conn]struct{}
	done  chan struct{}
	wg    sync.WaitGroup
}

// New listens on listenAddr (e.g. "127.0.0.1:0") and forwards to target.
func New(listenAddr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the address clients should dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address connections are forwarded to.
func (p *Proxy) Target() string { return p.target }

// SetDelay sets the latency added to everything the client sends from now on.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Delay returns the current added latency.
func (p *Proxy) Delay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delay
}

// SetDown cuts every open connection and refuses new ones while down is true.
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	p.down = down
	var cut []net.Conn
	if down {
		for c := range p.conns {
			cut = append(cut, c)
		}
	}
	p.mu.Unlock()
	for _, c := range cut {
		_ = c.Close()
	}
}

// Down tells whether the proxy is refusing connections.
func (p *Proxy) Down() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}

// Close stops listening, cuts every connection and waits for the forwarding goroutines.
func (p *Proxy) Close() error {
	close(p.done)
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if p.Down() {
			_ = client.Close()
			continue
		}
		upstream, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			_ = client.Close()
			continue
		}
		if !p.track(client, upstream) {
			continue
		}
		p.wg.Add(2)
		go p.forward(upstream, client, true)
		go p.forward(client, upstream, false)
	}
}

// track registers a connection pair, or closes it when the proxy went down meanwhile.
func (p *Proxy) track(client, upstream net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		_ = client.Close()
		_ = upstream.Close()
		return false
	}
	p.conns[client] = struct{}{}
	p.conns[upstream] = struct{}{}
	return true
}

func (p *Proxy) untrack(a, b net.Conn) {
	p.mu.Lock()
	delete(p.conns, a)
	delete(p.conns, b)
	p.mu.Unlock()
	_ = a.Close()
	_ = b.Close()
}

// forward copies src to dst. In the delayed direction every chunk is released at the time it
// was read plus the delay in force then: pure added latency, not a bandwidth cap, so a request
// split over several reads is late by the delay once, not once per read.
func (p *Proxy) forward(dst, src net.Conn, delayed bool) {
	defer p.wg.Done()
	defer p.untrack(dst, src)
	if !delayed {
		_, _ = io.Copy(dst, src)
		return
	}
	type chunk struct {
		data      []byte
		releaseAt time.Time
	}
	queue := make(chan chunk, 256)
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		defer close(queue)
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case queue <- chunk{data: append([]byte(nil), buf[:n]...), releaseAt: time.Now().Add(p.Delay())}:
				case <-stopped:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range queue {
		if wait := time.Until(c.releaseAt); wait > 0 {
			select {
			case <-time.After(wait):
			case <-p.done:
				return
			}
		}
		if _, err := dst.Write(c.data); err != nil {
			return
		}
	}
}
