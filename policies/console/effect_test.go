package console

import (
	"testing"

	"github.com/cordon-gw/cordon/policies"
)

// TestEffectViewComparesOnlyBothSides: while the rest of the traffic is
// idle, the stage's rates are shown and nothing is compared against the
// empty side; with traffic on both sides the differences appear.
func TestEffectViewComparesOnlyBothSides(t *testing.T) {
	staged := policies.EffectSummary{Requests: 60, Blocked: 30, BlockRate: 0.5, LatencyP50MS: 0.09, LatencyP99MS: 5.77}
	v := newEffectView(&policies.ObservedEffect{Staged: staged})
	for _, r := range v.Rows {
		if r.Delta != "" && r.Delta != "—" {
			t.Errorf("%s: difference %q against a side with no requests", r.Metric, r.Delta)
		}
		if r.Metric != "Requests" && r.Rest != "—" {
			t.Errorf("%s: rest shows %q with no requests", r.Metric, r.Rest)
		}
	}
	if v.Rows[1].Metric != "Block rate" || v.Rows[1].Staged != "50.00%" {
		t.Errorf("staged block rate row = %+v", v.Rows[1])
	}
	rest := policies.EffectSummary{Requests: 100, Blocked: 10, BlockRate: 0.1, LatencyP50MS: 0.08, LatencyP99MS: 2}
	v = newEffectView(&policies.ObservedEffect{Staged: staged, Rest: rest})
	if r := v.Rows[1]; r.Delta != "+40.00 pt" || r.DeltaClass != "delta-up" || r.Rest != "10.00%" {
		t.Errorf("block rate with both sides = %+v, want +40.00 pt worse", r)
	}
}
