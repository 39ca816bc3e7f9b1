//go:build linux || darwin

package e2e

import (
	"bufio"
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
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/page"
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

	br := newBrowser(t, chromium, art)
	ctx, cancel := br.ctx, br.cancel
	step, shot, waitJS := br.step, br.shot, br.waitJS
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
	waitJS("results with human labels, raw keys as tooltips", `(() => {
		const dts = [...document.querySelectorAll('#processing-results dt')];
		const sha = dts.find(d => d.title === "verify.sha256");
		return sha && sha.textContent === "SHA-256 (verified)" && sha.nextElementSibling.textContent === "`+want+`" &&
			!dts.some(d => /^(verify|media)\./.test(d.textContent)); })()`)
	waitJS("the chunks counted in words", `/^[2-9] chunks$/.test(document.querySelector('#chunk-count').textContent)`)
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

	// The deleted copy's page says it is gone and offers its earlier
	// version (dfs server keeps them by default): restore it.
	step("open the deleted copy's page", chromedp.Navigate(base+"/#/file/copy-of-report.bin"), chromedp.WaitVisible("#file-problem"))
	waitJS("its earlier version offered", `!document.querySelector('#versions-card').hidden &&
		document.querySelectorAll('#versions tbody tr').length === 2 && !!document.querySelector('#versions button.restore')`)
	shot("versions.png")
	step("restore it", chromedp.Click("#versions button.restore"))
	waitJS("the copy back", `document.querySelector('#file-problem').hidden && document.querySelector('#file-sha256')?.textContent.length === 64 &&
		document.querySelectorAll('#versions tbody tr').length === 3`)
	if resp, err := headAs(base+"/api/v1/files/copy-of-report.bin", suiteKeyID, suiteSecret); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after the restore, HEAD copy-of-report.bin: %v %v, want 200", resp, err)
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
	for _, name := range []string{"sign-in.png", "files.png", "detail.png", "versions.png", "cluster.png", "files-phone.png", "cluster-phone.png"} {
		if fi, err := os.Stat(filepath.Join(art, name)); err != nil || fi.Size() == 0 {
			t.Errorf("screenshot %s: %v", name, errors.Join(err, fmt.Errorf("empty")))
		}
	}
}

// tab is one tab of a headless Chromium, with the test's steps on it.
type tab struct {
	t      *testing.T
	ctx    context.Context
	cancel context.CancelFunc
	art    string
}

// newBrowser starts Chromium and returns its first tab. The browser ends
// with the test.
func newBrowser(t *testing.T, chromium, art string) *tab {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	// The browser lives as long as the context of its first action: start
	// it on ctx itself, so that the steps' timeouts do not end it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &tab{t: t, ctx: ctx, cancel: cancel, art: art}
}

// newTab opens another tab of the same browser (sharing its cookies).
func (b *tab) newTab() *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("open a tab: %v", err)
	}
	return &tab{t: b.t, ctx: ctx, cancel: cancel, art: b.art}
}

func (b *tab) step(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	sctx, scancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer scancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		// A page that never loaded has no body to show: do not wait for it.
		dctx, dcancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer dcancel()
		text, _ := chromedp.Run(dctx, chromedp.Evaluate[string](`document.querySelector("#live").innerText + "\n" + document.querySelector("main").innerText`))
		b.t.Fatalf("%s: %v\npage:\n%.4000s", what, err, text)
	}
}

func (b *tab) shot(name string) {
	b.t.Helper()
	img, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.art, name), img, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// waitJS polls a JavaScript condition in the page until it holds, for a
// minute. It polls by plain evaluations rather than chromedp.Poll, which,
// after a page comes back from the back-forward cache, may wait for the
// page's context under an id that is gone.
func (b *tab) waitJS(what, cond string) {
	b.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ectx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		ok, err := chromedp.Run(ectx, chromedp.Evaluate[bool](cond))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			dctx, dcancel := context.WithTimeout(b.ctx, 5*time.Second)
			defer dcancel()
			text, _ := chromedp.Run(dctx, chromedp.Evaluate[string](`document.querySelector("#live").innerText + "\n" + document.querySelector("main").innerText`))
			b.t.Fatalf("%s: not within a minute (last: %v, %v)\npage:\n%.4000s", what, ok, err, text)
		}
		time.Sleep(100 * time.Millisecond)
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

