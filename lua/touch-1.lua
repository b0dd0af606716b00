--[[
  Batch liveness refresh (socket-attached users, refreshed in bulk per event).

  KEYS[1] live    ZSET token -> liveness deadline
  ARGV[1] base    ARGV[2] now override
  ARGV[3] liveness window in ms
  ARGV[4..] tokens

  Returns the number of users still in line whose deadline was moved.
]]
--- @include "includes/now"
--- @include "includes/liveness"

local deadline = nowMs(ARGV[2]) + tonumber(ARGV[3])
local n = 0
for i = 4, #ARGV do
  n = n + refreshLiveness(KEYS[1], ARGV[i], deadline)
end
return n
