-- Liveness: a place is kept while any holder claims it (docs/PROTOCOL.md,
-- section 6). Claims are fields of the user's hash, each a deadline in Redis
-- ms:
--   lp           polls: every status poll claims poll time + the poll
--                timeout, and a poll claim only ever moves later (polls of
--                one user may arrive at several instances);
--   lc:<inst>    one gateway instance's open sockets for this user: renewed
--                while one is open; when the instance's last socket closes it
--                becomes exactly close time + the event's reconnect grace.
--                Only that instance writes it, so it may move earlier.
-- The place's deadline in `live` (what the tick sweeps) is the latest claim.
-- The deadline written at join is no claim: the first claim replaces it, so
-- a user who joined and then held a socket gets exactly the grace after the
-- socket closes, not the join's poll timeout.
-- Only users still in line (present in `live`) are touched: a late claim can
-- never resurrect someone who already entered, left or expired.
-- Returns 1 when the claim was recorded, 0 otherwise.
local function claimLiveness(liveKey, ukey, tok, field, deadline, now)
  local cur = redis.call('ZSCORE', liveKey, tok)
  if not cur then
    return 0
  end
  cur = tonumber(cur)
  if field == 'lp' then
    local old = tonumber(redis.call('HGET', ukey, 'lp') or '0')
    if deadline <= old then
      return 0
    end
  end
  redis.call('HSET', ukey, field, deadline)
  if deadline >= cur then
    if deadline > cur then
      redis.call('ZADD', liveKey, 'XX', deadline, tok)
    end
    return 1
  end
  -- Earlier than the place's deadline: the place keeps its latest claim,
  -- which may or may not have been this one. Lapsed claims of others
  -- (instances that died) are dropped on the way.
  local h = redis.call('HGETALL', ukey)
  local best = deadline
  for i = 1, #h, 2 do
    local f = h[i]
    if f ~= field and (f == 'lp' or string.sub(f, 1, 3) == 'lc:') then
      local v = tonumber(h[i + 1])
      if v < now then
        redis.call('HDEL', ukey, f)
      elseif v > best then
        best = v
      end
    end
  end
  if best ~= cur then
    redis.call('ZADD', liveKey, 'XX', best, tok)
  end
  return 1
end
