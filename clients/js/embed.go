// Package jsclient embeds the JavaScript client (src/) and the demo page
// (demo/) so hubd can serve them: DemoHandler serves the page, and the
// client module beside it as client.js.
package jsclient

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed src/index.js demo/index.html demo/demo.js
var files embed.FS

// DemoHandler serves the demo page at its root ("index.html", "demo.js")
// and the client module as "client.js". Mount it with http.StripPrefix.
func DemoHandler() http.Handler {
	demo, _ := fs.Sub(files, "demo")
	pages := http.FileServerFS(demo)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		if r.URL.Path == "client.js" || r.URL.Path == "/client.js" {
			b, _ := files.ReadFile("src/index.js")
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			_, _ = w.Write(b)
			return
		}
		pages.ServeHTTP(w, r)
	})
}
