--[[
  An admitted user's session ended before its admission expired: the
  admission was redeemed at the ticket site or spent on a reservation. With
  max_active_sessions the next user is admitted in its place at the next tick.

  KEYS[1] active  ZSET token -> session expiry (ms)

  ARGV[1] base  ARGV[2] now override  ARGV[3] waiting token

  Returns 1 when a session slot was freed, 0 when there was none.
]]
return redis.call('ZREM', KEYS[1], ARGV[3])
