package fanout

import (
	"math/bits"
	"sync"
)

// Client queues are slices of shared encoded events. An idle client holds
// none: a writer hands its slice back once written, and broadcasts take
// slices from pools by size class, so steady fan-out allocates nothing
// per client and bursts leave no memory behind on every connection.

const (
	minQueueCap  = 8
	queueClasses = 20 // capacities 8 << 0 … 8 << 19
)

// queueBox carries a slice through a sync.Pool without allocating: boxes
// are pooled too. Pools drop what they hold across garbage collections,
// so the slices kept for reuse shrink when fan-out stops.
type queueBox struct{ q [][]byte }

var (
	queuePools [queueClasses]sync.Pool
	boxPool    sync.Pool
)

// queueClass returns the class whose capacity is the least power of two
// times minQueueCap that holds n entries.
func queueClass(n int) int {
	if n <= minQueueCap {
		return 0
	}
	return bits.Len(uint(n-1)) - bits.Len(uint(minQueueCap-1))
}

// getQueue returns an empty slice with room for at least n entries.
func getQueue(n int) [][]byte {
	k := queueClass(n)
	if k < queueClasses {
		if b, ok := queuePools[k].Get().(*queueBox); ok {
			q := b.q
			b.q = nil
			boxPool.Put(b)
			return q
		}
	}
	return make([][]byte, 0, minQueueCap<<k)
}

// putQueue hands q back for reuse; its entries must already be cleared.
func putQueue(q [][]byte) {
	c := cap(q)
	if c < minQueueCap || c&(c-1) != 0 {
		return // not one of ours
	}
	k := queueClass(c)
	if k >= queueClasses {
		return
	}
	b, _ := boxPool.Get().(*queueBox)
	if b == nil {
		b = new(queueBox)
	}
	b.q = q[:0]
	queuePools[k].Put(b)
}

// appendQueue appends msg to q, moving q to a larger pooled slice when it
// is full.
func appendQueue(q [][]byte, msg []byte) [][]byte {
	if len(q) == cap(q) {
		grown := getQueue(2 * max(len(q), minQueueCap/2))
		grown = append(grown, q...)
		clear(q)
		putQueue(q)
		q = grown
	}
	return append(q, msg)
}
