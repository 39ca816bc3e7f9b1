//go:build linux || darwin

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These scenarios share one cluster per topology and leave it healthy.
// Each puts its own files, so any one of them can run alone (-run).

// A big file comes back byte for byte, to a file and to stdout, and its
// record shows every chunk on three distinct nodes.
func TestRoundTrip(t *testing.T) {
	forEachTopology(t, func(t *testing.T, c *cluster) {
		const size = 200 << 20
		dir := t.TempDir()
		local, sum := randomFile(t, dir, "big.bin", size)
		remote := "roundtrip/big.bin"

		if out := c.put(t, local, remote); out.Duplicate || out.NewChunks != out.Chunks || out.SentBytes != size {
			t.Errorf("put of new content: %+v, want no duplicate, every chunk new, %d bytes sent", out, size)
		}
		c.checkGetFile(t, remote, filepath.Join(dir, "got.bin"), sum)
		c.checkGet(t, remote, sum)

		st := c.checkReplicated(t, remote, sum, 3)
		if st.Size != size {
			t.Errorf("stat %s: size %d, want %d", remote, st.Size, size)
		}
		if len(st.Chunks) < 2 {
			t.Errorf("stat %s: %d chunks; a %d-byte file should be cut in several", remote, len(st.Chunks), size)
		}

		e, ok := listed(c.ls(t, "roundtrip"), remote)
		if !ok || e.Dir || e.Size != size || e.SHA256 != sum {
			t.Errorf("ls --json roundtrip: entry %+v (found %v), want %s of %d bytes, sha256 %s", e, ok, remote, size, sum)
		}
	})
}

// The same bytes under a second path cost no chunk bytes on disk.
func TestDedup(t *testing.T) {
	forEachTopology(t, func(t *testing.T, c *cluster) {
		local, sum := randomFile(t, t.TempDir(), "same.bin", 24<<20)
		if out := c.put(t, local, "dedup/first.bin"); out.Duplicate {
			t.Errorf("first put of new content says duplicate: %+v", out)
		}
		before := c.chunkBytes(t)
		out := c.put(t, local, "dedup/second.bin")
		after := c.chunkBytes(t)
		if !out.Duplicate || out.SentBytes != 0 {
			t.Errorf("second put of the same content: %+v, want duplicate and nothing sent", out)
		}
		if after != before {
			t.Errorf("chunk bytes on disk went from %d to %d; the second copy should add none", before, after)
		}
		c.checkGet(t, "dedup/second.bin", sum)
		c.checkGet(t, "dedup/first.bin", sum)
	})
}

// Inserting 1 KiB in the middle of a file stores only the chunks around
// the insertion: content-defined chunking finds the old boundaries again.
func TestInsertInMiddle(t *testing.T) {
	forEachTopology(t, func(t *testing.T, c *cluster) {
		const (
			size   = 64 << 20
			insert = 1 << 10
		)
		dir := t.TempDir()
		orig := filepath.Join(dir, "orig.bin")
		writeFile(t, orig, io.LimitReader(randomData(t, "orig"), size))
		edited := filepath.Join(dir, "edited.bin")
		same := randomData(t, "orig")
		editedSHA, editedSize := writeFile(t, edited, io.MultiReader(
			io.LimitReader(same, size/2),
			io.LimitReader(randomData(t, "insert"), insert),
			io.LimitReader(same, size/2)))

		c.put(t, orig, "shift/orig.bin")
		before := c.chunkBytes(t)
		out := c.put(t, edited, "shift/edited.bin")
		after := c.chunkBytes(t)

		added := (after - before) / 3 // every chunk is kept three times
		t.Logf("the edited file added %d bytes of chunks (%.1f%% of %d), %d of its %d chunks new",
			added, 100*float64(added)/float64(editedSize), editedSize, out.NewChunks, out.Chunks)
		if added*10 >= editedSize {
			t.Errorf("the edited file added %d chunk bytes per replica, want < 10%% of its %d bytes", added, editedSize)
		}
		if added <= 0 {
			t.Errorf("the edited file added no chunk bytes; its middle chunk is new")
		}
		c.checkGet(t, "shift/edited.bin", editedSHA)
	})
}

// rm removes a path: get and stat then say it is not found, ls no longer
// lists it, and a file sharing its bytes still reads back.
func TestRemove(t *testing.T) {
	forEachTopology(t, func(t *testing.T, c *cluster) {
		local, sum := randomFile(t, t.TempDir(), "f.bin", 3<<20)
		gone, kept := "rm/gone.bin", "rm/kept.bin"
		c.put(t, local, gone)
		c.put(t, local, kept)

		c.mustDFS(t, "rm", gone)
		c.forget(gone)

		for _, args := range [][]string{{"get", gone, "-"}, {"get", gone, filepath.Join(t.TempDir(), "x")}, {"stat", gone}, {"rm", gone}} {
			r := c.dfs(t, args...)
			if r.code != 3 || !strings.Contains(r.stderr, gone) || r.stdout != "" {
				t.Errorf("after rm, want exit 3, a message naming %s and no output: %s", gone, r)
			}
		}
		entries := c.ls(t, "rm")
		if _, ok := listed(entries, gone); ok {
			t.Errorf("ls rm still lists %s: %+v", gone, entries)
		}
		if _, ok := listed(entries, kept); !ok {
			t.Errorf("ls rm does not list %s: %+v", kept, entries)
		}
		c.checkGet(t, kept, sum)
		c.mustDFS(t, "rm", "-f", gone) // -f: a missing path is fine
	})
}

