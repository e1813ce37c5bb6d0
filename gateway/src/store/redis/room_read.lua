-- Read a room's history, atomically (creating the log's epoch if it has
-- none, so a member that joins before the first message knows it).
-- KEYS: 1 top, 2 epoch, 3 log
-- ARGV: 1 'after' or 'last', 2 the reader's epoch ('' for none), 3 the
--       reader's offset ('after') or how many ('last'), 4 age ms, 5 now
--       (unix ms), 6 an epoch for a new log
-- Returns {epoch, top, first, member, offset, ...}: `first` is the oldest
-- offset held (top + 1 when none is); members in offset order.
local epoch = redis.call('GET', KEYS[2])
-- The epoch and the counter live and die together: either one missing
-- (expired, evicted) is a lost log, so a new life, never offsets reused.
if not epoch or redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[3])
  epoch = ARGV[6]
  redis.call('SET', KEYS[2], epoch)
  redis.call('SET', KEYS[1], '0')
end
local top = tonumber(redis.call('GET', KEYS[1]) or '0')
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])

-- What passed the age bound is not history any more.
local cutoff = tonumber(ARGV[5]) - tonumber(ARGV[4])
while true do
  local head = redis.call('ZRANGE', KEYS[3], 0, 0)
  if not head[1] or tonumber(string.sub(head[1], 1, 13)) >= cutoff then break end
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, 0)
end

local first = top + 1
local head = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if head[2] then first = tonumber(head[2]) end

local out = {epoch, top, first}
local msgs = {}
if ARGV[1] == 'after' then
  local known = 0
  if ARGV[2] == epoch then known = tonumber(ARGV[3]) end
  msgs = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. string.format('%d', known), '+inf',
    'WITHSCORES')
else
  local n = tonumber(ARGV[3])
  if n > 0 then msgs = redis.call('ZRANGE', KEYS[3], -n, -1, 'WITHSCORES') end
end
for i = 1, #msgs do out[#out + 1] = msgs[i] end
return out
