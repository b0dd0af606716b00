--[[
  Bounded cleanup of finished users (entered, left, expired) once their
  retention has passed: their record answers "admitted"/"expired" to late
  polls until then. Removes at most ARGV[4] users per call.

  KEYS[1] fin    ZSET token -> finished at (ms)
  KEYS[2] stats  counters hash

  ARGV[1] base  ARGV[2] now override  ARGV[3] retention ms  ARGV[4] max users

  Returns the number of records removed.
]]
--- @include "includes/now"
--- @include "includes/unbind-user"

local base = ARGV[1]
local cutoff = nowMs(ARGV[2]) - tonumber(ARGV[3])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff, 'LIMIT', 0, tonumber(ARGV[4]))
for _, tok in ipairs(old) do
  local ukey = base .. 'u:' .. tok
  unbindUser(base, tok, ukey)
  redis.call('DEL', ukey)
  redis.call('ZREM', KEYS[1], tok)
end
if #old > 0 then
  redis.call('HINCRBY', KEYS[2], 'cleaned', #old)
end
return #old
