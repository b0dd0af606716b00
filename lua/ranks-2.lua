--[[
  Ranks of many users at once, exact as of one exit sequence number: an
  instance that missed a tick message resynchronises its attached users with
  one call per event instead of one per user.

  KEYS[1] q       line ZSET
  KEYS[2] stats   counters hash (xseq)
  ARGV[1] base    ARGV[2] unused
  ARGV[3..] tokens

  Returns {xseq, rank1, rank2, ...} with -1 for anyone no longer in line.
]]
local out = {redis.call('HGET', KEYS[2], 'xseq') or '0'}
for i = 3, #ARGV do
  local r = redis.call('ZRANK', KEYS[1], ARGV[i])
  out[#out + 1] = r or -1
end
return out
