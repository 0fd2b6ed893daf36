package policies

import (
	"math"
	"math/bits"
	"slices"
	"strconv"
	"sync"
	"time"
)

// latBuckets is the size of a latency histogram: four buckets per power
// of two of nanoseconds.
const latBuckets = 64 * 4

type latHist [latBuckets]int64

func latBucket(d time.Duration) int {
	ns := uint64(max(d, 0))
	b := bits.Len64(ns)
	if b < 3 {
		return b * 4
	}
	return b*4 + int((ns>>(b-3))&3)
}

// latValue is the middle of bucket i in nanoseconds.
func latValue(i int) float64 {
	b, sub := i/4, i%4
	if b < 3 {
		return float64(b)
	}
	lo := float64(uint64(4|sub) << (b - 3))
	hi := float64(uint64(4|sub+1) << (b - 3))
	return (lo + hi) / 2
}

func (h *latHist) add(o *latHist) {
	for i := range h {
		h[i] += o[i]
	}
}

// quantileMS is the q-quantile in milliseconds (0 when empty).
func (h *latHist) quantileMS(q float64) float64 {
	var total int64
	for _, n := range h {
		total += n
	}
	if total == 0 {
		return 0
	}
	want := int64(math.Ceil(q * float64(total)))
	var seen int64
	for i, n := range h {
		seen += n
		if seen >= want {
			return math.Round(latValue(i)/1e3) / 1e3
		}
	}
	return 0
}

// sparse is the histogram as bucket → count, for heartbeats.
func (h *latHist) sparse() map[string]int64 {
	m := map[string]int64{}
	for i, n := range h {
		if n > 0 {
			m[strconv.Itoa(i)] = n
		}
	}
	return m
}

func histFrom(m map[string]int64) latHist {
	var h latHist
	for k, n := range m {
		if i, err := strconv.Atoi(k); err == nil && i >= 0 && i < latBuckets {
			h[i] += n
		}
	}
	return h
}

// RuleEffect counts the requests one rule decided ("" : the default
// action).
type RuleEffect struct {
	Rule     string `json:"rule"`
	Requests int64  `json:"requests"`
	Blocked  int64  `json:"blocked"`
	Warned   int64  `json:"warned"`
}

// VersionEffect is what one edge saw one policy version decide, since it
// started serving it: the raw counts edges send in their heartbeats.
type VersionEffect struct {
	Version  int64            `json:"version"`
	Requests int64            `json:"requests"`
	Blocked  int64            `json:"blocked"`
	Warned   int64            `json:"warned"`
	Errors   int64            `json:"errors"`
	Latency  map[string]int64 `json:"latency_hist,omitempty"`
	Rules    []RuleEffect     `json:"rules,omitempty"`
}

// EffectSummary is the observed effect of one side of a stage.
type EffectSummary struct {
	Requests     int64        `json:"requests"`
	Blocked      int64        `json:"blocked"`
	Warned       int64        `json:"warned"`
	Errors       int64        `json:"errors"`
	BlockRate    float64      `json:"block_rate"`
	WarnRate     float64      `json:"warn_rate"`
	ErrorRate    float64      `json:"error_rate"`
	LatencyP50MS float64      `json:"latency_p50_ms"`
	LatencyP99MS float64      `json:"latency_p99_ms"`
	Rules        []RuleEffect `json:"rules"`
}

// ObservedEffect sets the staged version's traffic beside the live
// version's, summed over every edge that reported in its heartbeat.
type ObservedEffect struct {
	StagedVersion int64         `json:"staged_version"`
	LiveVersion   int64         `json:"live_version"`
	Since         time.Time     `json:"since"`
	Edges         []string      `json:"edges"`
	Staged        EffectSummary `json:"staged"`
	Rest          EffectSummary `json:"rest"`
}

type versionStats struct {
	requests, blocked, warned, errors int64
	lat                               latHist
	rules                             map[string]*RuleEffect
	used                              time.Time
}

// observer counts decisions per policy version (for the observed effect
// of a stage) and over the last minute (requests per second and added
// latency of the edge heartbeat).
type observer struct {
	mu        sync.Mutex
	byVersion map[int64]*versionStats
	win       [windowBuckets]winBucket
}

const (
	windowBuckets = 7 // 6 full 10 s buckets plus the current one
	windowBucket  = 10 * time.Second
	maxVersions   = 16
	maxRules      = 512 // per version; further rules are counted under "(other)"
)

type winBucket struct {
	slot     int64 // unix time / windowBucket
	requests int64
	lat      latHist
}

func newObserver() *observer { return &observer{byVersion: map[int64]*versionStats{}} }

