package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"go.yaml.in/yaml/v2"
)

// endpointKind tells how an --endpoint value turns into store addresses.
type endpointKind int

const (
	endpointStatic endpointKind = iota // host:port, dialled as is
	endpointDNS                        // dns+host:port: one store per A/AAAA record
	endpointSRV                        // dnssrv+_grpc._tcp.name: one store per SRV record, targets resolved to IPs
)

// endpointSpec is a parsed --endpoint value.
type endpointSpec struct {
	raw  string
	kind endpointKind
	host string // name to resolve (DNS kinds) or host (static)
	port string // empty for SRV: the records carry the ports
}

// parseEndpoint validates an --endpoint value.
func parseEndpoint(raw string) (endpointSpec, error) {
	spec := endpointSpec{raw: raw}
	rest := raw
	switch {
	case strings.HasPrefix(raw, "dnssrv+"):
		spec.kind = endpointSRV
		spec.host = strings.TrimPrefix(raw, "dnssrv+")
		if spec.host == "" {
			return spec, fmt.Errorf("endpoint %q: missing SRV name", raw)
		}
		return spec, nil
	case strings.HasPrefix(raw, "dns+"):
		spec.kind = endpointDNS
		rest = strings.TrimPrefix(raw, "dns+")
	case strings.Contains(raw, "+"):
		return spec, fmt.Errorf("endpoint %q: unknown resolver prefix (want dns+ or dnssrv+)", raw)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		return spec, fmt.Errorf("endpoint %q: %w", raw, err)
	}
	if host == "" {
		return spec, fmt.Errorf("endpoint %q: missing host", raw)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return spec, fmt.Errorf("endpoint %q: invalid port %q", raw, port)
	}
	spec.host, spec.port = host, port
	return spec, nil
}

// target is one store address the discovery wants in the store set. A target whose name could
// not be resolved yet keeps its endpoint spec as address and carries the resolution error, so
// that it is accounted for in every answer instead of vanishing.
type target struct {
	addr   string
	labels labels.Labels // labels from a file SD group; used to name the region before Info answers
	err    error
}

// hostResolver is the part of net.Resolver the discovery uses.
type hostResolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// discovery turns endpoint specs and file SD files into targets. It keeps the last good answer
// of each source so that a DNS hiccup or a half-written file never drops stores.
type discovery struct {
	logger   *slog.Logger
	resolver hostResolver
	specs    []endpointSpec
	files    []string

	dnsLast  map[string][]target // spec.raw -> last resolution
	fileLast map[string][]target // file path -> last good parse
	fileRaw  map[string][]byte   // file path -> content of the last parse attempt
}

func newDiscovery(logger *slog.Logger, endpoints, files []string) (*discovery, error) {
	d := &discovery{
		logger:   logger,
		resolver: net.DefaultResolver,
		files:    files,
		dnsLast:  map[string][]target{},
		fileLast: map[string][]target{},
		fileRaw:  map[string][]byte{},
	}
	seen := map[string]bool{}
	for _, e := range endpoints {
		e = strings.TrimSpace(e)
		if seen[e] {
			continue
		}
		seen[e] = true
		spec, err := parseEndpoint(e)
		if err != nil {
			return nil, err
		}
		d.specs = append(d.specs, spec)
	}
	return d, nil
}

// hasDNS tells whether any endpoint needs periodic re-resolution.
func (d *discovery) hasDNS() bool {
	for _, s := range d.specs {
		if s.kind != endpointStatic {
			return true
		}
	}
	return false
}

// resolveDNS re-resolves every dns+ and dnssrv+ endpoint. A failed lookup keeps the previous
// addresses; an endpoint that never resolved is kept as a placeholder target carrying the error.
func (d *discovery) resolveDNS(ctx context.Context) {
	for _, spec := range d.specs {
		if spec.kind == endpointStatic {
			continue
		}
		addrs, err := d.lookup(ctx, spec)
		if err == nil && len(addrs) == 0 {
			err = fmt.Errorf("no records")
		}
		if err != nil {
			err = fmt.Errorf("resolve %s: %w", spec.raw, err)
			if prev := d.dnsLast[spec.raw]; len(prev) > 0 && prev[0].err == nil {
				d.logger.Warn("endpoint resolution failed, keeping previous addresses", "endpoint", spec.raw, "err", err)
				continue
			}
			d.logger.Warn("endpoint resolution failed", "endpoint", spec.raw, "err", err)
			d.dnsLast[spec.raw] = []target{{addr: spec.raw, err: err}}
			continue
		}
		ts := make([]target, 0, len(addrs))
		for _, a := range addrs {
			ts = append(ts, target{addr: a})
		}
		d.dnsLast[spec.raw] = ts
	}
}

