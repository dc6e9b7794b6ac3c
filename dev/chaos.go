package dev

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meridian-obs/meridian/ingest"
	"github.com/meridian-obs/meridian/internal/faultproxy"
	"github.com/meridian-obs/meridian/internal/simulate"
)

// Kinds of fault, as named by the chaos flags and the chaos HTTP endpoints.
const (
	FaultDown     = "down"
	FaultUp       = "up"
	FaultLatency  = "latency"
	FaultErrors   = "errors"
	FaultCapacity = "capacity"
)

// errBadValue marks a fault whose value is invalid (an HTTP 400).
var errBadValue = errors.New("bad value")

// ErrUnknownRegion is returned for a region the environment does not run.
var ErrUnknownRegion = simulate.ErrUnknownRegion

// Fault is one chaos action on one region: Kind is one of FaultDown, FaultUp, FaultLatency,
// FaultErrors, FaultCapacity; Value is its argument as given by a user (a duration for latency,
// a ratio for errors, a factor for capacity, nothing for down and up).
type Fault struct {
	Kind   string
	Region string
	Value  string
}

func (f Fault) String() string {
	if f.Value == "" {
		return f.Kind + " " + f.Region
	}
	return f.Kind + " " + f.Region + "=" + f.Value
}

// ParseFaults turns the values of one chaos flag into faults of the given kind: REGION for
// FaultDown and FaultUp, REGION=VALUE for the others (e.g. --latency eu-west-1=3s). Values are
// checked here; regions when the faults are applied.
func ParseFaults(kind string, specs []string) ([]Fault, error) {
	switch kind {
	case FaultDown, FaultUp, FaultLatency, FaultErrors, FaultCapacity:
	default:
		return nil, fmt.Errorf("unknown fault %q (one of down, up, latency, errors, capacity)", kind)
	}
	var out []Fault
	for _, spec := range specs {
		f := Fault{Kind: kind, Region: spec}
		if kind != FaultDown && kind != FaultUp {
			region, value, ok := strings.Cut(spec, "=")
			if !ok || region == "" || value == "" {
				return nil, fmt.Errorf("--%s %q: want REGION=VALUE", kind, spec)
			}
			f.Region, f.Value = region, value
		}
		if _, err := parseFaultValue(f); err != nil {
			return nil, fmt.Errorf("--%s %q: %w", kind, spec, err)
		}
		out = append(out, f)
	}
	return out, nil
}

// parseFaultValue checks a fault's value and returns it as a number (seconds for latency).
func parseFaultValue(f Fault) (float64, error) {
	switch f.Kind {
	case FaultDown, FaultUp:
		return 0, nil
	case FaultLatency:
		d, err := time.ParseDuration(f.Value)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("%w: delay %q must be a duration >= 0, e.g. 3s or 250ms", errBadValue, f.Value)
		}
		return d.Seconds(), nil
	case FaultErrors:
		v, err := strconv.ParseFloat(f.Value, 64)
		if err != nil || math.IsNaN(v) || v < 0 || v > 1 {
			return 0, fmt.Errorf("%w: error ratio %q must be a number in [0, 1]", errBadValue, f.Value)
		}
		return v, nil
	case FaultCapacity:
		v, err := strconv.ParseFloat(f.Value, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return 0, fmt.Errorf("%w: capacity factor %q must be a finite number >= 0", errBadValue, f.Value)
		}
		return v, nil
	}
	return 0, fmt.Errorf("unknown fault %q (one of down, up, latency, errors, capacity)", f.Kind)
}

// RegionState is what the chaos controls have done to one region.
type RegionState struct {
	Region string `json:"region"`
	// Down: the querier cannot reach the region's store.
	Down bool `json:"down"`
	// Latency added between the querier and the region's store, e.g. "3s"; "0s" for none.
	Latency string `json:"latency"`
	// The simulator's controls in force in the region.
	simulate.Controls
	// StoreAPI is the address the querier reads the region from (the fault proxy); RemoteWrite
	// the region's remote-write URL.
	StoreAPI    string `json:"store_api"`
	RemoteWrite string `json:"remote_write_url"`
}

// chaos applies faults to the regions: outages and latency on the fault proxy between the
// querier and a region's store, errors and capacity on the simulator.
type chaos struct {
	logger  *slog.Logger
	sim     *simulate.Simulator
	regions []*region

	mu sync.Mutex // serialises changes, so that a state read after a change shows it whole
}

func (c *chaos) region(name string) (*region, error) {
	for _, r := range c.regions {
		if r.name == name {
			return r, nil
		}
	}
	return nil, fmt.Errorf("region %q: %w", name, ErrUnknownRegion)
}

// apply applies one fault and returns the region's state after it.
func (c *chaos) apply(f Fault) (RegionState, error) {
	r, err := c.region(f.Region)
	if err != nil {
		return RegionState{}, err
	}
	v, err := parseFaultValue(f)
	if err != nil {
		return RegionState{}, fmt.Errorf("region %q: %w", f.Region, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch f.Kind {
	case FaultDown:
		r.proxy.SetDown(true)
	case FaultUp:
		r.proxy.SetDown(false)
	case FaultLatency:
		r.proxy.SetDelay(time.Duration(v * float64(time.Second)))
	case FaultErrors:
		err = c.sim.SetErrorRatio(r.name, v)
	case FaultCapacity:
		err = c.sim.SetCapacityFactor(r.name, v)
	}
	if err != nil {
		return RegionState{}, fmt.Errorf("%w: %w", errBadValue, err)
	}
	c.logger.Info("chaos", "fault", f.Kind, "region", r.name, "value", f.Value)
	return c.stateOf(r), nil
}

// state lists every region's state in the simulator's order.
func (c *chaos) state() []RegionState {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]RegionState, 0, len(c.regions))
	for _, r := range c.regions {
		out = append(out, c.stateOf(r))
	}
	return out
}

func (c *chaos) stateOf(r *region) RegionState {
	controls, _ := c.sim.Controls(r.name)
	return RegionState{
		Region:      r.name,
		Down:        r.proxy.Down(),
		Latency:     r.proxy.Delay().String(),
		Controls:    controls,
		StoreAPI:    r.proxy.Addr(),
		RemoteWrite: r.remoteWriteURL(),
	}
}

// region is one simulated region: its ingest node and the fault proxy in front of its StoreAPI.
type region struct {
	name  string
	node  *ingest.Node
	proxy *faultproxy.Proxy
}

func (r *region) remoteWriteURL() string { return "http://" + r.node.HTTPAddr() + "/api/v1/write" }
