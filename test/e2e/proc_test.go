//go:build linux || darwin

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	readyTimeout = 60 * time.Second // a role process prints its ready line
	stopTimeout  = 20 * time.Second // SIGTERM to exit, before SIGKILL
	pollEvery    = 50 * time.Millisecond
)

// proc is a long-running dfs process (a role: server, coordinator,
// datanode) with its stdout and stderr in files.
type proc struct {
	name    string
	args    []string
	cmd     *exec.Cmd
	outPath string
	errPath string
	done    chan struct{} // closed when the process has exited
	err     error         // what Wait returned; read after done
	killed  bool          // by kill9, on purpose
}

// startProc starts dfsBin with args, writing its output to
// logDir/name.out and name.err.
func startProc(logDir, name string, args ...string) (*proc, error) {
	return startProcEnv(logDir, name, nil, args...)
}

// withEnv is cleanEnv with the variables of env (NAME=value) set, or
// removed where env says NAME alone.
func withEnv(env []string) []string {
	out := cleanEnv()
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		out = slices.DeleteFunc(out, func(o string) bool { return strings.HasPrefix(o, name+"=") })
		if strings.Contains(kv, "=") {
			out = append(out, kv)
		}
	}
	return out
}

// startProcEnv is startProc with the environment changed as withEnv says.
func startProcEnv(logDir, name string, env []string, args ...string) (*proc, error) {
	p := &proc{
		name:    name,
		args:    args,
		outPath: filepath.Join(logDir, name+".out"),
		errPath: filepath.Join(logDir, name+".err"),
		done:    make(chan struct{}),
	}
	stdout, err := os.Create(p.outPath)
	if err != nil {
		return nil, err
	}
	stderr, err := os.Create(p.errPath)
	if err != nil {
		stdout.Close()
		return nil, err
	}
	p.cmd = exec.Command(dfsBin, args...)
	p.cmd.Env = withEnv(env)
	p.cmd.SysProcAttr = sysProcAttr()
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	if err := p.cmd.Start(); err != nil {
		stdout.Close()
		stderr.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		stdout.Close()
		stderr.Close()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls the process's stdout until it prints a line containing
// "ready", and fails if the process exits or the deadline passes first.
func (p *proc) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	for {
		if b, _ := os.ReadFile(p.outPath); bytes.Contains(b, []byte("ready")) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready: %v", p.name, p.err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s printed no ready line within %v", p.name, readyTimeout)
		}
		time.Sleep(pollEvery)
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for the process to exit, sending SIGKILL
// after stopTimeout. It returns nil only for a clean exit on SIGTERM.
func (p *proc) stop() error {
	if p.exited() {
		return fmt.Errorf("%s had already exited: %v", p.name, p.err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%s exited after SIGTERM with %v", p.name, p.err)
		}
		return nil
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", p.name, stopTimeout)
	}
}

// kill9 kills the process with SIGKILL and waits for it.
func (p *proc) kill9() {
	p.killed = true
	p.cmd.Process.Kill()
	<-p.done
}

// logTail returns the last lines of the process's stdout and stderr.
func (p *proc) logTail(lines int) string {
	var b strings.Builder
	state := "running"
	if p.exited() {
		state = fmt.Sprintf("exited: %v", p.err)
	}
	fmt.Fprintf(&b, "----- %s (dfs %s) [%s]\n", p.name, strings.Join(p.args, " "), state)
	for _, f := range []string{p.outPath, p.errPath} {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(&b, "  %s: %v\n", f, err)
			continue
		}
		ls := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(ls) > lines {
			fmt.Fprintf(&b, "  %s: ... %d lines before\n", filepath.Base(f), len(ls)-lines)
			ls = ls[len(ls)-lines:]
		} else {
			fmt.Fprintf(&b, "  %s:\n", filepath.Base(f))
		}
		for _, l := range ls {
			b.WriteString("    " + l + "\n")
		}
	}
	return b.String()
}

// cleanEnv is the environment of every dfs process: without the DFS_*
// variables of the test's own environment, which every dfs command would
// take as flags, but with the suite's certificates for roles
// (DFS_CERTS_DIR), its client configuration for clients (DFS_CONFIG), and
// a home of its own, so nothing is written to the user's.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DFS_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			env = append(env, kv)
		}
	}
	return append(env, "HOME="+suiteHome, "DFS_CERTS_DIR="+suiteCerts, "DFS_CONFIG="+suiteConfig)
}

// freeAddr returns a loopback address with a port nothing listens on.
//
// The port is drawn below Linux's ephemeral range (32768 and up), where
// the kernel picks the local ports of outgoing connections: a port taken
// from that range can be handed to some connection before the process that
// was to listen on it starts.
func freeAddr(t testing.TB) string {
	t.Helper()
	for range 1000 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		return addr
	}
	t.Fatal("no free port in 20000-31999")
	return ""
}

// result is what a client command did.
type result struct {
	args   []string
	stdout string
	stderr string
	code   int
}

func (r result) String() string {
	return fmt.Sprintf("dfs %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code,
		clip(r.stdout), clip(r.stderr))
}

func clip(s string) string {
	if len(s) > 4000 {
		return s[:4000] + "…"
	}
	return s
}

// cmdTimeout bounds every client command, so that a hang fails the test
// instead of stalling the suite.
const cmdTimeout = 3 * time.Minute

// runDFS runs a dfs client command to completion. Its stdout goes to
// stdout if that is not nil (for downloads that should not be held in
// memory) and is returned otherwise. env is added to the environment.
func runDFS(t testing.TB, timeout time.Duration, stdout io.Writer, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, dfsBin, args...)
	cmd.Env = withEnv(env)
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdout != nil {
		cmd.Stdout = stdout
	}
	err := cmd.Run()
	r := result{args: args, stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("dfs %s did not finish within %v\nstderr: %s", strings.Join(args, " "), timeout, clip(r.stderr))
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("dfs %s: %v", strings.Join(args, " "), err)
	}
	return r
}