func (d *discovery) lookup(ctx context.Context, spec endpointSpec) ([]string, error) {
	switch spec.kind {
	case endpointDNS:
		ips, err := d.resolver.LookupIPAddr(ctx, spec.host)
		if err != nil {
			return nil, err
		}
		out := make([]string, 0, len(ips))
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip.IP.String(), spec.port))
		}
		return out, nil
	case endpointSRV:
		_, recs, err := d.resolver.LookupSRV(ctx, "", "", spec.host)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, rec := range recs {
			port := strconv.Itoa(int(rec.Port))
			ips, err := d.resolver.LookupIPAddr(ctx, rec.Target)
			if err != nil {
				return nil, fmt.Errorf("resolve SRV target %s: %w", rec.Target, err)
			}
			for _, ip := range ips {
				out = append(out, net.JoinHostPort(ip.IP.String(), port))
			}
		}
		return out, nil
	}
	return []string{net.JoinHostPort(spec.host, spec.port)}, nil
}

// readFiles re-reads the file SD files whose content changed. A file that cannot be read or
// parsed keeps its previous targets; the problems of this round are returned, joined.
func (d *discovery) readFiles() error {
	var errs []error
	for _, path := range d.files {
		content, err := os.ReadFile(path)
		if err != nil {
			if prev, ok := d.fileRaw[path]; !ok || prev != nil {
				// Log once per outage, not on every poll.
				d.logger.Error("read endpoint SD file, keeping previous targets", "file", path, "err", err)
			}
			d.fileRaw[path] = nil
			errs = append(errs, fmt.Errorf("read %s: %w", path, err))
			continue
		}
		if prev, ok := d.fileRaw[path]; ok && prev != nil && bytes.Equal(prev, content) {
			continue
		}
		d.fileRaw[path] = content
		ts, err := parseSDFile(path, content)
		if err != nil {
			d.logger.Error("parse endpoint SD file, keeping previous targets", "file", path, "err", err)
			errs = append(errs, err)
			continue
		}
		d.logger.Info("loaded endpoint SD file", "file", path, "targets", len(ts))
		d.fileLast[path] = ts
	}
	return errors.Join(errs...)
}

// parseSDFile reads Prometheus file_sd content: a list of {targets: [...], labels: {...}}.
func parseSDFile(path string, content []byte) ([]target, error) {
	var groups []*targetgroup.Group
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		if err := json.Unmarshal(content, &groups); err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
	default:
		if err := yaml.UnmarshalStrict(content, &groups); err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
	}
	var out []target
	for i, g := range groups {
		if g == nil {
			continue
		}
		b := labels.NewScratchBuilder(len(g.Labels))
		for k, v := range g.Labels {
			b.Add(string(k), string(v))
		}
		b.Sort()
		lset := b.Labels()
		for _, t := range g.Targets {
			addr := string(t["__address__"])
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return nil, fmt.Errorf("parse %s: group %d: target %q: %w", path, i, addr, err)
			}
			out = append(out, target{addr: addr, labels: lset})
		}
	}
	return out, nil
}

// targets is the union of every source's current targets, sorted by address, one per address.
func (d *discovery) targets() []target {
	byAddr := map[string]target{}
	add := func(t target) {
		if prev, ok := byAddr[t.addr]; ok && prev.labels.Len() >= t.labels.Len() {
			return
		}
		byAddr[t.addr] = t
	}
	for _, spec := range d.specs {
		if spec.kind == endpointStatic {
			add(target{addr: net.JoinHostPort(spec.host, spec.port)})
			continue
		}
		for _, t := range d.dnsLast[spec.raw] {
			add(t)
		}
	}
	for _, path := range d.files {
		for _, t := range d.fileLast[path] {
			add(t)
		}
	}
	out := make([]target, 0, len(byAddr))
	for _, t := range byAddr {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].addr < out[j].addr })
	return out
}
