package redisbroker

import "github.com/redis/go-redis/v9"

// Every script takes the stream key and its companion hash, then the
// limits: max events, max bytes, max age in milliseconds (-1: none) and
// the length of the tag an assigned ID carries. The hash holds the bytes
// the stream retains ("b") and the publisher ID of the newest entry
// deleted ("p"); entries hold their size without the assigned ID ("n"),
// the publisher ID ("i", absent when the broker assigned it), the type
// ("t"), the data ("d"), the retry ("r"), the metadata ("m") and the
// stream's era ("e"): a random tag drawn when the stream is created,
// that ends the IDs the broker assigns, so that IDs of a stream lost and
// made again are not taken for positions of the new one. The hash keeps
// the era too ("e").
const trimLua = `
local key, hkey = KEYS[1], KEYS[2]
local maxEvents, maxBytes, maxAge, tagLen = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function fields(e)
  local n, pid = 0, nil
  for j = 1, #e[2], 2 do
    if e[2][j] == 'n' then n = tonumber(e[2][j+1]) elseif e[2][j] == 'i' then pid = e[2][j+1] end
  end
  if pid == nil then n = n + #e[1] + 1 + tagLen end
  return n, pid or ''
end
local function trim(keep)
  local minMs = -1
  if maxAge >= 0 then
    local t = redis.call('TIME')
    minMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - maxAge
  end
  local total = tonumber(redis.call('HGET', hkey, 'b') or '0')
  while true do
    local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
    if not first or first[1] == keep then break end
    local over = (maxEvents >= 0 and redis.call('XLEN', key) > maxEvents) or (maxBytes >= 0 and total > maxBytes) or
      (minMs >= 0 and tonumber(string.match(first[1], '^(%d+)')) < minMs)
    if not over then break end
    local n, pid = fields(first)
    redis.call('XDEL', key, first[1])
    total = total - n
    redis.call('HSET', hkey, 'b', total, 'p', pid)
  end
end
`

// publishScript adds an entry (ARGV[5] is the era to use if the stream
// is new, ARGV[6] the key lifetime in milliseconds or -1, then the
// fields) and trims; it returns the entry's stream ID and era.
var publishScript = redis.NewScript(trimLua + `
local era = redis.call('HGET', hkey, 'e')
if not era or redis.call('EXISTS', key) == 0 then
  era = ARGV[5]
  redis.call('DEL', hkey)
  redis.call('HSET', hkey, 'e', era)
end
local f = {'e', era}
for i = 7, #ARGV do f[#f+1] = ARGV[i] end
local id = redis.call('XADD', key, '*', unpack(f))
local n = fields({id, f})
redis.call('HINCRBY', hkey, 'b', n)
trim(id)
local ttl = tonumber(ARGV[6])
if ttl > 0 then
  redis.call('PEXPIRE', key, ttl)
  redis.call('PEXPIRE', hkey, ttl)
end
return {id, era}
`)

// lookScript trims expired entries and locates a position: ARGV[5] is a
// stream ID to look for (or "") and ARGV[6] the era it must be of ("*"
// for any),
// ARGV[7] a publisher ID to look for (or ""; an ID published more than
// once names its earliest event: the newest deleted one when it bears
// it, else the oldest retained one), ARGV[8] "1" to list the
// entries after it (all of them when it is not found). It returns {}
// when the stream does not exist, else {last generated ID, newest
// deleted ID, its publisher ID, the found stream ID or "", entries,
// newest entry, oldest entry, era}.
var lookScript = redis.NewScript(trimLua + `
if redis.call('EXISTS', key) == 0 then return {} end
trim('')
local info = redis.call('XINFO', 'STREAM', key)
local last, maxDel = '0-0', '0-0'
for j = 1, #info, 2 do
  if info[j] == 'last-generated-id' then last = info[j+1] elseif info[j] == 'max-deleted-entry-id' then maxDel = info[j+1] end
end
local pid = redis.call('HGET', hkey, 'p') or ''
local era = redis.call('HGET', hkey, 'e') or ''
local sid, own = ARGV[5], ARGV[7]
local found = ''
if sid ~= '' and ARGV[6] ~= '*' and ARGV[6] ~= era then
  sid = ''
elseif sid ~= '' then
  if sid == maxDel or #redis.call('XRANGE', key, sid, sid) > 0 then found = sid end
elseif own ~= '' and pid == own and maxDel ~= '0-0' then
  found = maxDel
elseif own ~= '' then
  for _, e in ipairs(redis.call('XRANGE', key, '-', '+')) do
    for j = 1, #e[2], 2 do
      if e[2][j] == 'i' and e[2][j+1] == own then found = e[1] end
    end
    if found ~= '' then break end
  end
end
local list = {}
if ARGV[8] == '1' then
  if found ~= '' then list = redis.call('XRANGE', key, '(' .. found, '+')
  else list = redis.call('XRANGE', key, '-', '+') end
end
local head = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
return {last, maxDel, pid, found, list, head, first, era}
`)
