module github.com/coregx/stream

go 1.26
