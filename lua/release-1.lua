--[[
  Release the ticker lease of one event, only if the caller still holds it
  (graceful shutdown: another instance takes over at its next attempt instead
  of waiting for the lease to lapse).

  KEYS[1] lease
  ARGV[1] base  ARGV[2] unused  ARGV[3] instance id

  Returns 1 released, 0 not the holder.
]]
if redis.call('GET', KEYS[1]) == ARGV[3] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
