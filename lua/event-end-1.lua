--[[
  End an event now (admin API): nobody joins any more, every place still
  waiting (or in the pre-queue) is let go with the reason (the tick releases
  them in bounded steps; readers answer "ended" for them at once), and ready
  users keep their window. Idempotent: ending twice answers the first end.

  KEYS[1] cfg

  ARGV[1] base  ARGV[2] now override
  ARGV[3] reason (sold_out, cancelled, ...)
  ARGV[4] the operator's message, JSON {"<lang>": text} ("" = keep the current one)

  Returns (status codes: lua/status-codes.json) {EVENT_NOT_FOUND};
  {ENDED, endedMs} ended now; {EVENT_ENDED, reason, endedMs} it had ended before
]]
--- @include "includes/status"
--- @include "includes/now"

local now = nowMs(ARGV[2])
local cur = redis.call('HMGET', KEYS[1], 'state', 'end_reason', 'ended_ms')
if not cur[1] then
  return {S.EVENT_NOT_FOUND}
end
if cur[1] == 'ended' then
  return {S.EVENT_ENDED, cur[2] or '', cur[3] or '0'}
end
redis.call('HSET', KEYS[1], 'state', 'ended', 'end_reason', ARGV[3], 'ended_ms', now, 'updated_ms', now)
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'notice', ARGV[4], 'notice_ms', now)
end
return {S.ENDED, now}
