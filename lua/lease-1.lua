--[[
  Acquire or renew the ticker lease of one event.

  KEYS[1] lease
  ARGV[1] base  ARGV[2] unused (clock not needed)  ARGV[3] instance id  ARGV[4] lease ms

  Returns 1 when the caller holds the lease after the call, 0 otherwise.
]]
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[3] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', tonumber(ARGV[4]))
  return 1
end
return 0
