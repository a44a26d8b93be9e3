package browser_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The example programs, built once for all the tests.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// exampleBin returns the path of the built example program name.
func exampleBin(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "sse-browser-examples-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator), "./examples/...")
		cmd.Dir = ".." // the repository root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./examples/...: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// example is a running example program.
type example struct {
	url    string // "http://127.0.0.1:PORT"
	cmd    *exec.Cmd
	exited chan struct{}
}

var listening = regexp.MustCompile(`listening on (http://\S+)`)

// startExample runs the example program name on a free loopback port and
// returns once it listens. It is killed when the test ends.
func startExample(t *testing.T, name string, args ...string) *example {
	t.Helper()
	cmd := exec.Command(exampleBin(t, name), append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ex := &example{cmd: cmd, exited: make(chan struct{})}
	addr := make(chan string, 1)
	var mu sync.Mutex
	var logs strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			mu.Lock()
			logs.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, out)
		cmd.Wait()
		close(ex.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-ex.exited
		if t.Failed() {
			mu.Lock()
			t.Logf("%s said:\n%s", name, logs.String())
			mu.Unlock()
		}
	})
	select {
	case ex.url = <-addr:
		return ex
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not start listening", name)
		return nil
	}
}

// post sends a POST to the example and fails the test unless it succeeds.
func (ex *example) post(t *testing.T, path string, form url.Values) {
	t.Helper()
	resp, err := http.PostForm(ex.url+path, form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("POST %s %v: %s: %s", path, form, resp.Status, body)
	}
}

// Viewports the pages are checked at.
var viewports = []struct {
	name          string
	width, height int64
}{
	{"desktop", 1200, 800},
	{"phone", 390, 844},
}

// tab is a page open in headless Chromium.
type tab struct {
	t    *testing.T
	ctx  context.Context
	name string // for screenshot files
}

// openTab opens url in a new headless Chromium of the given size.
func openTab(t *testing.T, url, name string, width, height int64) *tab {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(int(width), int(height)),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &tab{t: t, ctx: ctx, name: name}
	// The first action starts the browser, which lives as long as ctx:
	// no timeout on this one.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height), chromedp.Navigate(url)); err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
	return b
}

// wait waits up to 20 s until the JavaScript expression cond is true.
func (b *tab) wait(what, cond string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		b.fatalf("waiting for %s (%s): %v", what, cond, err)
	}
}

// text returns the value of a JavaScript expression as a string.
func (b *tab) text(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.fatalf("evaluating %s: %v", expr, err)
	}
	return s
}

// do runs page actions.
func (b *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fatalf("%v", err)
	}
}

// shown returns the text the page shows.
func (b *tab) shown() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		return fmt.Sprintf("(cannot read the page: %v)", err)
	}
	return s
}

// fatalf fails the test, showing what the page showed and saving a
// screenshot of it.
func (b *tab) fatalf(format string, args ...any) {
	b.t.Helper()
	b.t.Errorf(format, args...)
	b.t.Logf("the page showed:\n%s", b.shown())
	b.screenshot("failed")
	b.t.FailNow()
}

// errorf reports a failed check and what the page showed.
func (b *tab) errorf(format string, args ...any) {
	b.t.Helper()
	b.t.Errorf(format, args...)
	b.t.Logf("the page showed:\n%s", b.shown())
}

// screenshot saves the whole page as NAME-suffix.png in the test's
// artifact directory (kept with go test -artifacts).
func (b *tab) screenshot(suffix string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot: %v", err)
		return
	}
	path := filepath.Join(b.t.ArtifactDir(), b.name+"-"+suffix+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Errorf("saving screenshot: %v", err)
		return
	}
	b.t.Logf("screenshot: %s", path)
}

// live waits until the page's status badge says the stream is open.
func (b *tab) live() {
	b.t.Helper()
	b.wait("the stream to open", `document.getElementById('status').dataset.state === 'live'`)
}

// atEachViewport runs check in a subtest per viewport, on the page of
// the example ex named name, once its stream is open.
func atEachViewport(t *testing.T, ex *example, name string, check func(b *tab)) {
	for _, vp := range viewports {
		t.Run(vp.name, func(t *testing.T) {
			b := openTab(t, ex.url+"/", name+"-"+vp.name, vp.width, vp.height)
			b.live()
			check(b)
		})
	}
}

func TestQuickstartPage(t *testing.T) {
	ex := startExample(t, "quickstart", "-every", "100ms")
	atEachViewport(t, ex, "quickstart", func(b *tab) {
		b.wait("three pings", `+document.getElementById('count').textContent >= 3`)
		if got := b.text(`document.querySelector('#log li .mono').textContent`); got != "ping" {
			b.errorf("newest event: got %q, want %q", got, "ping")
		}
		if got := b.text(`document.getElementById('status').textContent`); got != "live" {
			b.errorf("status: got %q, want %q", got, "live")
		}
		b.screenshot("live")
	})
	// The server shuts down: the stream ends with a retry hint, and the
	// page shows that it is reconnecting.
	last := openTab(t, ex.url+"/", "quickstart-desktop", 1200, 800)
	last.wait("two pings", `+document.getElementById('count').textContent >= 2`)
	if err := ex.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	last.wait("the page to show the reconnect", `document.getElementById('status').dataset.state === 'reconnecting'`)
	if got := last.text(`document.getElementById('status').textContent`); !strings.HasPrefix(got, "reconnecting") {
		last.errorf("status: got %q, want reconnecting…", got)
	}
	last.screenshot("reconnecting")
}

