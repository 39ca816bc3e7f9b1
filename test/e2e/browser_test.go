//go:build linux || darwin

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// browserProcessed is the state the browser test waits for on a new
// upload: the workers inside dfs server verify the content and read its
// media metadata, and the job ends done.
const browserProcessed = "done"

// chromiumPath finds Debian's chromium (or $DFS_CHROMIUM). The browser test
// fails rather than skips without it: CI installs it (.ci/run).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("DFS_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	t.Fatal("browser test: no chromium found (install Debian's chromium package, or set DFS_CHROMIUM); .ci/run installs it")
	return ""
}

// artifactDir is where the screenshots go: $DFS_TEST_ARTIFACTS, or a
// temporary directory that is kept and logged.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("DFS_TEST_ARTIFACTS")
	var err error
	if dir == "" {
		dir, err = os.MkdirTemp("", "dfs-browser-")
	} else {
		dir = filepath.Join(dir, "browser")
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("browser test: screenshots in %s", dir)
	return dir
}

// TestBrowser drives the web UI of a real dfs server in headless Chromium:
// two uploads through the page's file picker (the second with the first's
// bytes), their statuses, a download compared byte for byte, the detail
// view, a delete, and the cluster view with three live nodes; then, on a
// separate dfs gateway, a reader key whose delete is refused, and the
// admin's that goes through.
func TestBrowser(t *testing.T) {
	skipShort(t)
	chromium := chromiumPath(t)
	art := artifactDir(t)
	c := newCluster(t, clusterSpec{topo: topoServer})
	base := "http://" + c.http

	local := t.TempDir()
	data := make([]byte, 5<<20+777) // several chunks
	rand.New(rand.NewSource(42)).Read(data)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	first, second := filepath.Join(local, "report.bin"), filepath.Join(local, "copy-of-report.bin")
	for _, p := range []string{first, second} {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	downloads := t.TempDir()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	// The browser lives as long as the context of its first action: start
	// it on ctx itself, so that the steps' timeouts do not end it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}

	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 90*time.Second)
		defer scancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML("main"))
			t.Fatalf("%s: %v\npage:\n%.4000s", what, err, html)
		}
	}
	shot := func(name string) {
		t.Helper()
		img, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(art, name), img, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// waitJS polls a JavaScript condition in the page until it holds.
	waitJS := func(what, cond string) {
		t.Helper()
		step(what, func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Poll[bool](cond, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second))(ctx, tg)
			return chromedp.Void{}, err
		})
	}
	uploadState := func(path string) string {
		return fmt.Sprintf(`document.querySelector('#uploads li[data-path=%q] .status .pill')?.dataset.state`, path)
	}

	// The first page asks to sign in: a wrong secret is refused in the
	// dialog, the suite's admin key is taken.
	signIn := func(id, secret string) {
		t.Helper()
		waitJS("the sign-in dialog", `document.querySelector('#signin-dialog').open`)
		step("enter an access key", chromedp.Evaluate[chromedp.Void](`document.querySelector('#signin-id').value = ""; document.querySelector('#signin-secret').value = ""`),
			chromedp.SendKeys("#signin-id", id), chromedp.SendKeys("#signin-secret", secret), chromedp.Click("#signin-ok"))
	}
	step("open the web UI", chromedp.Navigate(base+"/"), chromedp.WaitReady("#file-input"))
	signIn(suiteKeyID, "not-the-secret-of-this-key")
	waitJS("a refused sign-in says so", `!document.querySelector('#signin-error').hidden && document.querySelector('#signin-dialog').open`)
	shot("sign-in.png")
	signIn(suiteKeyID, suiteSecret)
	waitJS("signed in", `!document.querySelector('#signin-dialog').open && document.querySelector('#token-button').textContent.startsWith("Sign out")`)
	waitJS("the live event stream", `document.querySelector('#live').classList.contains('on')`)
	step("empty folder", chromedp.WaitVisible("#files-empty"))

	// Upload the first file with the page's own file picker; its content
	// is new, so it is queued and then processed.
	step("pick the first file", chromedp.SetUploadFiles("#file-input", []string{first}))
	waitJS("the first upload "+browserProcessed, uploadState("report.bin")+` === "`+browserProcessed+`"`)
	// The same bytes under another name are a duplicate.
	step("pick the second file", chromedp.SetUploadFiles("#file-input", []string{second}))
	waitJS("the second upload duplicate", uploadState("copy-of-report.bin")+` === "duplicate"`)
	waitJS("both files listed", `document.querySelectorAll('#files tr.file').length === 2`)
	shot("files.png")

	// Search by name: only the copy matches, and the page says how many
	// paths the search read.
	step("search for copy", chromedp.SendKeys("#search", "COPY"))
	waitJS("only the copy found", `(() => { const rows = [...document.querySelectorAll('#files tr.file')];
		return rows.length === 1 && rows[0].dataset.path === "copy-of-report.bin" &&
			document.querySelector('#search-progress').textContent === "2 paths searched"; })()`)
	step("clear the search", chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector('#search'); s.value = ""; s.dispatchEvent(new Event("input")); })()`))
	waitJS("both files listed again", `document.querySelectorAll('#files tr.file').length === 2`)

	// Download through the row's link, into a directory, and compare.
	progress := chromedp.Events(ctx, browser.DownloadProgress)
	step("download report.bin",
		func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			yes := true
			_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: &yes,
			})
			return chromedp.Void{}, err
		},
		chromedp.Click(`#files tr[data-path="report.bin"] a.download`),
	)
	deadline := time.AfterFunc(60*time.Second, cancel)
	var got []byte
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatal("download canceled")
		}
		if ev.State == browser.DownloadProgressStateCompleted {
			if got, err = os.ReadFile(filepath.Join(downloads, ev.GUID)); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if !deadline.Stop() {
		t.Fatal("download did not complete within 60s")
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("downloaded %d bytes, want the %d uploaded", len(got), len(data))
	}

	// The detail view: hash, chunks on three nodes each.
	step("open the detail view", chromedp.Click(`#files tr[data-path="report.bin"] td.name a`))
	waitJS("the detail view's hash", `document.querySelector('#file-sha256')?.textContent === "`+want+`"`)
	waitJS("chunks with three nodes each", `(() => { const rows = [...document.querySelectorAll('#chunks tbody tr')];
		return rows.length >= 2 && rows.every(r => r.querySelectorAll('.node-tag').length === 3); })()`)
	waitJS("the processing status", `document.querySelector('#processing-results .pill')?.dataset.state === "`+browserProcessed+`"`)
	shot("detail.png")

	// Delete the copy, through the row's button and the confirmation.
	step("back to the files", chromedp.Click(`#nav-files`), chromedp.WaitVisible(`#files tr[data-path="copy-of-report.bin"]`))
	step("delete the copy", chromedp.Click(`#files tr[data-path="copy-of-report.bin"] button.delete`), chromedp.WaitVisible("#confirm-ok"), chromedp.Click("#confirm-ok"))
	waitJS("the copy gone from the list", `!document.querySelector('#files tr[data-path="copy-of-report.bin"]') && !!document.querySelector('#files tr[data-path="report.bin"]')`)
	for path, code := range map[string]int{"copy-of-report.bin": http.StatusNotFound, "report.bin": http.StatusOK} {
		resp, err := headAs(base+"/api/v1/files/"+path, suiteKeyID, suiteSecret)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("after the delete, HEAD %s: %d, want %d", path, resp.StatusCode, code)
		}
	}

	// The cluster view lists three live nodes.
	step("open the cluster view", chromedp.Click("#nav-cluster"), chromedp.WaitVisible("#nodes"))
	waitJS("three live nodes", `document.querySelectorAll('#nodes tbody tr[data-alive="true"]').length === 3`)
	waitJS("the counters", `document.querySelector('#counter-nodes .value')?.textContent === "3 / 3"`)
	shot("cluster.png")

	// The same views on a phone's screen.
	step("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile), chromedp.Click("#nav-files"), chromedp.WaitVisible(`#files tr[data-path="report.bin"]`))
	shot("files-phone.png")
	step("phone cluster view", chromedp.Click("#nav-cluster"), chromedp.WaitVisible(`#nodes tbody tr`))
	shot("cluster-phone.png")

	// A separate dfs gateway, and a key that may only read report.bin (a
	// file at the root is its own bucket): its delete is refused and the
	// file stays; signed in again as the admin, the delete goes through.
	reader := decodeJSON[struct {
		ID     string `json:"access_key_id"`
		Secret string `json:"secret_access_key"`
	}](t, c.mustDFS(t, "key", "create", "--json", "reader"))
	c.mustDFS(t, "bucket", "allow", "--read", "report.bin", reader.ID)
	gwAddr := c.pickAddr(t)
	gw, err := startProc(filepath.Join(c.dir, "logs"), "gateway", "gateway", "--coordinator", c.coord, "--http", gwAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := gw.stop(); err != nil {
			t.Errorf("dfs gateway: %v\n%s", err, gw.logTail(20))
		}
	}()
	if err := gw.waitReady(); err != nil {
		t.Fatalf("%v\n%s", err, gw.logTail(20))
	}
	step("desktop viewport", chromedp.EmulateViewport(1280, 900))
	step("open the second gateway", chromedp.Navigate("http://"+gwAddr+"/#/files/"))
	signIn(reader.ID, reader.Secret)
	step("the reader sees report.bin", chromedp.WaitVisible(`#files tr[data-path="report.bin"]`))
	// The list is drawn again when the event stream (re)opens: click in
	// the page, on whatever row is there then.
	clickDelete := chromedp.Evaluate[chromedp.Void](`document.querySelector('#files tr[data-path="report.bin"] button.delete').click()`)
	waitJS("the reader's event stream", `document.querySelector('#live').classList.contains('on')`)
	step("the reader deletes", clickDelete, chromedp.WaitVisible("#confirm-ok"), chromedp.Click("#confirm-ok"))
	waitJS("the refusal shown", `[...document.querySelectorAll('.toast.error')].some(e => e.textContent.includes("may not write"))`)
	if resp, err := headAs(base+"/api/v1/files/report.bin", suiteKeyID, suiteSecret); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after the reader's delete, HEAD report.bin: %v %v, want 200", resp, err)
	}
	step("sign out", chromedp.Click("#token-button"))
	waitJS("signed out", `document.querySelector('#token-button').textContent === "Sign in"`)
	step("sign in again", chromedp.Click("#token-button"))
	signIn(suiteKeyID, suiteSecret)
	step("the admin sees report.bin", chromedp.WaitVisible(`#files tr[data-path="report.bin"]`))
	waitJS("the admin's event stream", `document.querySelector('#live').classList.contains('on')`)
	step("the admin deletes", clickDelete, chromedp.WaitVisible("#confirm-ok"), chromedp.Click("#confirm-ok"))
	waitJS("report.bin deleted", `!document.querySelector('#files tr[data-path="report.bin"]')`)
	resp, err := headAs(base+"/api/v1/files/report.bin", suiteKeyID, suiteSecret)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("after the admin's delete, HEAD report.bin: %d, want 404", resp.StatusCode)
	}

	if t.Failed() {
		return
	}
	for _, name := range []string{"sign-in.png", "files.png", "detail.png", "cluster.png", "files-phone.png", "cluster-phone.png"} {
		if fi, err := os.Stat(filepath.Join(art, name)); err != nil || fi.Size() == 0 {
			t.Errorf("screenshot %s: %v", name, errors.Join(err, fmt.Errorf("empty")))
		}
	}
}

// headAs sends a HEAD request with an access key (HTTP basic
// authentication).
func headAs(url, id, secret string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodHead, url, nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}
