package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// scaleProc is one process of the cluster, its output in files.
type scaleProc struct {
	name    string
	cmd     *exec.Cmd
	outPath string
	errPath string
	start   time.Time
	done    chan struct{}
	err     error
}

func startScaleProc(bin, logDir, name string, args []string) (*scaleProc, error) {
	p := &scaleProc{name: name, outPath: filepath.Join(logDir, name+".out"), errPath: filepath.Join(logDir, name+".err"), done: make(chan struct{})}
	stdout, err := os.Create(p.outPath)
	if err != nil {
		return nil, err
	}
	stderr, err := os.Create(p.errPath)
	if err != nil {
		stdout.Close()
		return nil, err
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	p.start = time.Now()
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

func (p *scaleProc) pid() int { return p.cmd.Process.Pid }

// waitReady waits for the process's ready line and returns the time since
// it was started.
func (p *scaleProc) waitReady(ctx context.Context, limit time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(limit)
	for {
		if b, _ := os.ReadFile(p.outPath); bytes.Contains(b, []byte("ready")) {
			return time.Since(p.start), nil
		}
		if err := p.wait(ctx, deadline); err != nil {
			return 0, fmt.Errorf("%s: no ready line: %w (see %s)", p.name, err, p.errPath)
		}
	}
}

// waitLog waits for a line of the process's stderr, after offset, that
// holds every one of words.
func (p *scaleProc) waitLog(ctx context.Context, offset int64, limit time.Duration, words ...string) error {
	deadline := time.Now().Add(limit)
	for {
		if hasLine(p.errPath, offset, words) {
			return nil
		}
		if err := p.wait(ctx, deadline); err != nil {
			return fmt.Errorf("%s: no log line with %q: %w", p.name, words, err)
		}
	}
}

// wait waits a moment, and fails when the process exited, the deadline
// passed or ctx ended.
func (p *scaleProc) wait(ctx context.Context, deadline time.Time) error {
	select {
	case <-p.done:
		return fmt.Errorf("exited: %v", p.err)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(50 * time.Millisecond):
	}
	if time.Now().After(deadline) {
		return errors.New("timed out")
	}
	return nil
}

func (p *scaleProc) errSize() int64 {
	fi, err := os.Stat(p.errPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// hasLine says whether the file, from offset on, holds a line with every
// one of words.
func hasLine(path string, offset int64, words []string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return false
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		ok := true
		for _, w := range words {
			if !strings.Contains(line, w) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// stop sends SIGTERM and waits, killing the process after 30 s.
func (p *scaleProc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within 30s of SIGTERM; killed", p.name)
	}
}

func (p *scaleProc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// cleanEnv is the environment without DFS_* variables, which a dfs
// command would take as flags.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DFS_") {
			env = append(env, kv)
		}
	}
	return env
}

// clockTicks is the unit of /proc/PID/stat's times (USER_HZ), 100 on
// every Linux platform Go supports.
const clockTicks = 100

// procCPU returns the CPU time (user and system) a process has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStat(string(b))
}

// parseProcStat reads utime and stime from the text of /proc/PID/stat.
func parseProcStat(s string) (time.Duration, error) {
	// The command name, in parentheses, may hold spaces and parentheses:
	// the fields that follow start after the last ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat %.40q: no command name", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat %.40q: %d fields after the name, want at least 13", s, len(f))
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("/proc stat: cpu time %q: not a count of ticks", v)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// rss is a process's resident memory in bytes, 0 if unknown.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return statusField(string(b), "VmRSS:")
}

// statusField returns a field of /proc/PID/status given in kB, in bytes.
func statusField(s, name string) int64 {
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, name) {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
