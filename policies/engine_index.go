package policies

import (
	"fmt"

	"github.com/cordon-gw/cordon/categorizer"
)

// SetIndex recompiles the current policy against ix's category and threat
// IDs and swaps both in at once, so no request sees a policy compiled for
// another index.
func (e *Engine) SetIndex(ix *categorizer.Index) error {
	if ix == nil {
		return fmt.Errorf("policies: set index: %w: nil index", ErrBadRequest)
	}
	e.setIndex(ix)
	return nil
}

// Index returns the categorizer index being served, nil before SetIndex.
func (e *Engine) Index() *categorizer.Index {
	ix, _ := e.state.Load().ix.(*categorizer.Index)
	return ix
}

var _ lookupIndex = (*categorizer.Index)(nil)
var _ CategoryTable = (*categorizer.Index)(nil)

// SetGeo sets the GeoIP database used for destination countries; nil
// turns country lookups off. The caller keeps ownership (and closes the
// old database after the swap).
func (e *Engine) SetGeo(g *categorizer.Geo) {
	if g == nil {
		e.setGeo(nil)
		return
	}
	e.setGeo(g)
}

var _ countryDB = (*categorizer.Geo)(nil)

var _ newlySeenChecker = (*categorizer.NewlySeen)(nil)
