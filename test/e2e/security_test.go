//go:build linux || darwin

package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dfs server on a fresh directory is secure with no setup: it makes its
// CA and certificates and a client configuration (0600, also in the
// user's ~/.config/dfs/config), a client with nothing but that home
// directory works, and every port speaks only TLS under the server's CA:
// plain text, a client of another CA and, where a certificate is
// required, a client without one are all refused; a datanode with another
// cluster's certificate cannot join.
func TestServerSecureByDefault(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	home, data := filepath.Join(dir, "home"), filepath.Join(dir, "data")
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	// The server's own certificates and configuration, not the suite's.
	env := []string{"HOME=" + home, "DFS_CONFIG", "DFS_CERTS_DIR"}
	p, err := startProcEnv(dir, "server", env, "server", "--data", data, "--grpc", grpcAddr, "--http", httpAddr, "--s3", freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("server: %v", err)
		}
	})
	if err := p.waitReady(); err != nil {
		t.Fatalf("%v\n%s", err, p.logTail(30))
	}

	for path, mode := range map[string]os.FileMode{
		filepath.Join(data, "client.conf"):              0o600,
		filepath.Join(home, ".config", "dfs", "config"): 0o600,
		filepath.Join(data, "certs", "ca.key"):          0o600,
		filepath.Join(data, "certs", "node.key"):        0o600,
		filepath.Join(data, "certs"):                    0o700,
	} {
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v; want %v", path, err, st.Mode().Perm(), mode)
		}
	}

	// The tour, with no flags: the configuration in the home directory.
	local := filepath.Join(dir, "hello.txt")
	os.WriteFile(local, []byte("hello, secure world\n"), 0o644)
	if r := runDFS(t, cmdTimeout, nil, env, "put", local, "tour/hello.txt"); r.code != 0 {
		t.Fatalf("put with the server's configuration: %s", r)
	}
	if r := runDFS(t, cmdTimeout, nil, env, "get", "tour/hello.txt", "-"); r.code != 0 || r.stdout != "hello, secure world\n" {
		t.Fatalf("get: %s", r)
	}
	// The suite's configuration names another CA: the server is not
	// trusted.
	if r := runDFS(t, cmdTimeout, nil, []string{"HOME=" + home}, "ls", "--coordinator", grpcAddr); r.code != exitAuthCode ||
		!strings.Contains(r.stderr, "client configuration trusts") {
		t.Fatalf("a client trusting another CA: %s; want exit %d saying the configuration trusts another CA", r, exitAuthCode)
	}
	// Plain text gets nowhere.
	if r := runDFS(t, cmdTimeout, nil, env, "ls", "--insecure"); r.code == 0 || r.code == exitAuthCode {
		t.Fatalf("a plain-text client: %s; want the cluster unreachable", r)
	}
	// No configuration: a clear refusal, exit 5.
	if r := runDFS(t, cmdTimeout, nil, []string{"HOME=" + filepath.Join(dir, "nobody"), "DFS_CONFIG"}, "ls"); r.code != exitAuthCode ||
		!strings.Contains(r.stderr, "client.conf") {
		t.Fatalf("a client without configuration: %s; want exit %d naming client.conf", r, exitAuthCode)
	}

	// Every port, from outside.
	ca, err := os.ReadFile(filepath.Join(data, "certs", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	node, err := tls.LoadX509KeyPair(filepath.Join(data, "certs", "node.crt"), filepath.Join(data, "certs", "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	var urls struct {
		Client, Peer string
		ClientHTTP   string `json:"client_http"`
	}
	if b, err := os.ReadFile(filepath.Join(data, "etcd", "urls.json")); err != nil || json.Unmarshal(b, &urls) != nil {
		t.Fatalf("etcd urls: %v", err)
	}
	nodes := decodeJSON[[]struct {
		Addr     string `json:"addr"`
		GRPCAddr string `json:"grpc_addr"`
	}](t, runDFS(t, cmdTimeout, nil, env, "nodes", "--json"))
	if len(nodes) != 3 {
		t.Fatalf("%d nodes", len(nodes))
	}
	type port struct {
		name, addr   string
		certRequired bool // a client without a certificate is refused
	}
	ports := []port{
		{"coordinator gRPC", grpcAddr, false},
		{"etcd client", strings.TrimPrefix(urls.Client, "https://"), true},
		{"etcd peer", strings.TrimPrefix(urls.Peer, "https://"), true},
		{"etcd health and metrics", strings.TrimPrefix(urls.ClientHTTP, "https://"), true},
	}
	for i, n := range nodes {
		ports = append(ports, port{fmt.Sprintf("datanode %d data", i), n.Addr, false}, port{fmt.Sprintf("datanode %d control", i), n.GRPCAddr, true})
	}
	other := otherClusterCert(t)
	for _, pt := range ports {
		if err := tlsRoundTrip(pt.addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{node}}); err != nil {
			t.Errorf("%s (%s): TLS with the cluster's certificate: %v", pt.name, pt.addr, err)
		}
		if plainAnswered(pt.addr) {
			t.Errorf("%s (%s) answered plain text", pt.name, pt.addr)
		}
		if err := tlsRoundTrip(pt.addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{other}}); err == nil {
			t.Errorf("%s (%s) accepted a certificate of another CA", pt.name, pt.addr)
		}
		if pt.certRequired {
			if err := tlsRoundTrip(pt.addr, &tls.Config{RootCAs: pool}); err == nil {
				t.Errorf("%s (%s) accepted a client without a certificate", pt.name, pt.addr)
			}
		}
		if openssl, err := exec.LookPath("openssl"); err != nil {
			t.Errorf("openssl: %v (.ci/run installs it)", err)
		} else {
			out, _ := exec.Command(openssl, "s_client", "-connect", pt.addr, "-CAfile", filepath.Join(data, "certs", "ca.crt"),
				"-cert", filepath.Join(data, "certs", "node.crt"), "-key", filepath.Join(data, "certs", "node.key"),
				"-brief").CombinedOutput()
			if !strings.Contains(string(out), "Verification: OK") || !strings.Contains(string(out), "TLSv1.3") {
				t.Errorf("openssl s_client %s (%s):\n%s", pt.name, pt.addr, out)
			}
		}
	}

	// A datanode with another cluster's certificate (the suite's) cannot
	// register.
	dn, err := startProcEnv(dir, "foreign-datanode", []string{"HOME=" + home}, "datanode", "--coordinator", grpcAddr,
		"--data", filepath.Join(dir, "foreign"), "--listen", freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer dn.stop()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if n := decodeJSON[[]nodeInfo](t, runDFS(t, cmdTimeout, nil, env, "nodes", "--json")); len(n) != 3 {
			t.Fatalf("%d nodes while a datanode of another cluster tried to join, want 3", len(n))
		}
	}
}

// exitAuthCode is dfs's exit code for "not authenticated or not allowed".
const exitAuthCode = 5

// otherClusterCert is the suite's node certificate: another CA than a dfs
// server's own.
func otherClusterCert(t *testing.T) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(suiteCerts, "node.crt"), filepath.Join(suiteCerts, "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tlsRoundTrip completes a TLS handshake with addr and sees the server
// keep the connection (TLS 1.3 reports a refused client certificate only
// on the first read): an error if either side refused.
func tlsRoundTrip(addr string, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	// An HTTP/1.1 request that every port can parse or ignore: what
	// matters is whether the server closes the connection with an alert.
	fmt.Fprintf(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	_, err = c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return nil // nothing to say, but the connection stands
	}
	if err != nil && strings.Contains(err.Error(), "tls:") {
		return err
	}
	return nil
}

// plainAnswered reports whether addr answers a plain-text HTTP request
// with an HTTP response.
func plainAnswered(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.HasPrefix(line, "HTTP/1.1 2") || strings.HasPrefix(line, "HTTP/1.1 4") && !strings.Contains(line, "400")
}
