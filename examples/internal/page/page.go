// Package page holds what the example pages share: a stylesheet, a
// favicon and a script that shows the state of an EventSource. They are
// embedded in the programs, so the pages load nothing from elsewhere.
package page

import (
	"embed"
	"net/http"
)

//go:embed style.css favicon.svg status.js
var assets embed.FS

// Register adds the shared files to mux: GET /style.css, /favicon.svg and
// /status.js.
func Register(mux *http.ServeMux) {
	files := http.FileServerFS(assets)
	for _, name := range []string{"style.css", "favicon.svg", "status.js"} {
		mux.Handle("GET /"+name, files)
	}
}

// HTML returns a handler that serves doc as an HTML page.
func HTML(doc []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(doc)
	}
}
