-- Read what a device has not acknowledged, atomically.
-- KEYS: 1 seq, 2 inbox, 3 cursors, 4 dropped, 5 acked
-- ARGV: 1 device, 2 resume point or -1, 3 max messages, 4 retention ms
-- Returns {last_seq, gap_from, gap_to (0, 0: no gap), from, member, score,
-- ...}: `from` is the sequence the read started after.
local function int(n) return string.format('%d', n) end

local raw = redis.call('GET', KEYS[1])
if not raw then return {0, 0, 0, 0} end
local last = tonumber(raw)

local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local first = last + 1
if head[2] then first = tonumber(head[2]) end

-- A user with no tracked device yet is owed everything, gaps included.
local untracked = first - 1
if redis.call('HLEN', KEYS[3]) == 0 then untracked = 0 end

local cursor = redis.call('HGET', KEYS[3], ARGV[1])
if cursor then
  cursor = tonumber(cursor)
else
  -- A device seen for the first time is tracked from now on.
  redis.call('HSET', KEYS[3], ARGV[1], int(first - 1))
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end

local after = tonumber(ARGV[2])
local from
if after >= 0 and cursor then
  from = math.max(after, cursor)
elseif after >= 0 then
  from = after
elseif cursor then
  from = cursor
else
  from = untracked
end

-- Everything below `first` is gone; what was not acknowledged by every
-- device (above `acked`) was dropped by a bound or by retention expiry.
local dropped = tonumber(redis.call('GET', KEYS[4]) or '0')
local acked = tonumber(redis.call('GET', KEYS[5]) or '0')
if first - 1 > acked and first - 1 > dropped then dropped = first - 1 end

local out = {last, 0, 0, from}
if dropped > from and first > from + 1 then
  out[2] = from + 1
  out[3] = first
end
local max = tonumber(ARGV[3])
if max > 0 then
  local msgs = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. int(from), '+inf',
    'WITHSCORES', 'LIMIT', 0, ARGV[3])
  for i = 1, #msgs do out[#out + 1] = msgs[i] end
end
return out
