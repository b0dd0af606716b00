--[[
  Liveness claims of one gateway instance, in one call per event for all the
  users it holds (never one call per user). See includes/liveness.lua.

  KEYS[1] live    ZSET token -> liveness deadline (the latest claim)
  ARGV[1] base    ARGV[2] now override
  ARGV[3] instance id (its claims are the fields lc:<instance id>)
  ARGV[4..] triples: token, kind, window ms (deadline = Redis now + window)
          kind "h": this instance's sockets hold the user (set exactly:
                    renewed while open, close time + grace when the last
                    one closes)
          kind "p": a poll this instance answered from memory (only later)

  Returns the number of claims recorded (users still in line).
]]
--- @include "includes/now"
--- @include "includes/liveness"

local base = ARGV[1]
local now = nowMs(ARGV[2])
local own = 'lc:' .. ARGV[3]
local n = 0
for i = 4, #ARGV - 2, 3 do
  local tok = ARGV[i]
  local field = ARGV[i + 1] == 'p' and 'lp' or own
  n = n + claimLiveness(KEYS[1], base .. 'u:' .. tok, tok, field, now + tonumber(ARGV[i + 2]), now)
end
return n
