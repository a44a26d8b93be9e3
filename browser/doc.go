// Package browser holds end-to-end tests that run our server against a
// real browser's EventSource (headless Chromium). It is a module of its
// own so that the core module's tests need no browser.
//
// The tests need Chromium: on Debian, apt-get install -y chromium. Set
// CHROMIUM to use another binary. Without it they fail, saying so.
package browser
