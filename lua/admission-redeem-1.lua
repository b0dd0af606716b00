--[[
  Redeem an admission token at the origin (the ticket site's server), once:
  the first redemption takes the token's single use; a later one, or one
  after the token bought a reservation through the gateway, is refused.
  Shares the token's ledger record with admission-begin-1.lua, so one
  admission is spent either here or on a reservation, never both.

  KEYS[1] the token's ledger record, base .. "rt:" .. jti
  ARGV[1] base   ARGV[2] now override   ARGV[3] record TTL ms (past the token's expiry)

  Returns (status codes: lua/status-codes.json)
          {REDEEMED} redeemed now; {ALREADY_REDEEMED, redeemedAtMs} redeemed before;
          {SPENT, state} spent on a reservation through the gateway.
]]
--- @include "includes/status"
--- @include "includes/now"

local now = nowMs(ARGV[2])
local rec = redis.call('HMGET', KEYS[1], 'state', 'at')
local state = rec[1]
if not state or state == 'free' then
  redis.call('HSET', KEYS[1], 'state', 'redeemed', 'fp', 'redeemed', 'at', now)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  return {S.REDEEMED}
end
if state == 'redeemed' then
  return {S.ALREADY_REDEEMED, rec[2] or '0'}
end
return {S.SPENT, state}