// record counts one answered request.
func (o *observer) record(ev *AccessEvent, now time.Time) {
	isErr := ev.Status >= 500
	if ev.Protocol == ProtoDNS || ev.Proto == "dns" {
		isErr = ev.Status == 2 // SERVFAIL
	}
	lb := latBucket(ev.Latency)
	slot := now.UnixNano() / int64(windowBucket)
	o.mu.Lock()
	defer o.mu.Unlock()
	vs := o.byVersion[ev.PolicyVersion]
	if vs == nil {
		if len(o.byVersion) >= maxVersions {
			o.evict()
		}
		vs = &versionStats{rules: map[string]*RuleEffect{}}
		o.byVersion[ev.PolicyVersion] = vs
	}
	vs.used = now
	vs.requests++
	vs.lat[lb]++
	rule := ev.RuleID
	re := vs.rules[rule]
	if re == nil {
		if len(vs.rules) >= maxRules {
			rule = "(other)"
			re = vs.rules[rule]
		}
		if re == nil {
			re = &RuleEffect{Rule: rule}
			vs.rules[rule] = re
		}
	}
	re.Requests++
	switch ev.Action {
	case "block":
		vs.blocked++
		re.Blocked++
	case "warn":
		vs.warned++
		re.Warned++
	}
	if isErr {
		vs.errors++
	}
	b := &o.win[slot%windowBuckets]
	if b.slot != slot {
		*b = winBucket{slot: slot}
	}
	b.requests++
	b.lat[lb]++
}

// evict drops the least recently used version.
func (o *observer) evict() {
	var old int64
	var t time.Time
	first := true
	for v, vs := range o.byVersion {
		if first || vs.used.Before(t) {
			old, t, first = v, vs.used, false
		}
	}
	delete(o.byVersion, old)
}

// reset forgets what version v decided (a new stage reuses the number).
func (o *observer) reset(v int64) {
	o.mu.Lock()
	delete(o.byVersion, v)
	o.mu.Unlock()
}

// effects returns the counts of the given versions.
func (o *observer) effects(versions ...int64) []VersionEffect {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []VersionEffect
	for _, v := range versions {
		vs := o.byVersion[v]
		if vs == nil || slices.ContainsFunc(out, func(e VersionEffect) bool { return e.Version == v }) {
			continue
		}
		e := VersionEffect{Version: v, Requests: vs.requests, Blocked: vs.blocked, Warned: vs.warned, Errors: vs.errors, Latency: vs.lat.sparse()}
		for _, r := range vs.rules {
			e.Rules = append(e.Rules, *r)
		}
		slices.SortFunc(e.Rules, func(a, b RuleEffect) int { return cmpRule(a, b) })
		out = append(out, e)
	}
	return out
}

func cmpRule(a, b RuleEffect) int {
	if a.Requests != b.Requests {
		if a.Requests > b.Requests {
			return -1
		}
		return 1
	}
	if a.Rule < b.Rule {
		return -1
	}
	if a.Rule > b.Rule {
		return 1
	}
	return 0
}

// minute returns requests per second and the added latency p50/p99 over
// the last minute (the last six full buckets and the current one).
func (o *observer) minute(now time.Time) (rps, p50, p99 float64) {
	slot := now.UnixNano() / int64(windowBucket)
	var h latHist
	var n int64
	o.mu.Lock()
	for i := range o.win {
		b := &o.win[i]
		if b.slot > slot-windowBuckets && b.slot <= slot {
			n += b.requests
			h.add(&b.lat)
		}
	}
	o.mu.Unlock()
	// the span covered: six full buckets plus the elapsed part of the current one
	span := 6*windowBucket + time.Duration(now.UnixNano()%int64(windowBucket))
	rps = math.Round(float64(n)/span.Seconds()*100) / 100
	return rps, h.quantileMS(0.5), h.quantileMS(0.99)
}

// summarize sums the effects of one version over edges.
func summarize(effects []VersionEffect) EffectSummary {
	var s EffectSummary
	var h latHist
	rules := map[string]*RuleEffect{}
	for _, e := range effects {
		s.Requests += e.Requests
		s.Blocked += e.Blocked
		s.Warned += e.Warned
		s.Errors += e.Errors
		eh := histFrom(e.Latency)
		h.add(&eh)
		for _, r := range e.Rules {
			x := rules[r.Rule]
			if x == nil {
				x = &RuleEffect{Rule: r.Rule}
				rules[r.Rule] = x
			}
			x.Requests += r.Requests
			x.Blocked += r.Blocked
			x.Warned += r.Warned
		}
	}
	if s.Requests > 0 {
		n := float64(s.Requests)
		s.BlockRate = math.Round(float64(s.Blocked)/n*1e4) / 1e4
		s.WarnRate = math.Round(float64(s.Warned)/n*1e4) / 1e4
		s.ErrorRate = math.Round(float64(s.Errors)/n*1e4) / 1e4
	}
	s.LatencyP50MS, s.LatencyP99MS = h.quantileMS(0.5), h.quantileMS(0.99)
	s.Rules = []RuleEffect{}
	for _, r := range rules {
		s.Rules = append(s.Rules, *r)
	}
	slices.SortFunc(s.Rules, cmpRule)
	return s
}
