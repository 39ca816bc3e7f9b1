package rpc

import (
	"context"
	"time"

	"github.com/dfs-store/dfs/api"
)

// ProbeTimeout bounds the call that tells whether a coordinator is alive.
const ProbeTimeout = 2 * time.Second

// ProbeCoordinator asks the coordinator at addr for its own view (a local
// Status call) and returns it as a row of the control plane's status:
// alive, and whether it leads, or the error that says why it is not alive.
func ProbeCoordinator(ctx context.Context, cc api.CoordinatorClient, addr string) *api.CoordinatorStatus {
	cs := &api.CoordinatorStatus{Addr: addr}
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	r, err := cc.Status(ctx, &api.StatusRequest{Local: true})
	if err != nil {
		cs.Error = FromStatus(err).Error()
		return cs
	}
	cs.Alive = true
	if len(r.Coordinators) == 1 {
		cs.Leader, cs.Term = r.Coordinators[0].Leader, r.Coordinators[0].Term
	}
	return cs
}
