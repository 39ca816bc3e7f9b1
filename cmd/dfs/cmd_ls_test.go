package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/dfs-store/dfs/client/clienttest"
)

// runLs runs dfs ls with args against the coordinator at addr, writing
// its output to w.
func runLs(ctx context.Context, addr string, w io.Writer, args ...string) error {
	root := newRootCmd()
	root.SetOut(w)
	root.SetErr(io.Discard)
	root.SetArgs(append([]string{"ls", "--insecure", "--coordinator", addr}, args...))
	return root.ExecuteContext(ctx)
}

func manyPaths(n int) []string {
	var paths []string
	for i := range n {
		paths = append(paths, fmt.Sprintf("big/%06d", i))
	}
	return paths
}

// The first page of a long listing is printed before the second is asked
// for: the fake coordinator holds the second page back until the test has
// read the first line, so an ls that waited for the end would never print.
func TestLsPrintsThePageBeforeAskingForTheNext(t *testing.T) {
	for _, args := range [][]string{{"big/"}, {"--json", "big"}, {"-r", "big/"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			fake, addr := clienttest.Start(t, manyPaths(3*lsPage+7))
			firstLine := make(chan struct{})
			fake.Gate(func(ctx context.Context, page int) error {
				if page >= 2 {
					select {
					case <-firstLine:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			})
			// A guard against a hang, not a measure: the test fails if
			// ls never prints.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() {
				err := runLs(ctx, addr, pw, args...)
				pw.CloseWithError(err)
				done <- err
			}()
			sc := bufio.NewScanner(pr)
			var lines []string
			for sc.Scan() {
				if len(lines) == 0 {
					if p := fake.Pages(); p != 1 {
						t.Errorf("first line printed after %d pages were asked for, want 1", p)
					}
					close(firstLine)
				}
				lines = append(lines, sc.Text())
			}
			if err := <-done; err != nil {
				t.Fatalf("ls %v: %v", args, err)
			}
			if len(lines) == 0 {
				t.Fatalf("ls %v printed nothing", args)
			}
			if p := fake.Pages(); p != 4 {
				t.Errorf("ls %v asked for %d pages, want 4", args, p)
			}
			if args[0] == "--json" {
				var entries []lsEntry
				if err := json.Unmarshal([]byte(strings.Join(lines, "\n")), &entries); err != nil {
					t.Fatalf("ls --json is not one JSON array: %v", err)
				}
				if len(entries) != 3*lsPage+7 || entries[0].Path != "big/000000" || entries[len(entries)-1].Path != fmt.Sprintf("big/%06d", 3*lsPage+6) {
					t.Fatalf("ls --json: %d entries, first %+v", len(entries), entries[0])
				}
				return
			}
			if len(lines) != 3*lsPage+7 || !strings.HasSuffix(lines[0], " big/000000") {
				t.Fatalf("ls: %d lines, first %q", len(lines), lines[0])
			}
		})
	}
}

func TestLsOutput(t *testing.T) {
	_, addr := clienttest.Start(t, []string{"photos/a.jpg", "photos/2024/b.jpg", "photos/2024/c.jpg", "photos-old", "readme"})
	ls := func(args ...string) string {
		t.Helper()
		var b bytes.Buffer
		if err := runLs(context.Background(), addr, &b, args...); err != nil {
			t.Fatalf("ls %v: %v", args, err)
		}
		return b.String()
	}
	// Fixed widths: every path starts in the same column.
	out := ls("photos")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], "  photos/2024/") || !strings.HasSuffix(lines[1], "  photos/a.jpg") {
		t.Fatalf("ls photos:\n%s", out)
	}
	if strings.Index(lines[0], "photos/") != strings.Index(lines[1], "photos/") {
		t.Errorf("ls photos: paths not in one column:\n%s", out)
	}
	if !strings.HasPrefix(strings.TrimSpace(lines[0]), "- ") || !strings.Contains(lines[1], "12 B") {
		t.Errorf("ls photos: want - for the folder and the file's size:\n%s", out)
	}
	// A file is listed alone.
	var one []lsEntry
	if err := json.Unmarshal([]byte(ls("--json", "readme")), &one); err != nil || len(one) != 1 || one[0].Path != "readme" || one[0].Size != 6 {
		t.Fatalf("ls --json readme: %+v %v", one, err)
	}
	// No directory of that name: the raw prefix.
	if out := ls("photos-"); !strings.HasSuffix(out, "  photos-old\n") || strings.Count(out, "\n") != 1 {
		t.Errorf("ls photos-:\n%s", out)
	}
	// Nothing: an empty array, no lines.
	if out := ls("--json", "none/"); out != "[]\n" {
		t.Errorf("ls --json none/: %q, want []", out)
	}
	if out := ls("none/"); out != "" {
		t.Errorf("ls none/: %q, want nothing", out)
	}
	// Bad input: a prefix that is not UTF-8 is refused with a path error.
	var b bytes.Buffer
	if err := runLs(context.Background(), addr, &b, "a\xff/"); err == nil || exitCode(err) != exitUsage {
		t.Errorf("ls of a non-UTF-8 prefix: %v, want a usage error", err)
	}
}
