package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/access"
)

// Users on a cluster run with certificates (Config.Keys) prove who they are
// with an access key, as on every interface of dfs:
//
//   - a program sends HTTP basic authentication, the key id as the user
//     and its secret as the password (curl -u ID:SECRET); the gateway
//     passes the key on with each call to the cluster, which checks it;
//   - the web UI signs in once (POST /api/v1/session with the key id and
//     secret, checked by the cluster) and gets a session cookie (HttpOnly,
//     SameSite=Strict, Secure over TLS); the gateway then calls the cluster
//     acting for that key, with its own gateway certificate.
//
// What a key may do is decided by the cluster, on every call; the gateway
// only filters its event stream by the key's read rights.

// sessionCookie names the web UI's session cookie.
const sessionCookie = "dfs_session"

// Web sessions last SessionTTL (default 12h) from sign-in; at most
// maxWebSessions are open at once (the oldest go first).
const (
	defaultSessionTTL = 12 * time.Hour
	maxWebSessions    = 10000
)

// webSession is a signed-in user of the web UI.
type webSession struct {
	key     client.AccessKey
	expires time.Time
}

type webSessions struct {
	mu sync.Mutex
	m  map[string]*webSession
}

func (ws *webSessions) get(id string) (*webSession, bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	s, ok := ws.m[id]
	if ok && time.Now().After(s.expires) {
		delete(ws.m, id)
		return nil, false
	}
	return s, ok
}

func (ws *webSessions) add(s *webSession) string {
	var b [32]byte
	rand.Read(b[:])
	id := base64.RawURLEncoding.EncodeToString(b[:])
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.m == nil {
		ws.m = map[string]*webSession{}
	}
	if len(ws.m) >= maxWebSessions {
		now := time.Now()
		var oldest string
		for k, v := range ws.m {
			if now.After(v.expires) {
				delete(ws.m, k)
			} else if oldest == "" || v.expires.Before(ws.m[oldest].expires) {
				oldest = k
			}
		}
		if len(ws.m) >= maxWebSessions {
			delete(ws.m, oldest)
		}
	}
	ws.m[id] = s
	return id
}

func (ws *webSessions) drop(id string) {
	ws.mu.Lock()
	delete(ws.m, id)
	ws.mu.Unlock()
}

// errNoCredentials answers a request that proves no identity.
var errNoCredentials = errors.New("sign in: send an access key with HTTP basic authentication (the key id as the user, its secret as the password) " +
	"or sign in to the web UI; 'dfs key create' makes keys")

// authenticate finds the access key of a request, from its basic
// authentication or its session cookie, and returns the context to call
// the cluster with for it (the key's rights are the cluster's to check).
func (s *Server) authenticate(r *http.Request) (context.Context, error) {
	if id, secret, ok := r.BasicAuth(); ok {
		if !access.ValidID(id) || secret == "" {
			return nil, errors.New("the access key id or secret is not valid")
		}
		return client.WithKey(r.Context(), id, secret), nil
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		if ws, ok := s.sessions.get(c.Value); ok {
			return client.ActAs(r.Context(), ws.key.ID), nil
		}
		return nil, errors.New("the session has ended: sign in again")
	}
	return nil, errNoCredentials
}

// needsKey reports whether a route is served only to a caller with a key:
// everything under /api/ but the gateway's info and sign-in.
func needsKey(p string) bool {
	return (p == "/api" || strings.HasPrefix(p, "/api/")) && p != "/api/v1/info" && p != "/api/v1/session"
}

func unauthorized(w http.ResponseWriter, err error) {
	writeError(w, http.StatusUnauthorized, err)
}

// serveSession signs a user in (POST, with the key id and secret as JSON
// or a form), says who is signed in (GET), or signs out (DELETE).
func (s *Server) serveSession(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.Keys {
		writeError(w, http.StatusNotFound, errors.New("this gateway has no sign-in: its cluster runs without access keys"))
		return
	}
	switch r.Method {
	case http.MethodGet:
		ctx, err := s.authenticate(r)
		if err != nil {
			unauthorized(w, err)
			return
		}
		k, err := s.cl.WhoAmI(ctx)
		if err != nil {
			s.clusterError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, k)
	case http.MethodPost:
		var in struct {
			ID     string `json:"access_key_id"`
			Secret string `json:"secret_access_key"`
		}
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&in); err != nil {
				writeError(w, http.StatusBadRequest, fmt.Errorf("sign in: %v", err))
				return
			}
		} else {
			r.Body = http.MaxBytesReader(w, r.Body, 4096)
			in.ID, in.Secret = r.PostFormValue("access_key_id"), r.PostFormValue("secret_access_key")
		}
		in.ID, in.Secret = strings.TrimSpace(in.ID), strings.TrimSpace(in.Secret)
		if !access.ValidID(in.ID) || in.Secret == "" {
			unauthorized(w, errors.New("the access key id or secret is not valid"))
			return
		}
		k, err := s.cl.WhoAmI(client.WithKey(r.Context(), in.ID, in.Secret))
		if err != nil {
			if errors.Is(err, dfs.ErrDenied) {
				unauthorized(w, err)
				return
			}
			s.clusterError(w, err)
			return
		}
		ttl := s.cfg.SessionTTL
		if ttl <= 0 {
			ttl = defaultSessionTTL
		}
		exp := time.Now().Add(ttl)
		id := s.sessions.add(&webSession{key: k, expires: exp})
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", Expires: exp, HttpOnly: true,
			Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
		s.log.Info("signed in", "key", k.ID, "name", k.Name, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusOK, k)
	case http.MethodDelete:
		if c, err := r.Cookie(sessionCookie); err == nil {
			s.sessions.drop(c.Value)
		}
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
			Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed here; use GET, POST or DELETE", r.Method))
	}
}

// clusterError answers with the cluster's error.
func (s *Server) clusterError(w http.ResponseWriter, err error) {
	writeError(w, statusOf(err), err)
}

// readFilter returns what an event stream may show of paths: those the
// caller may read. Nil: all of them.
func (s *Server) readFilter(ctx context.Context) (func(string) bool, error) {
	if !s.cfg.Keys {
		return nil, nil
	}
	k, err := s.cl.WhoAmI(ctx)
	if err != nil {
		return nil, err
	}
	if k.Admin {
		return nil, nil
	}
	return func(path string) bool { return k.Rights(access.Bucket(path))&client.RightRead != 0 }, nil
}
