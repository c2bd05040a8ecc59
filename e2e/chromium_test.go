package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/tokend/tokend/internal/testutil"
)

// Chromium is a real browser for the tests: Debian's headless Chromium
// driven over the DevTools protocol by chromedp. Unlike the cookie-jar
// Browser it runs the pages as a person's browser does: it renders them,
// keeps cookies by its own rules (SameSite, HttpOnly, per host), follows
// meta refreshes, and is typed into and clicked.
type Chromium struct {
	t   testing.TB
	ctx context.Context
	// Shots is where screenshots are saved: $E2E_ARTIFACTS/TEST when that is
	// set (a CI keeps them), else a directory of the test's own.
	Shots string
}

// Viewport is the size of every page the tests render, in CSS pixels (the
// device scale factor is 1, so a screenshot has exactly this size).
const viewportW, viewportH = 960, 640

// chromiumPath finds Debian's chromium. Its absence fails the test with
// what to install: the browser tests run in `make test` and CI.
func chromiumPath(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("e2e: chromium is not installed: the browser tests drive Debian's headless Chromium; " +
		"run `make test` or scripts/test-deps (apt-get install --no-install-recommends chromium xdg-utils) first")
	return ""
}

// StartChromium starts a headless Chromium with a new empty profile (a
// fresh --user-data-dir that chromedp makes, and removes with the browser's
// leftover processes); it is stopped when the test ends. The flags keep it
// quiet on a machine whose only network is loopback: without the
// background-networking ones its connections to Google's services are
// refused and slow it down.
func StartChromium(t testing.TB) *Chromium {
	t.Helper()
	exe := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(viewportW, viewportH),
	}
	output := &testutil.SyncBuffer{}
	opts = append(opts, chromedp.CombinedOutput(output))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(func(f string, a ...any) {
		// chromedp reports protocol events it cannot decode here; they
		// are noise unless a test fails.
		t.Logf("chromium: "+f, a...)
	}))
	c := &Chromium{t: t, ctx: ctx}
	if dir := os.Getenv("E2E_ARTIFACTS"); dir != "" {
		c.Shots = filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
		if err := os.MkdirAll(c.Shots, 0o755); err != nil {
			t.Fatal(err)
		}
	} else {
		c.Shots = t.TempDir()
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium output:\n%s", output.String())
		}
	})
	// The first action starts the browser. It takes no timeout of its own
	// (that would bound the browser's whole life): a watchdog kills a
	// browser that does not start.
	started := time.Now()
	watchdog := time.AfterFunc(time.Minute, cancelAlloc)
	err := chromedp.Do(ctx, chromedp.EmulateViewport(viewportW, viewportH))
	watchdog.Stop()
	if err != nil {
		t.Fatalf("e2e: starting %s: %v\n%s", exe, err, output.String())
	}
	t.Logf("chromium started in %v", time.Since(started).Round(time.Millisecond))
	return c
}

// do runs actions with a deadline, failing the test with what was being
// done and where the browser is.
func (c *Chromium) do(what string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		c.t.Fatalf("e2e: chromium: %s: %v (at %s)", what, err, c.Location())
	}
}

// Navigate loads rawURL and waits for the load event of where it ends,
// redirects included.
func (c *Chromium) Navigate(rawURL string) {
	c.t.Helper()
	c.do("navigate to "+rawURL, 20*time.Second, chromedp.Navigate(rawURL))
}