// Bad input fails with the documented exit code and a message that says
// what is wrong, and stores nothing.
func TestBadInput(t *testing.T) {
	forEachTopology(t, func(t *testing.T, c *cluster) {
		dir := t.TempDir()
		local, _ := randomFile(t, dir, "badinput-src.bin", 64<<10)

		t.Run("missing local file", func(t *testing.T) {
			missing := filepath.Join(dir, "no-such-file.bin")
			r := c.dfs(t, "put", missing, "badinput/x")
			if r.code == 0 || !strings.Contains(r.stderr, missing) {
				t.Errorf("want a non-zero exit and a message naming %s: %s", missing, r)
			}
		})

		for _, remote := range []string{"", "../x", "a/../b", "a//b", "badinput/"} {
			for _, args := range [][]string{
				{"put", local, remote},
				{"put", "-", remote},
				{"get", remote, "-"},
				{"stat", remote},
				{"rm", remote},
			} {
				if args[1] == local && strings.HasSuffix(remote, "/") {
					continue // put LOCAL DIR/ appends LOCAL's base name, as documented
				}
				if args[0] != "put" && strings.HasSuffix(remote, "/") {
					continue // a folder's name, not an invalid path: below
				}
				name := fmt.Sprintf("%s %q", args[0], remote)
				if args[0] == "put" {
					name = fmt.Sprintf("put %s %q", map[bool]string{true: "-", false: "LOCAL"}[args[1] == "-"], remote)
				}
				t.Run(name, func(t *testing.T) {
					r := c.dfs(t, args...)
					if r.code != 2 || !(strings.Contains(r.stderr, "invalid path") || strings.Contains(r.stderr, "REMOTE")) {
						t.Errorf("want exit 2 and a message saying the path is invalid: %s", r)
					}
					if remote != "" && args[1] != "-" && !strings.Contains(r.stderr, remote) {
						t.Errorf("want the message to name %q: %s", remote, r)
					}
				})
			}
		}

		// A name ending in '/' names a folder; with no file under it,
		// there is nothing there: exit 3, as for a missing file.
		for _, args := range [][]string{{"get", "badinput/", "-"}, {"stat", "badinput/"}, {"rm", "badinput/"}} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				r := c.dfs(t, args...)
				if r.code != 3 || !strings.Contains(r.stderr, "no file under badinput/") {
					t.Errorf("want exit 3 and a message saying nothing is under badinput/: %s", r)
				}
			})
		}

		t.Run("nothing stored", func(t *testing.T) {
			for _, e := range c.ls(t, "-r") {
				if slices.Contains([]string{"x", "b", "a/b", "a//b", "../x", "a/../b", "badinput-src.bin", "badinput/x", "badinput/badinput-src.bin"}, e.Path) {
					t.Errorf("a rejected put stored %+v", e)
				}
			}
		})

		t.Run("get missing path", func(t *testing.T) {
			r := c.dfs(t, "get", "badinput/never-stored.bin", "-")
			if r.code != 3 || !strings.Contains(r.stderr, "badinput/never-stored.bin") {
				t.Errorf("want exit 3 and a message naming the path: %s", r)
			}
		})
	})
}

// A client pointed at a closed port fails soon with exit 4 and names the
// address it could not reach.
func TestUnreachableCoordinator(t *testing.T) {
	skipShort(t)
	addr := freeAddr(t) // nothing listens there any more
	local, _ := randomFile(t, t.TempDir(), "f.bin", 4<<10)
	const timeout = 60 * time.Second // a hang fails the test
	for _, args := range [][]string{
		{"ls"},
		{"nodes"},
		{"stat", "x"},
		{"get", "x", "-"},
		{"rm", "x"},
		{"put", local, "x"},
	} {
		t.Run(args[0], func(t *testing.T) {
			r := runDFS(t, timeout, nil, nil, append([]string{args[0], "--coordinator", addr}, args[1:]...)...)
			if r.code != 4 || !strings.Contains(r.stderr, addr) {
				t.Errorf("want exit 4 and a message naming %s: %s", addr, r)
			}
		})
	}
	t.Run("DFS_COORDINATOR", func(t *testing.T) {
		r := runDFS(t, timeout, nil, []string{"DFS_COORDINATOR=" + addr}, "ls")
		if r.code != 4 || !strings.Contains(r.stderr, addr) {
			t.Errorf("want exit 4 and a message naming %s: %s", addr, r)
		}
	})
}

