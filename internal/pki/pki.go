// Package pki makes and loads the certificates that secure a dfs cluster:
// one certificate authority per cluster, a certificate per host for the
// roles it runs (coordinator, datanode, gateway, worker), and client
// certificates. Every internal port (coordinator and datanode gRPC, the
// datanodes' HTTP data port, etcd's client and peer ports) serves TLS with
// a node certificate and verifies its peers against the cluster CA.
//
// A certificates directory holds, as CockroachDB's does:
//
//	ca.crt                the CA's certificate: every process has it
//	ca.key                the CA's key: only where certificates are made
//	node.crt, node.key    this host's node certificate and key
//	client.NAME.crt/.key  a client's certificate and key
//
// Keys are ECDSA P-256, written 0600 in a directory made 0700. What a node
// may do is in its certificate: the roles are the organizational units of
// its subject, so a datanode's certificate cannot act as a coordinator.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names in a certificates directory.
const (
	CACert   = "ca.crt"
	CAKey    = "ca.key"
	NodeCert = "node.crt"
	NodeKey  = "node.key"
)

// ClientCert and ClientKey name the files of client name's certificate.
func ClientCert(name string) string { return "client." + name + ".crt" }
func ClientKey(name string) string  { return "client." + name + ".key" }

// Roles a node certificate may hold.
const (
	RoleCoordinator = "coordinator"
	RoleDatanode    = "datanode"
	RoleGateway     = "gateway"
	RoleWorker      = "worker"
)

// AllRoles are every role, in order: what a node certificate holds unless
// told otherwise.
var AllRoles = []string{RoleCoordinator, RoleDatanode, RoleGateway, RoleWorker}

// clientOU marks a client certificate.
const clientOU = "client"

// Lifetimes of what Create* makes.
const (
	CALifetime   = 10 * 365 * 24 * time.Hour
	CertLifetime = 5 * 365 * 24 * time.Hour
)

// ErrExists is returned by the Create functions rather than overwrite a
// certificate or key.
var ErrExists = errors.New("already exists")

// CreateCA makes a new CA in dir: ca.crt and ca.key. It refuses to replace
// one.
func CreateCA(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []string{CACert, CAKey} {
		if exists(filepath.Join(dir, f)) {
			return fmt.Errorf("%s: %w", filepath.Join(dir, f), ErrExists)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"dfs"}, CommonName: "dfs cluster CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, CAKey), key); err != nil {
		return err
	}
	return writeCert(filepath.Join(dir, CACert), der)
}

// CreateNode issues this host's node certificate into dir, signed by the
// CA in dir (ca.crt and ca.key), for the host names and IP addresses in
// hosts and the given roles (AllRoles if none).
func CreateNode(dir string, hosts, roles []string) error {
	if len(hosts) == 0 {
		return errors.New("a node certificate needs at least one host name or address")
	}
	if len(roles) == 0 {
		roles = AllRoles
	}
	for _, r := range roles {
		if !slices.Contains(AllRoles, r) {
			return fmt.Errorf("role %q: want one of %s", r, strings.Join(AllRoles, ", "))
		}
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"dfs"}, OrganizationalUnit: roles, CommonName: hosts[0]},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return issue(dir, NodeCert, NodeKey, tmpl)
}

// CreateClient issues client name's certificate into dir, signed by the CA
// in dir.
func CreateClient(dir, name string) error {
	if name == "" || strings.ContainsAny(name, "/\\ \t\n") {
		return fmt.Errorf("client name %q: want a word without spaces or slashes", name)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"dfs"}, OrganizationalUnit: []string{clientOU}, CommonName: name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return issue(dir, ClientCert(name), ClientKey(name), tmpl)
}

