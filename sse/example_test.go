package sse_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/coregx/stream/sse"
)

func ExampleNewEvent() {
	event := sse.NewEvent("Hello, World!").
		WithType("greeting").
		WithID("msg-1").
		WithRetry(3000)
	fmt.Print(event)
	// Output:
	// event: greeting
	// id: msg-1
	// retry: 3000
	// data: Hello, World!
}

func ExampleNewEvent_multiline() {
	fmt.Print(sse.NewEvent("line1\nline2\r\nline3"))
	// Output:
	// data: line1
	// data: line2
	// data: line3
}

func ExampleComment() {
	fmt.Printf("%q\n", sse.Comment("keep-alive"))
	// Output: ": keep-alive\n\n"
}

func ExampleConn_Send() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := sse.Upgrade(w, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		conn.Send(sse.NewEvent("Order #123 shipped").WithType("notification").WithID("notif-456"))
		conn.SendData("Hello, World!")
		conn.SendJSON(map[string]string{"name": "Alice", "status": "online"})
		// A line break in an ID would inject fields: the event is refused.
		err = conn.Send(sse.NewEvent("x").WithID("1\nevent: admin"))
		fmt.Println(err)
	}))
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Header.Get("Content-Type"))
	fmt.Print(string(body))
	// Output:
	// sse: invalid event: event id contains '\n' at byte 1
	// text/event-stream
	// : connected
	//
	// event: notification
	// id: notif-456
	// data: Order #123 shipped
	//
	// data: Hello, World!
	//
	// data: {"name":"Alice","status":"online"}
}

func ExampleHub() {
	type Message struct {
		User string `json:"user"`
		Text string `json:"text"`
	}
	hub := sse.NewHub[Message]()
	go hub.Run() // optional: the hub works without it
	defer hub.Close()

	// A Hub is an http.Handler; a handler may also Upgrade and Register.
	srv := httptest.NewServer(hub)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	opening, _ := br.ReadString('\n')
	br.ReadString('\n')
	fmt.Printf("%q, clients: %d\n", opening, hub.Clients())

	hub.Broadcast(Message{User: "Alice", Text: "Hi!"})
	event, _ := br.ReadString('\n')
	fmt.Print(event)
	// Output:
	// ": connected\n", clients: 1
	// data: {"user":"Alice","text":"Hi!"}
}

func ExampleHub_events() {
	// A Hub[*sse.Event] sends each event's own type, id and retry.
	hub := sse.NewHub[*sse.Event]()
	defer hub.Close()
	srv := httptest.NewServer(hub)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()

	hub.Broadcast(sse.NewEvent("New order!").WithType("order").WithID("evt-1"))
	for ev, err := range sse.Read(resp.Body) {
		if err != nil {
			panic(err)
		}
		fmt.Printf("type=%s id=%s data=%s\n", ev.Type, ev.ID, ev.Data)
		break
	}
	// Output:
	// type=order id=evt-1 data=New order!
}
