package proxy

import (
	"context"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/policies"
)

// EventSink receives one access event per request or tunnel, after it was
// answered. Record must not block (the reports pipeline queues and spills)
// and must not keep the event after returning unless it copies it: the
// proxy does not touch the event again.
type EventSink interface {
	Record(ev *policies.AccessEvent)
}

// EventSinkFunc adapts a function to EventSink.
type EventSinkFunc func(ev *policies.AccessEvent)

// Record calls f(ev).
func (f EventSinkFunc) Record(ev *policies.AccessEvent) { f(ev) }

// exchange is the proxy's state for one request or tunnel: identity,
// decision, timings and byte counts, turned into an AccessEvent at the end.
type exchange struct {
	id        string
	start     time.Time
	clientIP  netip.Addr
	principal *policies.Principal
	method    string
	proto     policies.Protocol
	host      string
	path      string
	url       string

	decided  bool
	decision policies.Decision
	verdict  categorizer.Verdict
	// refusal replaces the decision reason when the proxy refused the
	// request itself ("auth", "auth_rate", "destination", "port", "loop",
	// "bad_request"), "resolve" when the name did not resolve, or "page"
	// for the proxy's own forms.
	refusal string

	status   int
	up, down atomic.Int64
	// forwardAt is when the request left for the origin; Cordon's added
	// latency is forwardAt-start.
	forwardAt time.Time
	upstream  time.Duration

	// client controls the client connection of a plain HTTP request (nil
	// inside decrypted tunnels).
	client *http.ResponseController
	// uploadStalled: reading the request body timed out (IdleTimeout).
	uploadStalled atomic.Bool
	// hijackBuf holds bytes the HTTP server read past the CONNECT head.
	hijackBuf []byte
	// mitm: the tunnel is decrypted; its inner requests report themselves.
	mitm bool
	// local: the proxy answered itself (page or form), nothing went
	// upstream.
	local bool
	// warnPassed: the decision was warn and the request went through
	// (acknowledged, or connect_warn allow); the event says "allow".
	warnPassed bool
	// inTunnel: this request came through a decrypted tunnel.
	inTunnel bool
	finished atomic.Bool
}

// eventPool recycles the events handed to EventSink.Record, which must
// not keep them.
var eventPool = sync.Pool{New: func() any { return new(policies.AccessEvent) }}

type exchangeKey struct{}

func withExchange(ctx context.Context, ex *exchange) context.Context {
	return context.WithValue(ctx, exchangeKey{}, ex)
}

func exchangeFrom(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

// child starts the exchange of one request inside a decrypted tunnel.
func (ex *exchange) child(id string) *exchange {
	return &exchange{
		id:        id,
		start:     time.Now(),
		clientIP:  ex.clientIP,
		principal: ex.principal,
		proto:     policies.ProtoHTTPS,
		inTunnel:  true,
	}
}

// userKey identifies whose "continue" a warn acknowledgement is: the user
// when known, otherwise the client address.
func (ex *exchange) userKey() string {
	if ex.principal != nil && ex.principal.User != "" {
		return "u:" + ex.principal.User
	}
	return "ip:" + ex.clientIP.String()
}

// finish emits the access event and metrics once.
func (s *Server) finish(ex *exchange) {
	if !ex.finished.CompareAndSwap(false, true) {
		return
	}
	now := time.Now()
	ev := eventPool.Get().(*policies.AccessEvent)
	defer func() {
		*ev = policies.AccessEvent{}
		eventPool.Put(ev)
	}()
	*ev = policies.AccessEvent{
		Time:     ex.start,
		ID:       ex.id,
		Protocol: ex.proto,
		Proto:    ex.proto.String(),
		ClientIP: ex.clientIP,
		Method:   ex.method,
		Host:     ex.host,
		Path:     ex.path,
		Status:   ex.status,
	}
	if p := ex.principal; p != nil {
		ev.User, ev.Groups, ev.Location = p.User, p.Groups, p.Location
	}
	ev.BytesUp, ev.BytesDown = ex.up.Load(), ex.down.Load()
	if ex.forwardAt.IsZero() {
		ev.Latency = now.Sub(ex.start)
	} else {
		ev.Latency = ex.forwardAt.Sub(ex.start)
	}
	ev.Upstream = ex.upstream
	category := "none"
	if ex.decided {
		d := ex.decision
		ev.Action = d.Action.String()
		if ex.warnPassed {
			ev.Action = policies.ActionAllow.String()
		}
		ev.RuleAction = d.RuleAction.String()
		ev.Monitor = d.Monitor
		ev.RuleID = d.RuleID
		ev.PolicyVersion = d.Version
		ev.Reason = d.Reason.String()
		ev.Categories, ev.Threats = s.engine.Names(ex.verdict)
		ev.Country = ex.verdict.Country.String()
		if len(ev.Categories) > 0 {
			category = ev.Categories[0]
		}
	} else if ex.refusal == "page" {
		// The proxy's own forms (continue, review): nothing was decided.
		ev.Action = policies.ActionAllow.String()
	} else {
		ev.Action = policies.ActionBlock.String()
		ev.RuleAction = ev.Action
	}
	switch ex.refusal {
	case "":
	case "page", "resolve":
		// Forms answered by the proxy, and names that did not resolve,
		// keep the decision's action.
		ev.Reason = ex.refusal
	default:
		// The proxy itself refused (auth, destination, port, loop, bad
		// request) whatever the policy said.
		ev.Reason = ex.refusal
		ev.Action = policies.ActionBlock.String()
	}
	s.m.requests.WithLabelValues(ev.Proto, ev.Action, category).Inc()
	s.m.bytesUp.Add(float64(ev.BytesUp))
	s.m.bytesDown.Add(float64(ev.BytesDown))
	if s.events != nil {
		s.events.Record(ev)
	}
}
