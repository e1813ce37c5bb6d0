-- Append one message to a user's inbox, atomically.
-- KEYS: 1 seq, 2 inbox, 3 cursors, 4 dropped, [5 dedupe]
-- ARGV: 1 Deliver without seq (protobuf), 2 msg_id, 3 per_user,
--       4 retention ms, 5 dedupe window ms, 6 '1' to refuse when full
--       (else drop the oldest), 7.. devices online now
-- Returns {seq, msg_id of the first copy or '', 1 if duplicate else 0}, or
-- the error INBOXFULL (nothing stored) when full and asked to refuse.
local function int(n) return string.format('%d', n) end
local function varint(n)
  local out = {}
  repeat
    local b = n % 128
    n = math.floor(n / 128)
    if n > 0 then b = b + 128 end
    out[#out + 1] = string.char(b)
  until n == 0
  return table.concat(out)
end

-- An online device not tracked yet has not been read for: its first read
-- (queued behind its presence, maybe behind this append) is still to come.
-- Track it from where that read starts (every message held; all of them for
-- a user with no tracked device), not from this message on. (Every command
-- counts: this runs for every QoS 1 message, so nothing is asked twice.)
if #ARGV >= 7 then
  local from = 0
  if redis.call('HLEN', KEYS[3]) > 0 then
    local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    if head[2] then
      from = tonumber(head[2]) - 1
    else
      from = tonumber(redis.call('GET', KEYS[1]) or '0')
    end
  end
  local added = 0
  for i = 7, #ARGV do
    added = added + redis.call('HSETNX', KEYS[3], ARGV[i], int(from))
  end
  -- A hash with a new field may be new (no expiry yet), and this append
  -- may return early below; one already holding every device has one.
  if added > 0 then redis.call('PEXPIRE', KEYS[3], ARGV[4]) end
end

if KEYS[5] then
  local hit = redis.call('GET', KEYS[5])
  if hit then
    local colon = string.find(hit, ':', 1, true)
    local seq = colon and tonumber(string.sub(hit, 1, colon - 1))
    if seq then
      return {seq, string.sub(hit, colon + 1), 1}
    end
  end
end

local cap = tonumber(ARGV[3])
local n = redis.call('ZCARD', KEYS[2])
if ARGV[6] == '1' and n >= cap then
  return redis.error_reply('INBOXFULL recipient inbox full')
end

local seq = redis.call('INCR', KEYS[1])
-- Field 1 (seq, varint) in front of the encoded Deliver: a valid Deliver
-- carrying its sequence, and a member unique per sequence.
redis.call('ZADD', KEYS[2], int(seq), '\8' .. varint(seq) .. ARGV[1])

-- The member is new (it carries its sequence): one more than before.
n = n + 1
if n > cap then
  local over = n - cap
  local edge = redis.call('ZRANGE', KEYS[2], over - 1, over - 1, 'WITHSCORES')
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
  local top = tonumber(edge[2])
  local dropped = tonumber(redis.call('GET', KEYS[4]) or '0')
  if top and top > dropped then
    redis.call('SET', KEYS[4], int(top))
  end
end

if KEYS[5] then
  redis.call('SET', KEYS[5], int(seq) .. ':' .. ARGV[2], 'PX', ARGV[5])
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('PEXPIRE', KEYS[4], ARGV[4])
return {seq, '', 0}
