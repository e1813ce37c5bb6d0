-- A device acknowledged everything up to a sequence, atomically.
-- KEYS: 1 seq, 2 inbox, 3 cursors, 4 acked
-- ARGV: 1 device, 2 seq, 3 retention ms
-- Frees every message all tracked devices acknowledged. Returns 1, or 0 for
-- a user without an inbox (nothing to track).
local function int(n) return string.format('%d', n) end

local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local last = tonumber(raw)
local s = tonumber(ARGV[2])
if s > last then s = last end
local cursor = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '-1')
if s > cursor then
  redis.call('HSET', KEYS[3], ARGV[1], int(s))
end
redis.call('PEXPIRE', KEYS[3], ARGV[3])

local floor = nil
for _, v in ipairs(redis.call('HVALS', KEYS[3])) do
  local c = tonumber(v)
  if floor == nil or c < floor then floor = c end
end
if floor and floor > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(floor))
  local acked = tonumber(redis.call('GET', KEYS[4]) or '0')
  if floor > acked then
    redis.call('SET', KEYS[4], int(floor))
  end
end
return 1
