package policies

import "net/http"

// Me is the answer of GET /api/v1/me: who the caller is and what its role
// may do. Clients (the admin console) use it to offer only the actions the
// role allows; every call is still checked by the API itself.
type Me struct {
	Name        string   `json:"name"`
	Role        Role     `json:"role"`
	Permissions []string `json:"permissions"`
	// DirectWrites is true when the caller may change the policy at once
	// (PUT /policy, list, directory and location edits) within its
	// permissions; false when the live policy's settings.approvals.enforce
	// sends its changes through change requests.
	DirectWrites bool `json:"direct_writes"`
}

// Permissions lists the permissions role r has, in the order of the
// Permission constants.
func (r Role) Permissions() []string {
	out := []string{}
	for p := PermRead; int(p) < len(permNames); p++ {
		if r.Allows(p) {
			out = append(out, p.String())
		}
	}
	return out
}

func (a *API) me(w http.ResponseWriter, r *http.Request, act Actor) error {
	if err := knownQuery(r); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, Me{Name: act.Name, Role: act.Role, Permissions: act.Role.Permissions(), DirectWrites: a.svc.DirectWrites(act)})
	return nil
}
