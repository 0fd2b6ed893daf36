package policies

import "github.com/cordon-gw/cordon/categorizer"

// SetNewlySeen gives the engine the newly-seen-domain tracker: a host whose
// registrable domain it reports as new gets the newly_seen category. Nil
// turns the category off.
func (e *Engine) SetNewlySeen(n *categorizer.NewlySeen) {
	if n == nil {
		e.setNewlySeen(nil)
		return
	}
	e.setNewlySeen(n)
}
