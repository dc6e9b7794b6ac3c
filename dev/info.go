package dev

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/meridian-obs/meridian/query"
	"github.com/meridian-obs/meridian/slo"
)

// Info is where the environment answers.
type Info struct {
	// QueryURL is the querier's base URL: Prometheus HTTP API, SLOs, readiness, chaos.
	QueryURL string
	// ConfigFile is the SLO and readiness configuration in use.
	ConfigFile string
	// DataDir holds the regions' TSDBs.
	DataDir string
	// TemporaryDataDir is true when DataDir is removed on exit.
	TemporaryDataDir bool
	// RuleDir holds the rule files generated from the configuration, evaluated by the ruler.
	RuleDir string
	Regions []RegionInfo
}

// RegionInfo is where one region answers.
type RegionInfo struct {
	Name string
	// RemoteWriteURL accepts remote write 1.0 and 2.0, like the simulator's.
	RemoteWriteURL string
	// StoreAPI is the address the querier reads the region from (through the fault proxy);
	// DirectStoreAPI the ingest node's own.
	StoreAPI       string
	DirectStoreAPI string
}

// Info returns the environment's addresses; they are bound from New on.
func (e *Env) Info() Info {
	info := Info{
		QueryURL:         "http://" + dialable(e.querier.HTTPAddr()),
		ConfigFile:       e.configPath,
		DataDir:          e.cfg.DataDir,
		TemporaryDataDir: e.tempDir,
		RuleDir:          e.ruleDir,
	}
	for _, r := range e.regions {
		info.Regions = append(info.Regions, RegionInfo{
			Name:           r.name,
			RemoteWriteURL: r.remoteWriteURL(),
			StoreAPI:       r.proxy.Addr(),
			DirectStoreAPI: r.node.GRPCAddr(),
		})
	}
	return info
}

// dialable turns a listen address on every interface into one a local client can dial.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort("localhost", port)
	}
	return addr
}

// WriteBanner prints the environment's URLs and three commands to try, written for the binary
// invoked as binary.
func WriteBanner(w io.Writer, info Info, binary string) error {
	q := info.QueryURL
	var b strings.Builder
	fmt.Fprintf(&b, "\nMeridian dev is ready: %d simulated regions behind one global PromQL endpoint.\n\n", len(info.Regions))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  Querier (Prometheus API; a Grafana Prometheus data source)\t%s\n", q)
	fmt.Fprintf(tw, "  SLOs\t%s%s\n", q, slo.SLOAPIPath)
	fmt.Fprintf(tw, "  Failover readiness\t%s%s\n", q, slo.ReadinessAPIPath)
	fmt.Fprintf(tw, "  Readiness health check per region\t%s%s<region>\n", q, slo.ReadinessHealthPath)
	fmt.Fprintf(tw, "  Rules and alerts (global ruler)\t%s/api/v1/rules, %s/api/v1/alerts\n", q, q)
	fmt.Fprintf(tw, "  Chaos controls\t%s%s\n", q, ChaosPath)
	fmt.Fprintf(tw, "  Configuration\t%s\n", info.ConfigFile)
	if info.RuleDir != "" {
		fmt.Fprintf(tw, "  Rule files (generated from it)\t%s\n", info.RuleDir)
	}
	dir := info.DataDir
	if info.TemporaryDataDir {
		dir += " (removed on exit)"
	}
	fmt.Fprintf(tw, "  Data\t%s\n", dir)
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  region\tremote write\tStoreAPI (as the querier sees it)\tStoreAPI (direct)\n")
	for _, r := range info.Regions {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.Name, r.RemoteWriteURL, r.StoreAPI, r.DirectStoreAPI)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fail := "eu-west-1"
	if len(info.Regions) > 0 {
		fail = info.Regions[0].Name
	}
	cfg := shellQuote(info.ConfigFile)
	fmt.Fprintf(&b, "\nTry:\n")
	fmt.Fprintf(&b, "  curl -s %s --data-urlencode %s\n", shellQuote(q+"/api/v1/query"), shellQuote("query=sum by (region) (rate(http_requests_total[5m]))"))
	fmt.Fprintf(&b, "  %s slo status --config %s --query.url %s\n", binary, cfg, q)
	fmt.Fprintf(&b, "  %s readiness --config %s --query.url %s --fail %s\n", binary, cfg, q, fail)
	fmt.Fprintf(&b, "and break things: curl -s -X POST %s%s/%s/down (then /up, /latency?delay=3s, /errors?ratio=0.2, /capacity?factor=0.5)\n\n",
		q, ChaosPath, url.PathEscape(fail))
	_, err := io.WriteString(w, b.String())
	return err
}

// shellQuote quotes s for a POSIX shell when it holds anything but plain path characters.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-:") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// storeHealth adapts the querier's store set to readiness's reachability input. Regions come
// from the store set, which knows them from the stores file even for a region that has been
// down since the start.
type storeHealth struct{ set *query.StoreSet }

func (e *Env) storeHealth() storeHealth { return storeHealth{set: e.querier.StoreSet()} }

// Stores implements slo.StoreHealthSource.
func (h storeHealth) Stores() []slo.StoreHealth {
	var out []slo.StoreHealth
	for _, st := range h.set.Stores() {
		out = append(out, slo.StoreHealth{Region: st.Region, Address: st.Address, Healthy: st.Healthy})
	}
	return out
}
