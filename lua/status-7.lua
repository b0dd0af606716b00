--[[
  Read one user's place and, for polling clients, refresh their liveness.
  O(log N): one ZRANK; no scan.

  KEYS[1] user    per-user hash (base .. "u:" .. token)
  KEYS[2] q       line ZSET
  KEYS[3] ready   ZSET token -> ready deadline
  KEYS[4] live    ZSET token -> liveness deadline
  KEYS[5] cfg     event configuration hash
  KEYS[6] eta     ETA parameters written by the last tick
  KEYS[7] stats   counters hash (xseq: exits so far)

  ARGV[1] base    ARGV[2] now override
  ARGV[3] token
  ARGV[4] liveness window in ms to claim ("0" = read only, claim nothing)
  ARGV[5] who claims (includes/liveness.lua): "" a poll (only ever later),
          else the id of the instance a socket just attached to

  Returns (status codes: lua/status-codes.json) {TOKEN_NOT_FOUND}, or
  {FOUND, state, rank(-1 if not in line), readyCount, joinedMs, readyDeadlineMs,
   finishedMs, reason, eventState, now, etaFields...}
  where etaFields = rate, rw, share, conf, spread, tokens (strings; Lua numbers
  would be truncated to integers on the way out), followed by
  seq (the user's line sequence), xseq (exits so far: the rank is exact as
  of that exit, so an instance can keep it exact from tick messages), the
  event's reconnect grace in seconds, its start (ms, 0 = no schedule) and,
  once it ended, the end's reason.

  State `p` (a pre-queue place) is answered as `p` while the event has not
  drawn (its rank is for the gateway's own bookkeeping and is never shown:
  a position before the start would let people rejoin until they like it),
  and as `w` after. In an ended event a place still waiting is answered as
  expired with reason `ended` (the tick marks such places in bounded steps).
]]
--- @include "includes/status"
--- @include "includes/now"
--- @include "includes/liveness"

local now = nowMs(ARGV[2])
local tok = ARGV[3]
local rec = redis.call('HMGET', KEYS[1], 's', 'j', 'dl', 'f', 'why', 'q')
local s = rec[1]
if not s then
  return {S.TOKEN_NOT_FOUND}
end
local cfg = redis.call('HMGET', KEYS[5], 'state', 'rate', 'reconnect_grace_sec', 'starts_ms', 'end_reason', 'ended_ms')
local evState = cfg[1] or 'closed'
if evState == 'ended' and (s == 'w' or s == 'p') then
  s = 'x'
  rec[4] = cfg[6] or '0'
  rec[5] = 'ended'
elseif s == 'p' and evState ~= 'prequeue' and evState ~= 'scheduled' then
  s = 'w'
end
local rank = -1
if s == 'w' or s == 'r' or s == 'p' then
  local window = tonumber(ARGV[4])
  if window > 0 then
    claimLiveness(KEYS[4], KEYS[1], tok, ARGV[5] == '' and 'lp' or ('lc:' .. ARGV[5]), now + window, now)
  end
  rank = redis.call('ZRANK', KEYS[2], tok) or -1
end
local e = redis.call('HMGET', KEYS[6], 'rw', 'share', 'conf', 'spread', 'tokens')
return {S.FOUND, s, rank, redis.call('ZCARD', KEYS[3]), rec[2] or '0', rec[3] or '0', rec[4] or '0', rec[5] or '',
  evState, now, cfg[2] or '0', e[1] or '', e[2] or '', e[3] or '', e[4] or '', e[5] or '',
  rec[6] or '0', redis.call('HGET', KEYS[7], 'xseq') or '0', cfg[3] or '30', cfg[4] or '0', cfg[5] or ''}