func TestChatPage(t *testing.T) {
	ex := startExample(t, "chat")
	desk := openTab(t, ex.url+"/", "chat-desktop", 1200, 800)
	desk.live()
	phone := openTab(t, ex.url+"/", "chat-phone", 390, 844)
	phone.live()

	// Markup in a message is shown as text, never parsed.
	ex.post(t, "/send", url.Values{"user": {"mallory"}, "text": {"<i>not italic</i> <img src=x onerror=alert(1)>"}})
	// A message sent from the page reaches every page in the room.
	desk.do(chromedp.SetValue("#user", "alice"), chromedp.SetValue("#text", "hello from the page"), chromedp.Click("#send button"))
	for _, b := range []*tab{desk, phone} {
		b.wait("two messages", `document.querySelectorAll('#messages li').length === 2`)
		want := []string{"mallory <i>not italic</i> <img src=x onerror=alert(1)>", "alice hello from the page"}
		for i, w := range want {
			got := b.text(fmt.Sprintf(`[...document.querySelectorAll('#messages li')[%d].children].slice(1).map(e => e.textContent).join(' ')`, i))
			if got != w {
				b.errorf("message %d: got %q, want %q", i, got, w)
			}
		}
		if got := b.text(`String(document.querySelectorAll('#messages i, #messages img').length)`); got != "0" {
			b.errorf("%s elements made from message text, want none", got)
		}
		b.screenshot("messages")
	}
}

func TestDashboardPage(t *testing.T) {
	ex := startExample(t, "dashboard", "-every", "50ms")
	atEachViewport(t, ex, "dashboard", func(b *tab) {
		// A line of at least 20 points in each chart.
		for _, chart := range []string{"heap", "goroutines", "clients"} {
			b.wait(chart+" chart", fmt.Sprintf(`(document.querySelector('#chart-%s .line').getAttribute('d') || '').split('L').length >= 20`, chart))
		}
		heap := b.text(`document.querySelector('#chart-heap .figure').textContent`)
		if v, err := strconv.ParseFloat(strings.TrimSuffix(heap, "MiB"), 64); err != nil || v <= 0 || v > 1024 {
			b.errorf("heap figure: got %q, want a number of MiB", heap)
		}
		if got := b.text(`document.querySelector('#chart-heap .top').textContent`); !strings.HasSuffix(got, " MiB") {
			b.errorf("heap scale: got %q, want MiB", got)
		}
		// This tab's own stream is counted.
		if got := b.text(`document.querySelector('#chart-clients .figure').textContent`); got == "" || got == "0" || got == "–" {
			b.errorf("clients figure: got %q, want at least 1", got)
		}
		latest := b.text(`document.getElementById('latest').innerText`)
		for _, w := range []string{"Heap in use", "MiB", "Goroutines", "Garbage collections"} {
			if !strings.Contains(latest, w) {
				b.errorf("latest sample lacks %q:\n%s", w, latest)
			}
		}
		b.screenshot("charts")
	})
}

// TestReplayPage goes offline and back: the page resumes from the last ID
// it saw and shows every event once, with no gap.
func TestReplayPage(t *testing.T) {
	ex := startExample(t, "replay", "-every", "100ms")
	b := openTab(t, ex.url+"/", "replay-desktop", 1200, 800)
	b.live()
	b.wait("three events", `document.querySelectorAll('#log li').length >= 3`)
	b.do(chromedp.Click("#offline button"))
	b.wait("the page to come back", `document.getElementById('notice').textContent.startsWith('Back online')`)
	b.wait("more events", `document.querySelectorAll('#log li').length >= 15`)
	// The list holds the newest events first: IDs must go down by one.
	ids := b.text(`[...document.querySelectorAll('#log li .time')].map(e => e.textContent).join(' ')`)
	prev := 0
	for i, f := range strings.Fields(ids) {
		id, err := strconv.Atoi(strings.TrimPrefix(f, "#"))
		if err != nil || (i > 0 && id != prev-1) {
			b.errorf("event IDs shown: %s; want consecutive IDs, newest first", ids)
			break
		}
		prev = id
	}
	b.screenshot("resumed")
}

// TestFilteredPage checks that the page shows the entries of the level
// it picked and above, and changes when another level is picked.
func TestFilteredPage(t *testing.T) {
	ex := startExample(t, "filtered", "-every", "0")
	b := openTab(t, ex.url+"/", "filtered-phone", 390, 844)
	b.live()
	for _, l := range []string{"debug", "info", "warn", "error"} {
		ex.post(t, "/log", url.Values{"level": {l}, "msg": {l + " entry"}})
	}
	entries := `[...document.querySelectorAll('#log li')].map(li => li.children[1].textContent + ' ' + li.children[2].textContent).join(', ')`
	b.wait("three entries", `document.querySelectorAll('#log li').length === 3`)
	if got, want := b.text(entries), "error error entry, warn warn entry, info info entry"; got != want {
		b.errorf("at level info: got %q, want %q", got, want)
	}
	b.screenshot("info")

	b.do(chromedp.SetValue("#level", "error"))
	b.text(`document.getElementById('level').dispatchEvent(new Event('change')), ''`)
	b.live()
	for _, l := range []string{"warn", "error"} {
		ex.post(t, "/log", url.Values{"level": {l}, "msg": {"second " + l}})
	}
	b.wait("one entry", `document.querySelectorAll('#log li').length === 1`)
	if got, want := b.text(entries), "error second error"; got != want {
		b.errorf("at level error: got %q, want %q", got, want)
	}
	b.screenshot("error")
}
