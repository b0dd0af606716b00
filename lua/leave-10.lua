--[[
  Leave the line voluntarily. Idempotent: leaving twice answers "left" again.

  KEYS[1] user   KEYS[2] q   KEYS[3] ready   KEYS[4] live
  KEYS[5] stats  KEYS[6] fin KEYS[7] exits   KEYS[8] hist
  KEYS[9] cfg    KEYS[10] entrants (the pre-queue's entrant list)

  ARGV[1] base   ARGV[2] now override   ARGV[3] token

  Returns (status codes: lua/status-codes.json)
          {LEFT} left (now or before); {TOKEN_NOT_FOUND};
          {FINISHED, state} cannot leave: already admitted or expired
          (a waiting place of an ended event counts as expired).
]]
--- @include "includes/status"
--- @include "includes/now"
--- @include "includes/finish"

local base = ARGV[1]
local now = nowMs(ARGV[2])
local tok = ARGV[3]
local K = {q = KEYS[2], ready = KEYS[3], live = KEYS[4], stats = KEYS[5], fin = KEYS[6], exits = KEYS[7], hist = KEYS[8]}

local s = redis.call('HGET', KEYS[1], 's')
if not s then
  return {S.TOKEN_NOT_FOUND}
end
if s == 'l' then
  return {S.LEFT}
end
local ev = redis.call('HMGET', KEYS[9], 'state', 'max_active_sessions')
local evState = ev[1]
if ev[2] then
  K.active = base .. 'active'
end
if evState == 'ended' and (s == 'w' or s == 'p') then
  -- released by the end (the tick marks them in bounded steps)
  return {S.FINISHED, 'x'}
end
if s == 'w' or s == 'r' or s == 'p' then
  if evState == 'prequeue' then
    K.entrants = KEYS[10]
  end
  finishUser(K, base, tok, 'l', 'left', now, s ~= 'r')
  return {S.LEFT}
end
return {S.FINISHED, s}
