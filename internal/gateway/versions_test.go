package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/coordinator"
	"github.com/dfs-store/dfs/internal/gateway"
)

// The REST API's versions: an overwrite and a delete keep what they
// replaced, GET /api/v1/versions lists them, a file's GET with ?version
// reads one, POST ?restore brings one back, DELETE ?version drops one;
// bad version ids are 400.
func TestRESTVersions(t *testing.T) {
	cl, err := cluster.Start(context.Background(), cluster.Config{Dir: t.TempDir(), GRPC: "127.0.0.1:0", Logger: quiet(),
		Coordinator: coordinator.Config{VersionRetention: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	e := gatewayOn(t, cl, "")
	e.do(t, "PUT", "/api/v1/files/v/doc.txt", strings.NewReader("first"))
	e.do(t, "PUT", "/api/v1/files/v/doc.txt", strings.NewReader("second"))
	if a := e.do(t, "DELETE", "/api/v1/files/v/doc.txt", nil); a.code != http.StatusOK {
		t.Fatalf("delete: %d %s", a.code, a.body)
	}
	list := func() []gateway.Version {
		t.Helper()
		a := e.do(t, "GET", "/api/v1/versions/v/doc.txt", nil)
		var out struct{ Versions []gateway.Version }
		if a.code != http.StatusOK || json.Unmarshal(a.body, &out) != nil {
			t.Fatalf("list versions: %d %s", a.code, a.body)
		}
		return out.Versions
	}
	vs := list()
	if len(vs) != 3 || !vs[0].DeleteMarker || vs[0].SHA256 != nil || vs[1].Size != 6 || vs[2].Size != 5 {
		t.Fatalf("versions %+v: want a delete marker, then 'second', then 'first'", vs)
	}
	if a := e.do(t, "GET", "/api/v1/files/v/doc.txt?version="+vs[2].VersionID, nil); a.code != http.StatusOK || string(a.body) != "first" {
		t.Fatalf("get the first version: %d %q", a.code, a.body)
	}
	if a := e.do(t, "GET", "/api/v1/files/v/doc.txt?version=../../x", nil); a.code != http.StatusBadRequest {
		t.Fatalf("get with a malformed version: %d %s", a.code, a.body)
	}
	if a := e.do(t, "GET", "/api/v1/files/v/doc.txt?version="+vs[0].VersionID, nil); a.code != http.StatusBadRequest {
		t.Fatalf("get of a delete marker: %d %s; want 400", a.code, a.body)
	}
	if a := e.do(t, "POST", "/api/v1/versions/v/doc.txt?restore="+vs[2].VersionID, nil); a.code != http.StatusOK {
		t.Fatalf("restore: %d %s", a.code, a.body)
	}
	if a := e.do(t, "GET", "/api/v1/files/v/doc.txt", nil); a.code != http.StatusOK || string(a.body) != "first" {
		t.Fatalf("get after restore: %d %q", a.code, a.body)
	}
	if a := e.do(t, "DELETE", "/api/v1/versions/v/doc.txt?version="+vs[1].VersionID, nil); a.code != http.StatusOK {
		t.Fatalf("drop a version: %d %s", a.code, a.body)
	}
	if a := e.do(t, "DELETE", "/api/v1/versions/v/doc.txt?version="+vs[1].VersionID, nil); a.code != http.StatusNotFound {
		t.Fatalf("drop it again: %d %s; want 404", a.code, a.body)
	}
	if n := len(list()); n != 3 {
		t.Fatalf("%d versions after a restore and a drop, want 3 (current, marker, first)", n)
	}
}
