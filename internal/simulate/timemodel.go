package simulate

import (
	"math"
	"sync"
	"sync/atomic"
)

// The time model. Every counter is the integral, from the simulator's origin, of a rate
//
//	rate(s) = (alpha + beta * d(s)) * w'(s)
//
// where d is the region's diurnal shape 1 + a*cos(2*pi*(s - peak)/day), alpha and beta come
// from the controls in force at s (piecewise constant: a control applies from the moment it is
// set), and w is a per-series time warp, w(s) = s + J(s), with J interpolating hashed jitter
// between 15 s ticks. Because |J'| < 1, w is strictly increasing: the warp adds noise to the
// rate without ever making it negative, and the integral has a closed form, so a counter's
// value at any time costs O(number of control changes) and does not depend on which times were
// asked for before. Backfill and live samples therefore agree, and counters stay monotonic
// across control changes.

const (
	day = 24 * 60 * 60.0
	// noiseTick is the spacing, in seconds, of the hashed jitter points.
	noiseTick = 15.0
	// warpAmplitude bounds |J|; the slope of J is at most 2*warpAmplitude/noiseTick = 0.4, so
	// the instantaneous rate stays within 60%..140% of its smooth value.
	warpAmplitude = 0.2 * noiseTick
)

// Controls are the live knobs of one region.
type Controls struct {
	// ErrorRatio is the share of requests answered with a 5xx code.
	ErrorRatio float64 `json:"error_ratio"`
	// CapacityFactor scales the allocatable resources of every node (0.5 = half the capacity).
	CapacityFactor float64 `json:"capacity_factor"`
	// TrafficFactor scales the request rate and the request-driven part of CPU usage.
	TrafficFactor float64 `json:"traffic_factor"`
	// LagSeconds is the typical replication lag reported for the region's databases.
	LagSeconds float64 `json:"lag_seconds"`
}

// segment is a span of time, from start (seconds since the origin) to the next segment's
// start, during which one set of controls is in force.
type segment struct {
	start float64
	c     Controls
}

// timeline is the control history of one region. Writers copy on write so readers can hold a
// snapshot without locks.
type timeline struct {
	mu   sync.Mutex // serialises writers
	segs atomic.Pointer[[]segment]
}

func newTimeline(c Controls) *timeline {
	tl := &timeline{}
	tl.segs.Store(&[]segment{{start: 0, c: c}})
	return tl
}

func (tl *timeline) snapshot() []segment { return *tl.segs.Load() }

// update applies fn to the controls in force at x and makes the result the controls from x on.
// A time before the latest change (a clock that went backwards) is treated as that change's time.
func (tl *timeline) update(x float64, fn func(*Controls)) Controls {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	old := tl.snapshot()
	last := old[len(old)-1]
	c := last.c
	fn(&c)
	segs := make([]segment, len(old), len(old)+1)
	copy(segs, old)
	if x <= last.start {
		segs[len(segs)-1].c = c
	} else {
		segs = append(segs, segment{start: x, c: c})
	}
	tl.segs.Store(&segs)
	return c
}

// controlsAt returns the controls in force at x.
func controlsAt(segs []segment, x float64) Controls {
	for i := len(segs) - 1; i > 0; i-- {
		if segs[i].start <= x {
			return segs[i].c
		}
	}
	return segs[0].c
}

// diurnal is a region's daily traffic shape d(y) = 1 + amp*cos(2*pi*(y + phase)/day), with y in
// seconds since the origin and phase chosen so that d peaks at the profile's peak hour.
type diurnal struct {
	amp   float64
	phase float64
}

func newDiurnal(originUnix int64, peakHourUTC, amp float64) diurnal {
	return diurnal{amp: amp, phase: math.Mod(float64(originUnix%int64(day))-peakHourUTC*3600+day, day)}
}

func (d diurnal) angle(y float64) float64 {
	return 2 * math.Pi * math.Mod(y+d.phase, day) / day
}

// integral returns a primitive of d at y.
func (d diurnal) integral(y float64) float64 {
	return y + d.amp*day/(2*math.Pi)*math.Sin(d.angle(y))
}

// warp returns w(x) = x + J(x) for the series identified by key.
func warp(key uint64, x float64) float64 {
	k := math.Floor(x / noiseTick)
	f := x/noiseTick - k
	j0 := jitter(key, int64(k))
	j1 := jitter(key, int64(k)+1)
	return x + j0 + (j1-j0)*f
}

func jitter(key uint64, k int64) float64 {
	return (2*unit(mix(key, uint64(k))) - 1) * warpAmplitude
}

// rateFunc gives a series' rate coefficients under a set of controls: rate = alpha + beta*d.
type rateFunc func(c Controls) (alpha, beta float64)

// counterAt returns the integral of the series' rate from the origin to x.
func counterAt(segs []segment, d diurnal, key uint64, x float64, rate rateFunc) float64 {
	var total float64
	for i, s := range segs {
		if x <= s.start {
			break
		}
		end := x
		if i+1 < len(segs) && segs[i+1].start < x {
			end = segs[i+1].start
		}
		alpha, beta := rate(s.c)
		wa, wb := warp(key, s.start), warp(key, end)
		total += alpha*(wb-wa) + beta*(d.integral(wb)-d.integral(wa))
	}
	return total
}

// mix hashes its inputs (splitmix64 finaliser over a running state).
func mix(vals ...uint64) uint64 {
	h := uint64(0x9e3779b97f4a7c15)
	for _, v := range vals {
		h ^= v + 0x9e3779b97f4a7c15 + (h << 6) + (h >> 2)
		h ^= h >> 30
		h *= 0xbf58476d1ce4e5b9
		h ^= h >> 27
		h *= 0x94d049bb133111eb
		h ^= h >> 31
	}
	return h
}

// hashString maps a string to a uint64 (FNV-1a) for use with mix.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }
