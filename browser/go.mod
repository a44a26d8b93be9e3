module github.com/coregx/stream/browser

go 1.26

require github.com/coregx/stream v0.0.0

replace github.com/coregx/stream => ../
