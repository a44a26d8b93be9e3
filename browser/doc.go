// Package browser holds end-to-end tests that run our server against a
// real browser's EventSource (headless Chromium), and the example pages
// (examples/quickstart, chat, dashboard, replay, filtered) through
// chromedp: each test checks what the page shows once events arrive and
// saves screenshots at desktop and phone widths in its artifact
// directory (go test -artifacts -outputdir DIR keeps them). A failing
// check prints the text the page showed. It is a module of its own so
// that the core module's tests need no browser.
//
// The tests need Chromium: on Debian, apt-get install -y chromium. Set
// CHROMIUM to use another binary. Without it they fail, saying so.
package browser
