-- Liveness deadlines live in one ZSET per event (score = deadline in ms).
-- XX: only users still in line are refreshed, so a late refresh can never
-- resurrect someone who already entered, left or expired.
local function refreshLiveness(liveKey, tok, deadline)
  return redis.call('ZADD', liveKey, 'XX', 'CH', deadline, tok)
end