func issue(dir, certFile, keyFile string, tmpl *x509.Certificate) error {
	for _, f := range []string{certFile, keyFile} {
		if exists(filepath.Join(dir, f)) {
			return fmt.Errorf("%s: %w", filepath.Join(dir, f), ErrExists)
		}
	}
	caCert, caKey, err := loadCA(dir)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(CertLifetime)
	if tmpl.NotAfter.After(caCert.NotAfter) {
		tmpl.NotAfter = caCert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, keyFile), key); err != nil {
		return err
	}
	return writeCert(filepath.Join(dir, certFile), der)
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CACert), filepath.Join(dir, CAKey))
	if err != nil {
		return nil, nil, fmt.Errorf("the CA (%s and %s in %s; 'dfs certs create-ca' makes them): %w", CACert, CAKey, dir, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !cert.IsCA {
		return nil, nil, fmt.Errorf("%s is not a dfs CA", filepath.Join(dir, CACert))
	}
	return cert, key, nil
}

// Pool returns the CA of the certificates directory dir as a pool to
// verify peers with.
func Pool(dir string) (*x509.CertPool, error) {
	b, err := os.ReadFile(filepath.Join(dir, CACert))
	if err != nil {
		return nil, fmt.Errorf("the cluster CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no certificate in it", filepath.Join(dir, CACert))
	}
	return pool, nil
}

// Node is what a process of the cluster needs for TLS: the CA to verify
// peers with and its own node certificate.
type Node struct {
	Dir  string
	CAs  *x509.CertPool
	Cert tls.Certificate
	// Roles are the roles the certificate holds.
	Roles []string
}

// LoadNode loads the CA and the node certificate of dir, and checks that
// the certificate holds role (if not empty).
func LoadNode(dir, role string) (*Node, error) {
	cas, err := Pool(dir)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, NodeCert), filepath.Join(dir, NodeKey))
	if err != nil {
		return nil, fmt.Errorf("the node certificate ('dfs certs create-node' makes it): %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: cas, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, fmt.Errorf("%s is not signed by the CA in %s: %w", filepath.Join(dir, NodeCert), dir, err)
	}
	cert.Leaf = leaf
	roles := leaf.Subject.OrganizationalUnit
	if role != "" && !slices.Contains(roles, role) {
		return nil, fmt.Errorf("%s does not hold the %s role (it holds %s)", filepath.Join(dir, NodeCert), role, strings.Join(roles, ", "))
	}
	return &Node{Dir: dir, CAs: cas, Cert: cert, Roles: roles}, nil
}

// ServerTLS is the configuration a node serves with: its certificate, and
// client certificates verified against the CA when a peer presents one
// (required when requireCert is set). What a peer may do is decided by
// the service, from Peer.
func (n *Node) ServerTLS(requireCert bool) *tls.Config {
	auth := tls.VerifyClientCertIfGiven
	if requireCert {
		auth = tls.RequireAndVerifyClientCert
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{n.Cert},
		ClientCAs:    n.CAs,
		ClientAuth:   auth,
	}
}

// ClientTLS is the configuration a node dials its peers with: servers
// verified against the CA, and its own certificate presented.
func (n *Node) ClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      n.CAs,
		Certificates: []tls.Certificate{n.Cert},
	}
}

// ClientTLS is the configuration a client dials with: servers verified
// against the CA alone (a client proves who it is with its access key).
func ClientTLS(cas *x509.CertPool) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: cas}
}

// Peer is who is at the other end of a verified TLS connection.
type Peer struct {
	Name  string   // the certificate's common name
	Roles []string // a node's roles; none for a client
	// Client is set for a client certificate (made by 'dfs certs
	// create-client'): the cluster's operator, an admin.
	Client bool
	// Key identifies the certificate's public key: the hex SHA-256 of its
	// SubjectPublicKeyInfo, as in key pinning.
	Key string
}

// Holds reports whether the peer's certificate holds role.
func (p Peer) Holds(role string) bool { return slices.Contains(p.Roles, role) }

// PeerOf returns the peer of a connection whose client certificate was
// verified, or false if it presented none.
func PeerOf(st *tls.ConnectionState) (Peer, bool) {
	if st == nil || len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return Peer{}, false
	}
	leaf := st.VerifiedChains[0][0]
	p := Peer{Name: leaf.Subject.CommonName, Key: KeyID(leaf), Client: slices.Contains(leaf.Subject.OrganizationalUnit, clientOU)}
	if !p.Client {
		for _, r := range leaf.Subject.OrganizationalUnit {
			if slices.Contains(AllRoles, r) {
				p.Roles = append(p.Roles, r)
			}
		}
	}
	return p, true
}

// KeyID is the hex SHA-256 of a certificate's public key.
func KeyID(c *x509.Certificate) string {
	s := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(s[:])
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func writeCert(path string, der []byte) error {
	return writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeNew writes a file that must not exist yet, with mode.
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w", path, ErrExists)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
