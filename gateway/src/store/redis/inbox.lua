-- A batch of inbox operations, appends and acks, in their order, in one
-- atomic call (the store's thread groups them: on one Redis a whole run of
-- a batch; on a Redis Cluster one user's, whose keys share a hash tag).
-- KEYS: each operation's keys in turn:
--   append: seq, inbox, cursors, dropped[, dedupe]
--   ack:    seq, inbox, cursors, acked
-- ARGV: 1 per_user, 2 retention ms, 3 dedupe window ms, then each
--   operation's arguments in turn:
--   append: 'a', its key count (4 or 5), its device count, the Deliver
--           without seq (protobuf), msg_id, '1' to refuse when full (else
--           drop the oldest), the devices online now
--   ack:    'k', device, seq
-- Returns one reply per operation, in order:
--   append: {seq, msg_id of the first copy or '', 1 if duplicate else 0},
--           or the error INBOXFULL (nothing stored) when full and asked to
--           refuse
--   ack:    1, or 0 for a user without an inbox (nothing to track)
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

local per_user = tonumber(ARGV[1])
local retention = ARGV[2]
local dedupe_ms = ARGV[3]

-- Appends one message to a user's inbox; its devices online now are
-- ARGV[first..last].
local function append(seq_k, inbox_k, cursors_k, dropped_k, dedupe_k,
                      deliver, msg_id, refuse, first, last)
  -- An online device not tracked yet has not been read for: its first read
  -- (queued behind its presence, maybe behind this append) is still to
  -- come. Track it from where that read starts (every message held; all
  -- of them for a user with no tracked device), not from this message on.
  -- That point is worked out once, before the first device is added, and
  -- only when a device is new: a tracked one costs one HEXISTS.
  local from = nil
  local added = 0
  for i = first, last do
    if redis.call('HEXISTS', cursors_k, ARGV[i]) == 0 then
      if from == nil then
        from = 0
        if redis.call('HLEN', cursors_k) > 0 then
          local head = redis.call('ZRANGE', inbox_k, 0, 0, 'WITHSCORES')
          if head[2] then
            from = tonumber(head[2]) - 1
          else
            from = tonumber(redis.call('GET', seq_k) or '0')
          end
        end
      end
      added = added + redis.call('HSETNX', cursors_k, ARGV[i], int(from))
    end
  end
  -- A hash with a new field may be new (no expiry yet), and this append
  -- may return early below; one already holding every device has one.
  if added > 0 then redis.call('PEXPIRE', cursors_k, retention) end

  if dedupe_k then
    local hit = redis.call('GET', dedupe_k)
    if hit then
      local colon = string.find(hit, ':', 1, true)
      local seq = colon and tonumber(string.sub(hit, 1, colon - 1))
      if seq then
        return {seq, string.sub(hit, colon + 1), 1}
      end
    end
  end

  local n = redis.call('ZCARD', inbox_k)
  if refuse and n >= per_user then
    return redis.error_reply('INBOXFULL recipient inbox full')
  end

  local seq = redis.call('INCR', seq_k)
  -- Field 1 (seq, varint) in front of the encoded Deliver: a valid Deliver
  -- carrying its sequence, and a member unique per sequence.
  redis.call('ZADD', inbox_k, int(seq), '\8' .. varint(seq) .. deliver)

  -- The member is new (it carries its sequence): one more than before.
  n = n + 1
  if n > per_user then
    local over = n - per_user
    local edge = redis.call('ZRANGE', inbox_k, over - 1, over - 1, 'WITHSCORES')
    redis.call('ZREMRANGEBYRANK', inbox_k, 0, over - 1)
    local top = tonumber(edge[2])
    local dropped = tonumber(redis.call('GET', dropped_k) or '0')
    if top and top > dropped then
      redis.call('SET', dropped_k, int(top))
    end
  end

  if dedupe_k then
    redis.call('SET', dedupe_k, int(seq) .. ':' .. msg_id, 'PX', dedupe_ms)
  end
  redis.call('PEXPIRE', inbox_k, retention)
  redis.call('PEXPIRE', cursors_k, retention)
  redis.call('PEXPIRE', dropped_k, retention)
  return {seq, '', 0}
end

-- A device acknowledged everything up to `s`: frees every message all
-- tracked devices acknowledged.
local function ack(seq_k, inbox_k, cursors_k, acked_k, device, s)
  local raw = redis.call('GET', seq_k)
  if not raw then return 0 end
  local last = tonumber(raw)
  if s > last then s = last end
  local cursor = tonumber(redis.call('HGET', cursors_k, device) or '-1')
  if s > cursor then
    redis.call('HSET', cursors_k, device, int(s))
  end
  redis.call('PEXPIRE', cursors_k, retention)

  local floor = nil
  for _, v in ipairs(redis.call('HVALS', cursors_k)) do
    local c = tonumber(v)
    if floor == nil or c < floor then floor = c end
  end
  if floor and floor > 0 then
    redis.call('ZREMRANGEBYSCORE', inbox_k, '-inf', int(floor))
    local acked = tonumber(redis.call('GET', acked_k) or '0')
    if floor > acked then
      redis.call('SET', acked_k, int(floor))
    end
  end
  return 1
end

local out = {}
local k, i = 1, 4
while i <= #ARGV do
  local kind = ARGV[i]
  if kind == 'a' then
    local nkeys = tonumber(ARGV[i + 1])
    local devices = tonumber(ARGV[i + 2])
    local dedupe_k = nil
    if nkeys == 5 then dedupe_k = KEYS[k + 4] end
    out[#out + 1] = append(KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3],
      dedupe_k, ARGV[i + 3], ARGV[i + 4], ARGV[i + 5] == '1',
      i + 6, i + 5 + devices)
    k = k + nkeys
    i = i + 6 + devices
  elseif kind == 'k' then
    out[#out + 1] = ack(KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3],
      ARGV[i + 1], tonumber(ARGV[i + 2]))
    k = k + 4
    i = i + 3
  else
    return redis.error_reply('ERR inbox batch: unknown operation ' .. tostring(kind))
  end
end
return out
