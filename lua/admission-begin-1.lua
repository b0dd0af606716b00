--[[
  Single use of an admission (reservation) token, first half: claim the
  token's one reservation for one request, or answer from what it holds.
  Exactly once even when an attempt's outcome is unknown (a backend timeout
  may have made the hold): such an attempt is resumed by the same request
  only, under the same attempt number, whose backend idempotency key makes
  the backend answer with the hold it made instead of making a second one.

  KEYS[1] the token's ledger record (hash), base .. "rt:" .. jti
  ARGV[1] base   ARGV[2] now override
  ARGV[3] request fingerprint (event, seats, quantity, user)
  ARGV[4] owner (random per call: only the claimer may end the attempt)
  ARGV[5] lease ms (an attempt in flight longer than this is treated as
          unknown: its gateway died or stalled)
  ARGV[6] record TTL ms (past the token's expiry)

  Record fields: state (inflight | unknown | done | free), fp, owner, until,
  n (attempt number), body (the stored 201 body when done).

  Returns {0, n} claimed: call the backend as attempt n;
          {1, n} resumed: attempt n had an unknown outcome, call again as n;
          {2} an attempt with this token is in flight;
          {3, body} done: replay the reservation;
          {4} the token was used for a different request.
]]
--- @include "includes/now"

local now = nowMs(ARGV[2])
local r = redis.call('HMGET', KEYS[1], 'state', 'fp', 'until', 'n', 'body')
local state = r[1]
if not state or state == 'free' then
  local n = tonumber(r[4] or '0')
  redis.call('HSET', KEYS[1], 'state', 'inflight', 'fp', ARGV[3], 'owner', ARGV[4], 'until', now + tonumber(ARGV[5]), 'n', n)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[6]))
  return {0, n}
end
if r[2] ~= ARGV[3] then
  return {4}
end
if state == 'done' then
  return {3, r[5]}
end
if state == 'inflight' and tonumber(r[3]) > now then
  return {2}
end
redis.call('HSET', KEYS[1], 'state', 'inflight', 'owner', ARGV[4], 'until', now + tonumber(ARGV[5]))
return {1, tonumber(r[4] or '0')}
