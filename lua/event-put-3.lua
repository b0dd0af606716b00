--[[
  Create or update an event's configuration (admin API).

  KEYS[1] cfg  KEYS[2] bucket  KEYS[3] hist

  ARGV[1] base  ARGV[2] now override
  ARGV[3] rate  ARGV[4] burst  ARGV[5] ready_window_sec  ARGV[6] reconnect_grace_sec
  ARGV[7] state (open | paused | closed; the schedule and the end set the others)
  ARGV[8] access (user | anonymous)
  ARGV[9] target_url ("none" clears it)
  ARGV[10] notice: the operator's message to everyone waiting, JSON
           {"<lang>": text, ...} ("none" clears it); a change stamps
           notice_ms, which every tick carries so instances push it at once
  ARGV[11] prequeue_opens_ms  ARGV[12] starts_ms  ARGV[13] ends_ms ("none" clears it)
  ARGV[14] draw seed, ARGV[15] its commitment (SHA-256 of the seed, hex):
           taken only when the event has none, so a commitment once
           published never changes (docs/FAIRNESS.md)
  ARGV[16] adaptive outflow policy, JSON {floor, ceiling, p95_ms, error_share}
           ("none" turns it off: the operator's rate applies again)
  ARGV[17] max_active_sessions ("none" = admit by rate alone)
  ARGV[18] join challenge, JSON {kind, difficulty?} ("none" = no challenge)
  ("" for any field = keep the current value; a new event gets every field
  from the caller, who fills defaults)

  Schedule: a new event with starts_ms is `scheduled` (the tick opens the
  pre-queue and draws on time). The schedule's start and pre-queue time can
  change only while the event is scheduled or in its pre-queue; the state
  cannot be set by hand then (the draw opens it), nor once it ended.

  The bucket is first settled at the old rate up to now, so a new rate only
  applies from now on. A changed rate drops the outflow history (promotions
  p: and busy time b:): the old rate no longer predicts anything, and the
  configured rate is the ETA prior until new data arrives. Joins (j:) and
  give-ups (a:) are kept: how people behave does not change with the rate,
  and dropping only the joins would read every later give-up as most of the line.
  A lowered burst clamps the stored tokens so the hard bound holds at once.

  Returns (status codes: lua/status-codes.json) {STATE_CONFLICT, state}, or
  {CONFIGURED, created(0|1), then the fields of CONFIG_FIELDS in src/queue/store.ts}
]]
--- @include "includes/status"
--- @include "includes/now"

local now = nowMs(ARGV[2])
local fields = {'rate', 'burst', 'ready_window_sec', 'reconnect_grace_sec', 'state', 'access', 'target_url', 'notice',
  'prequeue_opens_ms', 'starts_ms', 'ends_ms'}
local clearable = {target_url = true, notice = true, ends_ms = true}
local cur = redis.call('HMGET', KEYS[1], 'rate', 'burst', 'ready_window_sec', 'reconnect_grace_sec', 'state', 'created_ms', 'draw_commit')
local created = 0
local curState = cur[5]
local scheduleChange = ARGV[11] ~= '' or ARGV[12] ~= ''
if curState then
  local beforeStart = curState == 'scheduled' or curState == 'prequeue'
  if (ARGV[7] ~= '' and (beforeStart or curState == 'ended')) or (scheduleChange and not beforeStart)
    or (ARGV[13] ~= '' and curState == 'ended') then
    return {S.STATE_CONFLICT, curState}
  end
end
if not curState then
  created = 1
  redis.call('HSET', KEYS[1], 'created_ms', now)
  redis.call('HSET', KEYS[2], 'tokens', ARGV[4], 'ts', now)
  if ARGV[12] ~= '' then
    ARGV[7] = 'scheduled'
  end
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
  if v == 'none' and clearable[f] then
    redis.call('HDEL', KEYS[1], f)
  elseif v ~= '' then
    redis.call('HSET', KEYS[1], f, v)
  end
end
for i, f in ipairs({'adaptive', 'max_active_sessions', 'challenge'}) do
  local v = ARGV[15 + i]
  if v == 'none' then
    redis.call('HDEL', KEYS[1], f)
  elseif v ~= '' then
    redis.call('HSET', KEYS[1], f, v)
  end
end
if ARGV[17] == 'none' then
  -- no cap any more: the sessions it counted would be stale if it came back
  redis.call('DEL', ARGV[1] .. 'active')
end
if ARGV[16] ~= '' then
  -- a new policy (or none): the controller starts from the operator's rate, and
  -- its past decisions (made under other bounds) go
  redis.call('HDEL', KEYS[1], 'adaptive_reason', 'adaptive_ms')
  redis.call('DEL', ARGV[1] .. 'alog')
end
if ARGV[12] ~= '' and not cur[7] then
  redis.call('HSET', KEYS[1], 'draw_seed', ARGV[14], 'draw_commit', ARGV[15], 'draw_committed_ms', now)
end
if ARGV[10] ~= '' then
  redis.call('HSET', KEYS[1], 'notice_ms', now)
end
redis.call('HSET', KEYS[1], 'updated_ms', now)
if created == 0 and ARGV[3] ~= '' and tonumber(ARGV[3]) ~= tonumber(cur[1]) then
  local hist = redis.call('HKEYS', KEYS[3])
  for _, f in ipairs(hist) do
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
local out = redis.call('HMGET', KEYS[1], 'rate', 'burst', 'ready_window_sec', 'reconnect_grace_sec', 'state', 'created_ms', 'updated_ms',
  'access', 'target_url', 'notice', 'notice_ms', 'prequeue_opens_ms', 'starts_ms', 'ends_ms', 'draw_commit', 'drawn_ms', 'end_reason', 'ended_ms',
  'adaptive', 'max_active_sessions', 'challenge', 'adaptive_reason', 'adaptive_ms')
local reply = {S.CONFIGURED, created}
for i = 1, 23 do
  reply[i + 2] = out[i] or ''
end
return reply
