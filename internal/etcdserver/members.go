package etcdserver

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dfs-store/dfs/internal/pki"
)

// Membership changes, for replacing a lost etcd member (and so a lost
// coordinator host) without a separate etcd install: remove the dead
// member, add its replacement, then start the replacement with
// ClusterState "existing" and the InitialCluster AddMember returns.

// Dial connects to an etcd cluster, quietly, over TLS with node's
// certificate if node is not nil.
func Dial(endpoints []string, node *pki.Node) (*clientv3.Client, error) {
	cli, err := clientv3.New(ClientConfig(endpoints, node))
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	return cli, nil
}

// Member is one etcd member.
type Member struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peer_urls"`
	ClientURLs []string `json:"client_urls"`
	Started    bool     `json:"started"`
}

// Members lists the cluster's members.
func Members(ctx context.Context, cli *clientv3.Client) ([]Member, error) {
	resp, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd member list: %w", err)
	}
	var out []Member
	for _, m := range resp.Members {
		out = append(out, Member{ID: strconv.FormatUint(m.ID, 16), Name: m.Name, PeerURLs: m.PeerURLs,
			ClientURLs: m.ClientURLs, Started: len(m.ClientURLs) > 0})
	}
	return out, nil
}

// AddMember adds a member that will listen on peerURL, and returns the
// InitialCluster value it must be started with (its own name=peerURL with
// every other member's).
func AddMember(ctx context.Context, cli *clientv3.Client, name, peerURL string) (string, error) {
	if name == "" || peerURL == "" {
		return "", fmt.Errorf("etcd member add: a name and a peer URL are needed")
	}
	var resp *clientv3.MemberAddResponse
	for {
		var err error
		resp, err = cli.MemberAdd(ctx, []string{peerURL})
		if err == nil {
			break
		}
		// etcd refuses a new member until its leader has been in touch with
		// a quorum for a few seconds (after a member's loss, a leader
		// change): wait that out.
		if !strings.Contains(err.Error(), "unhealthy cluster") || ctx.Err() != nil {
			return "", fmt.Errorf("etcd member add %s %s: %w", name, peerURL, err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("etcd member add %s %s: %w", name, peerURL, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	var parts []string
	for _, m := range resp.Members {
		n := m.Name
		if m.ID == resp.Member.ID {
			n = name
		}
		if n == "" {
			continue // another member added but not started yet
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	return strings.Join(parts, ","), nil
}

// RemoveMember removes the member named, or with the hex id, nameOrID.
func RemoveMember(ctx context.Context, cli *clientv3.Client, nameOrID string) error {
	ms, err := Members(ctx, cli)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Name == nameOrID || m.ID == nameOrID {
			id, _ := strconv.ParseUint(m.ID, 16, 64)
			if _, err := cli.MemberRemove(ctx, id); err != nil {
				return fmt.Errorf("etcd member remove %s: %w", nameOrID, err)
			}
			return nil
		}
	}
	return fmt.Errorf("etcd member remove: no member named %q", nameOrID)
}
