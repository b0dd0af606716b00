--[[
  Create or update an event's configuration (admin API).

  KEYS[1] cfg  KEYS[2] bucket  KEYS[3] hist

  ARGV[1] base  ARGV[2] now override
  ARGV[3] rate  ARGV[4] burst  ARGV[5] ready_window_sec  ARGV[6] reconnect_grace_sec
  ARGV[7] state  ARGV[8] access (user | anonymous)
  ARGV[9] target_url ("none" clears it)
  ARGV[10] notice: the operator's message to everyone waiting, JSON
           {"<lang>": text, ...} ("none" clears it); a change stamps
           notice_ms, which every tick carries so instances push it at once
  ("" for any field = keep the current value; a new event gets every field
  from the caller, who fills defaults)

  The bucket is first settled at the old rate up to now, so a new rate only
  applies from now on. A changed rate drops the outflow history (promotions
  p: and busy time b:): the old rate no longer predicts anything, and the
  configured rate is the ETA prior until new data arrives. Joins (j:) and
  give-ups (a:) are kept: how people behave does not change with the rate,
  and dropping only the joins would read every later give-up as most of the line.
  A lowered burst clamps the stored tokens so the hard bound holds at once.

  Returns {created(0|1), rate, burst, ready_window_sec, reconnect_grace_sec, state, created_ms, updated_ms, access, target_url, notice, notice_ms}
]]
--- @include "includes/now"

local now = nowMs(ARGV[2])
local fields = {'rate', 'burst', 'ready_window_sec', 'reconnect_grace_sec', 'state', 'access', 'target_url', 'notice'}
local cur = redis.call('HMGET', KEYS[1], 'rate', 'burst', 'ready_window_sec', 'reconnect_grace_sec', 'state', 'created_ms')
local created = 0
if not cur[5] then
  created = 1
  redis.call('HSET', KEYS[1], 'created_ms', now)
  redis.call('HSET', KEYS[2], 'tokens', ARGV[4], 'ts', now)
end
if created == 0 and cur[1] then
  -- Settle the bucket at the rate in force until now before anything
  -- changes: otherwise the next tick would refill the time since the last
  -- tick at the new rate, and a rate increase would admit retroactively.
  local b = redis.call('HMGET', KEYS[2], 'tokens', 'ts')
  local tokens, last = tonumber(b[1]), tonumber(b[2])
  if tokens and last then
    local elapsed = math.max(0, now - last)
    tokens = math.min(tonumber(cur[2]), tokens + elapsed / 1000 * tonumber(cur[1]))
    redis.call('HSET', KEYS[2], 'tokens', string.format('%.17g', tokens), 'ts', now)
  end
end
for i, f in ipairs(fields) do
  local v = ARGV[i + 2]
  if v == 'none' and (f == 'target_url' or f == 'notice') then
    redis.call('HDEL', KEYS[1], f)
  elseif v ~= '' then
    redis.call('HSET', KEYS[1], f, v)
  end
end
if ARGV[10] ~= '' then
  redis.call('HSET', KEYS[1], 'notice_ms', now)
end
redis.call('HSET', KEYS[1], 'updated_ms', now)
if created == 0 and ARGV[3] ~= '' and tonumber(ARGV[3]) ~= tonumber(cur[1]) then
  local fields = redis.call('HKEYS', KEYS[3])
  for _, f in ipairs(fields) do
    local kind = string.sub(f, 1, 2)
    if kind == 'p:' or kind == 'b:' then
      redis.call('HDEL', KEYS[3], f)
    end
  end
end
if ARGV[4] ~= '' then
  local t = tonumber(redis.call('HGET', KEYS[2], 'tokens') or '0')
  if t > tonumber(ARGV[4]) then
    redis.call('HSET', KEYS[2], 'tokens', ARGV[4])
  end
end
local out = redis.call('HMGET', KEYS[1], 'rate', 'burst', 'ready_window_sec', 'reconnect_grace_sec', 'state', 'created_ms', 'updated_ms', 'access', 'target_url', 'notice', 'notice_ms')
return {created, out[1], out[2], out[3], out[4], out[5], out[6], out[7], out[8] or 'user', out[9] or '', out[10] or '', out[11] or '0'}
