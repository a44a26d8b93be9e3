package sse

import (
	"testing"
	"unsafe"
)

func TestPrintSizes(t *testing.T) {
	t.Logf("client %d, Conn %d, ownedConn %d, group %d", unsafe.Sizeof(client{}), unsafe.Sizeof(Conn{}), unsafe.Sizeof(ownedConn{}), unsafe.Sizeof(group{}))
}
