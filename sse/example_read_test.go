package sse_test

import (
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/coregx/stream/sse"
)

func ExampleRead() {
	stream := "event: greeting\n" +
		"id: 1\n" +
		"data: Hello,\n" +
		"data: World!\n" +
		"\n" +
		": keep-alive\n" +
		"\n" +
		"data: no event field, id kept\n" +
		"\n" +
		"data: unfinished events are dropped\n"
	for ev, err := range sse.Read(strings.NewReader(stream)) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("type=%s id=%s data=%q\n", ev.Type, ev.ID, ev.Data)
	}
	// Output:
	// type=greeting id=1 data="Hello,\nWorld!"
	// type=message id=1 data="no event field, id kept"
}

func ExampleReader() {
	stream := "retry: 5000\r\n" +
		": joined\r\n" +
		"data: {\"n\":1}\r\n" +
		"\r\n" +
		"id: 7\r\n" +
		"\r\n"
	rd := sse.NewReader(strings.NewReader(stream))
	rd.MaxEventSize = 1 << 20
	rd.OnComment = func(text string) { fmt.Println("comment:", text) }
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("event: %s %s retry=%d\n", ev.Type, ev.Data, ev.Retry)
	}
	retry, _ := rd.Retry()
	fmt.Println("last event ID:", rd.LastEventID())
	fmt.Println("reconnection time:", retry)
	// Output:
	// comment: joined
	// event: message {"n":1} retry=5000
	// last event ID: 7
	// reconnection time: 5s
}
