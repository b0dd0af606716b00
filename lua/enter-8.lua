--[[
  Enter: a `ready` user, inside the ready window, becomes `admitted` exactly once.

  KEYS[1] user   KEYS[2] q   KEYS[3] ready   KEYS[4] live
  KEYS[5] stats  KEYS[6] fin KEYS[7] exits   KEYS[8] hist

  ARGV[1] base   ARGV[2] now override   ARGV[3] token
  ARGV[4] the caller's authenticated user ("" = none): a place bound to a user
          (joined with a JWT) can only be entered by that user; an anonymous
          place entered with a user is bound to them, unless they already
          hold another place in this event (one place per user)
  ARGV[6] admission token lifetime, ms (an admitted user's session slot lasts that long)
  ARGV[5] "1" when user authentication is configured: then an event whose
          access is "user" is entered by a verified user only; an event whose
          access is "anonymous" is entered with the waiting token alone (the
          caller's user, if any, is not taken)

  Returns (status codes: lua/status-codes.json)
          {ADMITTED, readyAtMs, admittedMs, joinedMs, boundUser} admitted now;
          {NOT_OWNER} the place belongs to another user;
          {HOLDS_OTHER_PLACE, otherToken} the user already holds another place in this event;
          {USER_REQUIRED} a verified user is required to enter this event;
          {TOKEN_NOT_FOUND}; {NOT_READY, position} still waiting (0: in the
          pre-queue, before the draw);
          {ALREADY_ADMITTED, admittedMs, joinedMs, boundUser} (the gateway gives the
          same admission again); {FINISHED, state, reason} expired or left
          (or still waiting when the event ended: x, ended).
]]
--- @include "includes/status"
--- @include "includes/now"
--- @include "includes/finish"

local base = ARGV[1]
local now = nowMs(ARGV[2])
local tok = ARGV[3]
local K = {q = KEYS[2], ready = KEYS[3], live = KEYS[4], stats = KEYS[5], fin = KEYS[6], exits = KEYS[7], hist = KEYS[8]}

local rec = redis.call('HMGET', KEYS[1], 's', 'dl', 'rd', 'ad', 'why', 'j', 'u')
local s = rec[1]
if not s then
  return {S.TOKEN_NOT_FOUND}
end
local caller = ARGV[4]
local ev = redis.call('HMGET', base .. 'cfg', 'access', 'state', 'max_active_sessions')
if ev[3] then
  K.active = base .. 'active'
end
local access = ev[1] or 'user'
if access == 'anonymous' then
  caller = ''
elseif ARGV[5] == '1' and caller == '' then
  return {S.USER_REQUIRED}
end
if rec[7] and rec[7] ~= '' and caller ~= '' and rec[7] ~= caller then
  return {S.NOT_OWNER}
end
if (s == 'w' or s == 'p') and ev[2] == 'ended' then
  return {S.FINISHED, 'x', 'ended'}
end
if s == 'p' and (ev[2] == 'prequeue' or ev[2] == 'scheduled') then
  -- no position before the draw
  return {S.NOT_READY, 0}
end
if s == 'w' or s == 'p' then
  return {S.NOT_READY, (redis.call('ZRANK', K.q, tok) or -1) + 1}
end
if s == 'a' then
  return {S.ALREADY_ADMITTED, rec[4] or '0', rec[6] or '0', rec[7] or ''}
end
if s ~= 'r' then
  return {S.FINISHED, s, rec[5] or ''}
end
if tonumber(rec[2]) < now then
  -- The window passed before the tick noticed: expire here so the answer and
  -- the stored state agree.
  finishUser(K, base, tok, 'x', 'ready_timeout', now, false)
  return {S.FINISHED, 'x', 'ready_timeout'}
end
if caller ~= '' and (not rec[7] or rec[7] == '') then
  local ukey = base .. 'uid:' .. caller
  local other = redis.call('GET', ukey)
  if other and other ~= tok then
    local os = redis.call('HGET', base .. 'u:' .. other, 's')
    if os == 'w' or os == 'r' or os == 'a' then
      return {S.HOLDS_OTHER_PLACE, other}
    end
  end
  redis.call('SET', ukey, tok)
  redis.call('HSET', KEYS[1], 'u', caller)
  rec[7] = caller
end
finishUser(K, base, tok, 'a', 'entered', now, false)
redis.call('HSET', KEYS[1], 'ad', now)
-- an admitted user holds their session slot (max_active_sessions) until the
-- admission expires or is used (session-end-1.lua); XX: only when the event counts them
if K.active then
  redis.call('ZADD', K.active, 'XX', now + tonumber(ARGV[6]), tok)
end
return {S.ADMITTED, rec[3] or '0', now, rec[6] or '0', rec[7] or ''}
