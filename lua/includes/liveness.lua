-- Liveness deadlines live in one ZSET per event (score = deadline in ms).
-- XX: only users still in line are refreshed (the deadline is set, not
-- extended: a closing socket sets exactly now + reconnect grace), so a late refresh can never
-- resurrect someone who already entered, left or expired.
local function refreshLiveness(liveKey, tok, deadline)
  return redis.call('ZADD', liveKey, 'XX', 'CH', deadline, tok)
end