// A put killed with SIGKILL halfway leaves the previous version in place.
func TestInterruptedUpload(t *testing.T) {
	forEachTopology(t, func(t *testing.T, c *cluster) {
		old, oldSHA := randomFile(t, t.TempDir(), "old.bin", 5<<20)
		remote := "interrupted/file.bin"
		c.put(t, old, remote)

		const sent = 30 << 20
		cmd := exec.Command(dfsBin, c.args([]string{"put", "-", remote})...)
		cmd.Env = cleanEnv()
		cmd.SysProcAttr = sysProcAttr()
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.WaitDelay = 5 * time.Second
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		wrote := make(chan error, 1)
		go func() {
			_, err := io.Copy(stdin, io.LimitReader(randomData(t, "new"), sent))
			wrote <- err
		}()
		select {
		case err := <-wrote:
			if err != nil {
				t.Fatalf("writing to put's stdin: %v\nstderr: %s", err, stderr.String())
			}
		case err := <-exited:
			t.Fatalf("put exited before it had its input: %v\nstderr: %s", err, stderr.String())
		case <-time.After(cmdTimeout):
			cmd.Process.Kill()
			t.Fatalf("put did not take %d bytes of input within %v", sent, cmdTimeout)
		}
		cmd.Process.Kill()
		err = <-exited
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("put was not killed by SIGKILL but ended with %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
		}

		c.checkGet(t, remote, oldSHA)
		if st := c.stat(t, remote); st.SHA256 != oldSHA || st.Size != 5<<20 {
			t.Errorf("stat after the interrupted put: sha256 %s size %d, want the old %s of %d bytes", st.SHA256, st.Size, oldSHA, 5<<20)
		}
		if e, ok := listed(c.ls(t, "interrupted"), remote); !ok || e.SHA256 != oldSHA {
			t.Errorf("ls after the interrupted put: %+v (found %v), want sha256 %s", e, ok, oldSHA)
		}

		// The path still takes the new bytes when an upload completes,
		// deduplicating onto whatever chunks the killed put left behind.
		newer := filepath.Join(t.TempDir(), "new.bin")
		newSHA, _ := writeFile(t, newer, io.LimitReader(randomData(t, "new"), sent))
		c.put(t, newer, remote)
		c.checkGet(t, remote, newSHA)

		t.Run("new version fully replicated", func(t *testing.T) {
			st := c.stat(t, remote)
			for i, ch := range st.Chunks {
				// The killed put may have left a chunk on only some nodes
				// of its chain; the next put tops it up to 3.
				if len(ch.Replicas) < 3 {
					t.Errorf("chunk %d, %s, has replicas %v, want 3", i, ch.Hash, ch.Replicas)
				}
			}
			c.checkReplicated(t, remote, newSHA, 3)
		})
	})
}

// Every file survives a stop of every process (SIGTERM) and a start on the
// same directories, and the datanodes keep their ids.
func TestRestart(t *testing.T) {
	forEachTopology(t, func(t *testing.T, c *cluster) {
		dir := t.TempDir()
		for i, size := range []int64{1, 300 << 10, 3 << 20, 17 << 20} {
			local, _ := randomFile(t, dir, fmt.Sprintf("%d.bin", i), size)
			c.put(t, local, fmt.Sprintf("restart/%d.bin", i))
		}
		before := c.mustDFS(t, "nodes", "--json")
		files := c.storedFiles()
		paths := make([]string, 0, len(files))
		for p := range files {
			paths = append(paths, p)
		}
		slices.Sort(paths)
		replicasBefore := map[string][]string{}
		for _, p := range paths {
			replicasBefore[p] = replicaSets(c.stat(t, p))
		}

		c.restart(t)

		var idsBefore, idsAfter []string
		for _, n := range decodeJSON[[]nodeInfo](t, before) {
			idsBefore = append(idsBefore, n.ID)
		}
		for _, n := range decodeJSON[[]nodeInfo](t, c.mustDFS(t, "nodes", "--json")) {
			idsAfter = append(idsAfter, n.ID)
		}
		slices.Sort(idsBefore)
		slices.Sort(idsAfter)
		if !slices.Equal(idsBefore, idsAfter) {
			t.Errorf("datanode ids before the restart %v, after %v", idsBefore, idsAfter)
		}

		for _, p := range paths {
			c.checkGet(t, p, files[p])
			st := c.stat(t, p)
			if st.SHA256 != files[p] {
				t.Errorf("stat %s after the restart: sha256 %s, want %s", p, st.SHA256, files[p])
			}
			// The coordinator learns replicas from the datanodes' reports
			// again: it must find every one it knew of.
			if got := replicaSets(st); !slices.Equal(got, replicasBefore[p]) {
				t.Errorf("stat %s: replicas before the restart %v, after %v", p, replicasBefore[p], got)
			}
		}
		t.Logf("%d files read back after the restart", len(paths))

		local, sum := randomFile(t, dir, "after.bin", 2<<20)
		c.put(t, local, "restart/after.bin")
		c.checkGet(t, "restart/after.bin", sum)
	})
}

// replicaSets returns, for each chunk of a stat, its hash and its sorted
// replicas, as one string per chunk.
func replicaSets(st statOutput) []string {
	var out []string
	for _, ch := range st.Chunks {
		r := slices.Clone(ch.Replicas)
		slices.Sort(r)
		out = append(out, ch.Hash+":"+strings.Join(r, ","))
	}
	return out
}