// Location returns the URL of the page shown ("" if it cannot be read).
func (c *Chromium) Location() string {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`))
	if err != nil {
		return ""
	}
	return loc
}

// WaitPage waits until the page shown is loaded and the JavaScript
// expression cond is true on it. It survives navigations under way (an
// evaluation in a page being replaced is tried again).
func (c *Chromium) WaitPage(what, cond string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	expr := fmt.Sprintf(`document.readyState === "complete" && !!(%s)`, cond)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if c.ctx.Err() != nil {
			c.t.Fatalf("e2e: chromium: %s: the browser is gone: %v", what, c.ctx.Err())
		}
		lastErr = err
		if time.Now().After(deadline) {
			c.t.Fatalf("e2e: chromium: %s: not within %v (last error %v); at %s showing:\n%s",
				what, timeout, lastErr, c.Location(), c.Text("body"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Text returns the rendered text (innerText: what a person sees, not the
// markup) of the first element matching the CSS selector, "" if none.
func (c *Chromium) Text(sel string) string {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		fmt.Sprintf(`(document.querySelector(%q) || {innerText: ""}).innerText`, sel)))
	if err != nil {
		return ""
	}
	return s
}

// Type focuses the element with id and types s into it, key by key.
func (c *Chromium) Type(id, s string) {
	c.t.Helper()
	c.do("type into #"+id, 10*time.Second, chromedp.SendKeys(chromedp.ID(id), s))
}

// Click clicks the element with id with the mouse, at its centre.
func (c *Chromium) Click(id string) {
	c.t.Helper()
	c.do("click #"+id, 10*time.Second, chromedp.Click(chromedp.ID(id), chromedp.NodeVisible))
}

// Cookies returns the cookies the browser holds for rawURL, HttpOnly ones
// included (which no page script can see).
func (c *Chromium) Cookies(rawURL string) []*network.Cookie {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	res, err := chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{rawURL}})
	})
	if err != nil {
		c.t.Fatalf("e2e: chromium: cookies of %s: %v", rawURL, err)
	}
	return res.Cookies
}

// Rect is an element's box on the page, in CSS pixels from the viewport's
// top left corner.
type Rect struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
	W float64 `json:"w"`
	H float64 `json:"h"`
}

// Box returns the bounding box of the first element matching sel.
func (c *Chromium) Box(sel string) Rect {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	r, err := chromedp.Run(ctx, chromedp.Evaluate[Rect](fmt.Sprintf(
		`(() => { const r = document.querySelector(%q).getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; })()`, sel)))
	if err != nil {
		c.t.Fatalf("e2e: chromium: box of %s: %v", sel, err)
	}
	return r
}

// Screenshot captures the viewport as PNG, saves it as Shots/NAME.png and
// checks that it is the rendered page: a PNG of the viewport's size, not
// blank, with the page's background around the text, and rendered ink
// (pixels far from the background) inside the box of each element in
// inked, where the DOM says that text is. It returns the decoded image.
func (c *Chromium) Screenshot(name string, inked ...string) image.Image {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	b, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		c.t.Fatalf("e2e: chromium: screenshot %s: %v", name, err)
	}
	path := filepath.Join(c.Shots, name+".png")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		c.t.Fatal(err)
	}
	c.t.Logf("screenshot %s (%d bytes)", path, len(b))
	img, err := checkScreenshot(b)
	if err != nil {
		c.t.Fatalf("e2e: screenshot %s: %v", path, err)
	}
	bg, _ := background(img)
	for _, sel := range inked {
		r := c.Box(sel)
		if r.W < 1 || r.H < 1 {
			c.t.Fatalf("e2e: screenshot %s: %s has an empty box %+v", path, sel, r)
		}
		if n := ink(img, bg, r); n < 20 {
			c.t.Errorf("e2e: screenshot %s: only %d inked pixels where %s (%q) is rendered, %+v", path, n, sel, c.Text(sel), r)
		}
	}
	return img
}

// checkScreenshot decodes a screenshot and checks it is a real picture of
// a page: a PNG, exactly the viewport's size, whose most common colour
// (the background) covers most of it but not all of it, and where some
// pixels are far from it (text, not a faint artefact).
func checkScreenshot(b []byte) (image.Image, error) {
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		return nil, errors.New("not a PNG (no PNG signature)")
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("PNG does not decode: %w", err)
	}
	if sz := img.Bounds().Size(); sz.X != viewportW || sz.Y != viewportH {
		return nil, fmt.Errorf("size %v, want the viewport's %dx%d", sz, viewportW, viewportH)
	}
	bg, share := background(img)
	total := viewportW * viewportH
	if share == total {
		return nil, fmt.Errorf("blank: every pixel is %v", bg)
	}
	if share < total/2 {
		return nil, fmt.Errorf("the background %v covers only %d of %d pixels: not a page of text", bg, share, total)
	}
	if n := ink(img, bg, Rect{0, 0, viewportW, viewportH}); n < 200 {
		return nil, fmt.Errorf("only %d pixels stand out from the background %v: nothing legible rendered", n, bg)
	}
	return img, nil
}

// background returns the most common colour of img and how many pixels
// have it.
func background(img image.Image) (color.RGBA, int) {
	counts := map[color.RGBA]int{}
	bnd := img.Bounds()
	for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
		for x := bnd.Min.X; x < bnd.Max.X; x++ {
			counts[rgba(img.At(x, y))]++
		}
	}
	var best color.RGBA
	n := -1
	for c, k := range counts {
		if k > n {
			best, n = c, k
		}
	}
	return best, n
}

func rgba(c color.Color) color.RGBA {
	r, g, b, a := c.RGBA()
	return color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), uint8(a >> 8)}
}

// ink counts the pixels inside r that differ from the background bg
// by more than a third of the range in some channel: glyphs, not
// anti-aliasing fringes or compression noise.
func ink(img image.Image, bg color.RGBA, r Rect) int {
	bnd := img.Bounds()
	x0, y0 := max(bnd.Min.X, int(math.Floor(r.X))), max(bnd.Min.Y, int(math.Floor(r.Y)))
	x1, y1 := min(bnd.Max.X, int(math.Ceil(r.X+r.W))), min(bnd.Max.Y, int(math.Ceil(r.Y+r.H)))
	n := 0
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			c := rgba(img.At(x, y))
			if far(c.R, bg.R) || far(c.G, bg.G) || far(c.B, bg.B) {
				n++
			}
		}
	}
	return n
}

func far(a, b uint8) bool {
	d := int(a) - int(b)
	return d > 85 || d < -85
}

// TestBrowserScreenshotCheck: the screenshot check refuses what is not a
// rendered page (bytes that are not a PNG, a PNG of another size, a real
// screenshot of a blank page, text where the DOM says there is none) and
// accepts a real screenshot of a page of text.
func TestBrowserScreenshotCheck(t *testing.T) {
	t.Parallel()
	if _, err := checkScreenshot([]byte("<html>not a picture</html>")); err == nil || !strings.Contains(err.Error(), "not a PNG") {
		t.Errorf("HTML bytes: %v, want not a PNG", err)
	}
	var small bytes.Buffer
	if err := png.Encode(&small, image.NewRGBA(image.Rect(0, 0, 10, 10))); err != nil {
		t.Fatal(err)
	}
	if _, err := checkScreenshot(small.Bytes()); err == nil || !strings.Contains(err.Error(), "size") {
		t.Errorf("a 10x10 PNG: %v, want a size error", err)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if r.URL.Path == "/blank" {
			fmt.Fprint(w, `<!doctype html><title>blank</title><body><p id="empty"></p></body>`)
			return
		}
		fmt.Fprint(w, `<!doctype html><title>text</title><body style="font-family:sans-serif;margin:4em">
<h1>Heading</h1><p>Some text a person can read.</p><div id="gap" style="height:100px"></div></body>`)
	}))
	defer srv.Close()
	b := StartChromium(t)
	grab := func() []byte {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		return png
	}
	b.Navigate(srv.URL + "/blank")
	if _, err := checkScreenshot(grab()); err == nil || !strings.Contains(err.Error(), "blank") {
		t.Errorf("a blank page: %v, want blank", err)
	}
	b.Navigate(srv.URL + "/text")
	img, err := checkScreenshot(grab())
	if err != nil {
		t.Fatalf("a page of text: %v", err)
	}
	bg, _ := background(img)
	if n := ink(img, bg, b.Box("h1")); n < 20 {
		t.Errorf("%d inked pixels in the heading's box", n)
	}
	if n := ink(img, bg, b.Box("#gap")); n != 0 {
		t.Errorf("%d inked pixels in an empty box", n)
	}
}
