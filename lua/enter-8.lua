--[[
  Enter: a `ready` user, inside the ready window, becomes `admitted` exactly once.

  KEYS[1] user   KEYS[2] q   KEYS[3] ready   KEYS[4] live
  KEYS[5] stats  KEYS[6] fin KEYS[7] exits   KEYS[8] hist

  ARGV[1] base   ARGV[2] now override   ARGV[3] token
  ARGV[4] the caller's authenticated user ("" = none): a place bound to a user
          (joined with a JWT) can only be entered by that user; an anonymous
          place entered with a user is bound to them, unless they already
          hold another place in this event (one place per user)
  ARGV[5] "1" when user authentication is configured: then an event whose
          access is "user" is entered by a verified user only; an event whose
          access is "anonymous" is entered with the waiting token alone (the
          caller's user, if any, is not taken)

  Returns {1, readyAtMs, admittedMs, joinedMs, boundUser} admitted now;
          {7} the place belongs to another user;
          {8, otherToken} the user already holds another place in this event;
          {9} a verified user is required to enter this event;
          {2} unknown token; {3, rank} still waiting (not ready);
          {4, admittedMs, joinedMs, boundUser} already admitted (the gateway gives the
          same admission again); {5, state, reason} expired or left.
]]
--- @include "includes/now"
--- @include "includes/finish"

local base = ARGV[1]
local now = nowMs(ARGV[2])
local tok = ARGV[3]
local K = {q = KEYS[2], ready = KEYS[3], live = KEYS[4], stats = KEYS[5], fin = KEYS[6], exits = KEYS[7], hist = KEYS[8]}

local rec = redis.call('HMGET', KEYS[1], 's', 'dl', 'rd', 'ad', 'why', 'j', 'u')
local s = rec[1]
if not s then
  return {2}
end
local caller = ARGV[4]
local access = redis.call('HGET', base .. 'cfg', 'access') or 'user'
if access == 'anonymous' then
  caller = ''
elseif ARGV[5] == '1' and caller == '' then
  return {9}
end
if rec[7] and rec[7] ~= '' and caller ~= '' and rec[7] ~= caller then
  return {7}
end
if s == 'w' then
  return {3, (redis.call('ZRANK', K.q, tok) or -1) + 1}
end
if s == 'a' then
  return {4, rec[4] or '0', rec[6] or '0', rec[7] or ''}
end
if s ~= 'r' then
  return {5, s, rec[5] or ''}
end
if tonumber(rec[2]) < now then
  -- The window passed before the tick noticed: expire here so the answer and
  -- the stored state agree.
  finishUser(K, base, tok, 'x', 'ready_timeout', now, false)
  return {5, 'x', 'ready_timeout'}
end
if caller ~= '' and (not rec[7] or rec[7] == '') then
  local ukey = base .. 'uid:' .. caller
  local other = redis.call('GET', ukey)
  if other and other ~= tok then
    local os = redis.call('HGET', base .. 'u:' .. other, 's')
    if os == 'w' or os == 'r' or os == 'a' then
      return {8, other}
    end
  end
  redis.call('SET', ukey, tok)
  redis.call('HSET', KEYS[1], 'u', caller)
  rec[7] = caller
end
finishUser(K, base, tok, 'a', 'entered', now, false)
redis.call('HSET', KEYS[1], 'ad', now)
return {1, rec[3] or '0', now, rec[6] or '0', rec[7] or ''}
