package sseprom

import "github.com/coregx/stream/sse"

// Stats is the snapshot a [Collector] reads on every scrape: what
// [sse.Hub.Stats] and [sse.Server.Stats] return.
//
// It names the core's type in this one place, so that the collector
// follows the core when that type is renamed.
type Stats = sse.Stats