// TestBrowserTabs opens the web UI in eight tabs of one browser, more than
// the six connections a browser opens to a host over HTTP/1.1: every tab
// loads and is live (each shows a file uploaded afterwards, which only
// the event stream tells it of), and the gateway holds one event stream
// for them all, however often a tab navigates away and back. A missing
// file's page says so, with Download and Delete disabled. With the cluster
// stopped under a running dfs gateway, the header says the cluster is
// unreachable, the listing stays shown and is marked stale, and no error
// shows the cluster's transport wording.
func TestBrowserTabs(t *testing.T) {
	skipShort(t)
	chromium := chromiumPath(t)
	art := artifactDir(t)
	c := newCluster(t, clusterSpec{topo: topoServer})
	// A gateway of its own, which stays up when the cluster is stopped.
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
	base := "http://" + gwAddr

	streams := func() int {
		t.Helper()
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatalf("metrics: %v", err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "dfs_gateway_event_streams "); ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("dfs_gateway_event_streams %q", v)
				}
				return n
			}
		}
		t.Fatal("metrics: no dfs_gateway_event_streams")
		return 0
	}
	// A stream a page dropped may take a moment to end at the gateway; one
	// that stays is a leak.
	streamsAre := func(want int, when string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		n := streams()
		for ; n != want && time.Now().Before(deadline); n = streams() {
			time.Sleep(100 * time.Millisecond)
		}
		if n != want {
			t.Fatalf("%s: the gateway holds %d event streams, want %d", when, n, want)
		}
	}
	oneStream := func(when string) { t.Helper(); streamsAre(1, when) }

	first := newBrowser(t, chromium, art)
	first.step("open the web UI", chromedp.Navigate(base+"/#/files/"), chromedp.WaitReady("#file-input"))
	first.waitJS("the sign-in dialog", `document.querySelector('#signin-dialog').open`)
	first.step("sign in", chromedp.SendKeys("#signin-id", suiteKeyID), chromedp.SendKeys("#signin-secret", suiteSecret), chromedp.Click("#signin-ok"))
	live := `document.querySelector('#live').classList.contains('on') && document.querySelector('#live').dataset.state === "live"`
	loaded := `!document.querySelector('#files-empty').hidden || document.querySelectorAll('#files tbody tr').length > 0`
	first.waitJS("the first tab live", live+` && (`+loaded+`)`)

	const n = 8
	tabs := []*tab{first}
	for i := 1; i < n; i++ {
		tb := first.newTab()
		tabs = append(tabs, tb)
		tb.step(fmt.Sprintf("open tab %d", i+1), chromedp.Navigate(base+"/#/files/"), chromedp.WaitReady("#file-input"))
	}
	for i, tb := range tabs {
		tb.waitJS(fmt.Sprintf("tab %d live with its list, through the SharedWorker", i+1), live+` && (`+loaded+`) && stream.mode === "worker"`)
	}
	oneStream("eight tabs open")

	// A file stored by another client shows in every tab: each heard of
	// it on the stream (nothing else reloads the list).
	put := func(path, body string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, base+"/api/v1/files/"+path, strings.NewReader(body))
		req.SetBasicAuth(suiteKeyID, suiteSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT %s: %d", path, resp.StatusCode)
		}
	}
	put("seen-by-all.txt", "every tab shows this")
	for i, tb := range tabs {
		tb.waitJS(fmt.Sprintf("tab %d shows the new file", i+1), `!!document.querySelector('#files tr[data-path="seen-by-all.txt"]')`)
	}
	tabs[n-1].shot("tab-8.png")

	// Away and back, with the other tabs open and then alone: the stream
	// count stays one.
	roundTrips := func(who string) {
		t.Helper()
		for i := range 5 {
			first.step(fmt.Sprintf("%s: away %d", who, i+1), chromedp.Navigate("about:blank"))
			first.step(fmt.Sprintf("%s: back %d", who, i+1), chromedp.Navigate(base+"/#/files/"), chromedp.WaitReady("#file-input"))
			first.waitJS(fmt.Sprintf("%s: live again after %d round trips", who, i+1), live)
		}
		oneStream(who + ": after five round trips")
	}
	roundTrips("with seven other tabs")
	for _, tb := range tabs[1:] {
		tb.cancel()
	}
	roundTrips("alone")
	// Back through the browser's history, which may restore the page from
	// its back-forward cache (it left the stream on pagehide and joins it
	// again on pageshow) or load it anew.
	for i := range 3 {
		first.step(fmt.Sprintf("away %d, to come back through history", i+1), chromedp.Navigate("about:blank"))
		// history.back() rather than chromedp.NavigateBack, which waits
		// for a load event that a page restored from the back-forward
		// cache never fires.
		first.step(fmt.Sprintf("history back %d", i+1), chromedp.Evaluate[chromedp.Void](`setTimeout(() => history.back(), 0)`))
		// The back navigation may still be under way: a page's context
		// can vanish under an evaluation until it is.
		// The same goes for a page restored from the cache, whose
		// context chromedp may look for under its old id: poll by plain
		// evaluations until the page is the web UI, loaded and live.
		first.waitJS(fmt.Sprintf("history back %d: the web UI comes back live", i+1),
			`location.href.startsWith(`+strconv.Quote(base)+`) && document.readyState === "complete" && `+live)
	}
	oneStream("after three returns through history")
	put("seen-after.txt", "still live")
	first.waitJS("the tab still hears of new files", `!!document.querySelector('#files tr[data-path="seen-after.txt"]')`)
	// chromedp loses track of a page restored from the cache (its
	// selectors and navigations wait forever): the steps that follow run
	// in a fresh tab, and this one stays open (the browser lives with it).
	first = first.newTab()
	first.step("open the web UI in a fresh tab", chromedp.Navigate(base+"/#/files/"), chromedp.WaitReady("#file-input"))
	first.waitJS("live again", live)
	oneStream("two tabs")

	// Where there is no SharedWorker, one tab, elected with a Web Lock,
	// holds a stream for the others; when it goes, another takes over.
	var plain []*tab
	for i := range 3 {
		tb := first.newTab()
		plain = append(plain, tb)
		tb.step(fmt.Sprintf("a tab without SharedWorker %d", i+1), func(ctx context.Context, _ *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: "delete window.SharedWorker"})
			return chromedp.Void{}, err
		}, chromedp.Navigate(base+"/#/files/"), chromedp.WaitReady("#file-input"))
		tb.waitJS(fmt.Sprintf("tab without SharedWorker %d live", i+1), live+` && ["leader", "follower"].includes(stream.mode)`)
	}
	// The worker's stream for the first tab, and the leader's.
	streamsAre(2, "three tabs without SharedWorker")
	leader := func() int {
		t.Helper()
		at := -1
		for i, tb := range plain {
			if tb == nil {
				continue
			}
			mode, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`stream.mode`))
			if err != nil {
				t.Fatal(err)
			}
			if mode == "leader" {
				if at >= 0 {
					t.Fatalf("tabs %d and %d both lead", at+1, i+1)
				}
				at = i
			}
		}
		return at
	}
	seenByPlain := func(path string) {
		t.Helper()
		put(path, "for the tabs without SharedWorker")
		for i, tb := range plain {
			if tb != nil {
				tb.waitJS(fmt.Sprintf("tab without SharedWorker %d shows %s", i+1, path), `!!document.querySelector('#files tr[data-path="`+path+`"]')`)
			}
		}
	}
	seenByPlain("seen-by-followers.txt")
	gone := leader()
	if gone < 0 {
		t.Fatal("no tab without SharedWorker leads")
	}
	plain[gone].cancel()
	plain[gone] = nil
	deadline := time.Now().Add(30 * time.Second)
	for leader() < 0 {
		if time.Now().After(deadline) {
			t.Fatal("no tab took the lead when the leader closed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	streamsAre(2, "the leader closed, another leads")
	seenByPlain("seen-after-the-leader-left.txt")
	for _, tb := range plain {
		if tb != nil {
			tb.cancel()
		}
	}
	oneStream("the tabs without SharedWorker closed")

	// A file's page in words: a one-chunk file says "1 chunk"; an MP4
	// stored with curl -T's request (no Content-Type, no extension) is
	// typed video/mp4, and its processing results have human labels, the
	// raw keys in their tooltips.
	first.step("open a one-chunk file", chromedp.Evaluate[chromedp.Void](`location.hash = "#/file/seen-by-all.txt"`))
	first.waitJS("one chunk, said so", `document.querySelector('#chunk-count').textContent === "1 chunk" &&
		[...document.querySelectorAll('#processing-results dt')].some(d => d.dataset.key === "verify.chunks" && d.nextElementSibling.textContent === "1 chunk")`)
	movie, err := os.ReadFile(filepath.Join("..", "..", "internal", "jobs", "testdata", "tiny.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	put("clip", string(movie))
	first.step("open the movie", chromedp.Evaluate[chromedp.Void](`location.hash = "#/file/clip"`))
	first.waitJS("the movie's results in words", `(() => {
		const rows = Object.fromEntries([...document.querySelectorAll('#processing-results dt')].map(d => [d.title, [d.textContent, d.nextElementSibling.textContent]]));
		const meta = [...document.querySelectorAll('#file-meta dt')].find(d => d.textContent === "Type");
		return meta && meta.nextElementSibling.textContent === "video/mp4" &&
			rows["verify.sha256"]?.[0] === "SHA-256 (verified)" &&
			rows["media.duration_seconds"]?.[0] === "Duration" && rows["media.duration_seconds"][1] === "0:02" &&
			rows["media.width, media.height"]?.[0] === "Resolution" && rows["media.width, media.height"][1] === "160 × 120" &&
			rows["media.video_codec"]?.[1] === "avc1" && rows["media.audio_codec"]?.[1] === "mp4a" &&
			rows["media.frame_rate"]?.[1] === "25 fps"; })()`)
	first.shot("movie.png")

	// A path that holds no file: its page says so, and offers neither
	// Download nor Delete.
	first.step("open a missing file", chromedp.Evaluate[chromedp.Void](`location.hash = "#/file/no/such-file.txt"`))
	first.waitJS("the missing file's page", `(() => {
		const p = document.querySelector('#file-problem'), dl = document.querySelector('#file-download');
		return !p.hidden && p.textContent.includes("does not exist") &&
			!dl.hasAttribute("href") && dl.getAttribute("aria-disabled") === "true" &&
			document.querySelector('#file-delete').disabled; })()`)
	first.shot("missing-file.png")

	// The cluster goes; the gateway stays.
	first.step("back to the files", chromedp.Evaluate[chromedp.Void](`location.hash = "#/files/"`))
	first.waitJS("the list", `!!document.querySelector('#files tr[data-path="seen-by-all.txt"]') && `+live)
	for _, err := range c.stop() {
		t.Errorf("stopping the cluster: %v", err)
	}
	first.waitJS("the header says the cluster is unreachable", `(() => { const l = document.querySelector('#live');
		return l.dataset.state === "cluster-down" && l.textContent.includes("Cluster unreachable") && !l.classList.contains("on"); })()`)
	first.waitJS("the list kept and marked stale", `!!document.querySelector('#files tr[data-path="seen-by-all.txt"]') &&
		!document.querySelector('#files-stale').hidden && document.querySelector('#files-stale').textContent.includes("may be out of date")`)
	// A list read now fails: the page says why in its own words.
	step := first.step
	step("search while the cluster is down", chromedp.SendKeys("#search", "seen"))
	first.waitJS("the failed read said in words", `document.querySelector('#files-stale-text').textContent.includes("no coordinator answers")`)
	first.shot("cluster-down.png")
	page, err := chromedp.Run(first.ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}
	for _, raw := range []string{"rpc error", "desc =", "transport:", "connection refused", "dial tcp"} {
		if strings.Contains(page, raw) {
			t.Errorf("the page shows the cluster's transport wording %q:\n%s", raw, page)
		}
	}
	step("open the cluster view", chromedp.Click("#nav-cluster"))
	first.waitJS("the cluster view says when it last heard", `document.querySelector('#cluster-time').textContent.startsWith("Last heard from the cluster")`)
}
