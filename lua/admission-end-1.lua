--[[
  Single use of an admission token, second half: record how the attempt
  claimed by admission-begin-1.lua ended.

  KEYS[1] the token's ledger record
  ARGV[1] base   ARGV[2] unused
  ARGV[3] owner (must match the claim)
  ARGV[4] outcome: "done" (the backend made the reservation: ARGV[5] is the
          201 body, replayed to the same request from now on), "unknown"
          (no answer: only the same request may resume it), or "free" (the
          backend refused in-band and made nothing: the token may be used
          again, as the next attempt number)
  ARGV[5] body

  Returns 1 recorded, 0 the claim was not the caller's (its lease passed and
  another call resumed the attempt).
]]
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[3] or redis.call('HGET', KEYS[1], 'state') ~= 'inflight' then
  return 0
end
local outcome = ARGV[4]
if outcome == 'done' then
  redis.call('HSET', KEYS[1], 'state', 'done', 'body', ARGV[5])
elseif outcome == 'unknown' then
  redis.call('HSET', KEYS[1], 'state', 'unknown')
else
  redis.call('HSET', KEYS[1], 'state', 'free', 'n', tonumber(redis.call('HGET', KEYS[1], 'n') or '0') + 1)
  redis.call('HDEL', KEYS[1], 'fp', 'owner', 'until')
end
return 1
