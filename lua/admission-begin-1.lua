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

  Returns (status codes: lua/status-codes.json)
          {CLAIMED, n} call the backend as attempt n;
          {RESUMED, n} attempt n had an unknown outcome, call again as n;
          {IN_FLIGHT} an attempt with this token is in flight;
          {DONE, body} replay the reservation;
          {CONFLICT} the token was used for a different request.
]]
--- @include "includes/status"
--- @include "includes/now"

local now = nowMs(ARGV[2])
local r = redis.call('HMGET', KEYS[1], 'state', 'fp', 'until', 'n', 'body')
local state = r[1]
if not state or state == 'free' then
  local n = tonumber(r[4] or '0')
  redis.call('HSET', KEYS[1], 'state', 'inflight', 'fp', ARGV[3], 'owner', ARGV[4], 'until', now + tonumber(ARGV[5]), 'n', n)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[6]))
  return {S.CLAIMED, n}
end
if r[2] ~= ARGV[3] then
  return {S.CONFLICT}
end
if state == 'done' then
  return {S.DONE, r[5]}
end
if state == 'inflight' and tonumber(r[3]) > now then
  return {S.IN_FLIGHT}
end
redis.call('HSET', KEYS[1], 'state', 'inflight', 'owner', ARGV[4], 'until', now + tonumber(ARGV[5]))
return {S.RESUMED, tonumber(r[4] or '0')}
