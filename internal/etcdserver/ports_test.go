package etcdserver

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// A member whose remembered port another program took says so, naming the
// file that keeps the port, instead of etcd's bind error on a port the user
// never chose.
func TestRememberedPortInUseIsNamed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	free, err := freeURL("http://")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(urls{Client: "http://" + ln.Addr().String(), Peer: free})
	if err := os.WriteFile(filepath.Join(dir, "urls.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Start(context.Background(), Config{Dir: dir, DefragCheck: -1})
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "port "+port+" is in use") || !strings.Contains(err.Error(), filepath.Join(dir, "urls.json")) {
		t.Fatalf("start on a remembered port in use: %v, want the port and urls.json named", err)
	}
}

// etcd's own log lines come out through slog, as every other line does.
func TestEtcdLogsThroughSlog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	z := zap.New(newSlogCore(log.With("role", "etcd"), zap.NewAtomicLevelAt(zapcore.ErrorLevel)))
	z.Info("not shown")
	z.Error("failed to serve", zap.String("address", "127.0.0.1:1"), zap.Error(os.ErrClosed))
	got := buf.String()
	if strings.Contains(got, "not shown") {
		t.Errorf("a line below the level came out: %s", got)
	}
	for _, want := range []string{"level=ERROR", `msg="failed to serve"`, "role=etcd", "address=127.0.0.1:1", "error="} {
		if !strings.Contains(got, want) {
			t.Errorf("slog line %q lacks %s", got, want)
		}
	}
}
