-- Liveness deadlines live in one ZSET per event (score = deadline in ms).
-- XX: only users still in line are refreshed, so a late refresh can never
-- resurrect someone who already entered, left or expired.
-- extendOnly: a poll or a periodic refresh only ever moves the deadline
-- later (GT); a closing socket sets it exactly (now + reconnect grace), which
-- may be earlier than what the last periodic refresh granted.
local function refreshLiveness(liveKey, tok, deadline, extendOnly)
  if extendOnly then
    return redis.call('ZADD', liveKey, 'XX', 'GT', 'CH', deadline, tok)
  end
  return redis.call('ZADD', liveKey, 'XX', 'CH', deadline, tok)
end
