-- Append one message to a room's history, atomically; the room's next
-- offset is given here, so every node agrees on the room's order.
-- KEYS: 1 top, 2 epoch, 3 log, [4 dedupe]
-- ARGV: 1 Deliver without offset (protobuf), 2 msg_id, 3 size bound,
--       4 age ms, 5 the message's time (13-digit unix ms), 6 an epoch for a
--       new log (16 hex digits)
-- Returns {epoch, offset, msg_id of the first copy or '', 1 if duplicate}.
local function int(n) return string.format('%d', n) end

local epoch = redis.call('GET', KEYS[2])
-- The epoch and the counter live and die together: either one missing
-- (expired, evicted) is a lost log, so a new life, never offsets reused.
if not epoch or redis.call('EXISTS', KEYS[1]) == 0 then
  -- No log (new, or expired): a new life, counted from 1.
  redis.call('DEL', KEYS[1], KEYS[3])
  epoch = ARGV[6]
  redis.call('SET', KEYS[2], epoch)
  redis.call('SET', KEYS[1], '0')
end

if KEYS[4] then
  local hit = redis.call('GET', KEYS[4])
  if hit then
    local colon = string.find(hit, ':', 1, true)
    local offset = colon and tonumber(string.sub(hit, 1, colon - 1))
    if offset then
      return {epoch, offset, string.sub(hit, colon + 1), 1}
    end
  end
end

local offset = redis.call('INCR', KEYS[1])
-- The time in front (for the age bound), then the Deliver (its message id
-- makes the member unique); the score is the offset.
redis.call('ZADD', KEYS[3], int(offset), ARGV[5] .. ARGV[1])

local size = tonumber(ARGV[3])
local n = redis.call('ZCARD', KEYS[3])
if n > size then
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, n - size - 1)
end
-- Older than the age bound: dropped from the front (a few per append;
-- reads skip the rest).
local cutoff = tonumber(ARGV[5]) - tonumber(ARGV[4])
for _ = 1, 16 do
  local head = redis.call('ZRANGE', KEYS[3], 0, 0)
  if not head[1] or tonumber(string.sub(head[1], 1, 13)) >= cutoff then break end
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, 0)
end

if KEYS[4] then
  redis.call('SET', KEYS[4], int(offset) .. ':' .. ARGV[2], 'PX', ARGV[4])
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return {epoch, offset, '', 0}
