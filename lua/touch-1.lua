--[[
  Batch liveness refresh: one call per event for all the users an instance
  holds (open sockets, recent polls), never one call per user.

  KEYS[1] live    ZSET token -> liveness deadline
  ARGV[1] base    ARGV[2] now override
  ARGV[3] "set" (sockets that just closed: deadline = exactly now + window)
          or "extend" (periodic refresh: only ever later)
  ARGV[4..] pairs: token, window ms (deadline = Redis now + window)

  Returns the number of users still in line whose deadline was set.
]]
--- @include "includes/now"
--- @include "includes/liveness"

local now = nowMs(ARGV[2])
local extendOnly = ARGV[3] ~= 'set'
local n = 0
for i = 4, #ARGV - 1, 2 do
  n = n + refreshLiveness(KEYS[1], ARGV[i], now + tonumber(ARGV[i + 1]), extendOnly)
end
return n
