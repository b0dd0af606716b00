--[[
  The adaptive controller sets an event's admission rate (src/queue/adaptive.ts).
  Only the event's ticker lease holder runs the controller, and only it may
  set the rate (fencing, as in tick-14.lua); only while adaptive outflow is on.

  KEYS[1] cfg  KEYS[2] bucket  KEYS[3] lease  KEYS[4] alog (the controller's
  recent decisions, newest first, for the operator page's chart)

  ARGV[1] base  ARGV[2] now override  ARGV[3] instance id
  ARGV[4] the new rate  ARGV[5] reason
  ARGV[6] the decision as logged: "<ms> <rate> <reason> <p95 ms> <error share> <calls>"

  Every decision is logged (a hold too: the chart shows what the controller
  saw); the rate and its reason change only when the rate does. The bucket is settled at the old rate up to now first, so the new rate
  applies from now on (as event-put-3.lua does), and the ETA history is kept:
  the measured outflow follows the rate by itself.

  Returns 1 set, 0 not the lease holder or adaptive outflow is off.
]]
--- @include "includes/now"

local now = nowMs(ARGV[2])
if redis.call('GET', KEYS[3]) ~= ARGV[3] then
  return 0
end
local cur = redis.call('HMGET', KEYS[1], 'rate', 'burst', 'adaptive')
if not cur[3] or not cur[1] then
  return 0
end
if tonumber(ARGV[4]) ~= tonumber(cur[1]) then
  local b = redis.call('HMGET', KEYS[2], 'tokens', 'ts')
  local tokens, last = tonumber(b[1]), tonumber(b[2])
  if tokens and last then
    tokens = math.min(tonumber(cur[2]), tokens + math.max(0, now - last) / 1000 * tonumber(cur[1]))
    redis.call('HSET', KEYS[2], 'tokens', string.format('%.17g', tokens), 'ts', now)
  end
  redis.call('HSET', KEYS[1], 'rate', ARGV[4], 'adaptive_reason', ARGV[5], 'adaptive_ms', now)
end
redis.call('LPUSH', KEYS[4], ARGV[6])
redis.call('LTRIM', KEYS[4], 0, 599)
return 1
