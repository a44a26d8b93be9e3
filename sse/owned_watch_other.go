//go:build !linux

package sse

// ownedWatch: elsewhere each owned connection has a reader of its own
// (see the Linux version).
var ownedWatch connWatch

type connWatch struct{}

func (connWatch) watch(*Conn, *ownedConn) bool { return false }
func (connWatch) unwatch(*ownedConn)           {}
func (connWatch) awaitRoom(*ownedConn) bool    { return false }
