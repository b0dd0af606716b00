--- @include "includes/unbind-user"

-- Takes a user out of the line for good (entered, left, expired). Every exit
-- from `q` goes through here so that the exit log, the finished index and the
-- counters can never disagree with the line itself.
--   K: table with q, ready, live, stats, fin, exits, hist keys; and entrants
--      while the event is in its pre-queue (an entrant who goes before the
--      draw is not in the published entrant list; after the draw the list
--      is what was drawn and never changes)
--   wasWaiting: true when the user left from the waiting part (not yet promoted);
--               counted as abandonment for the ETA's promote share.
local function finishUser(K, base, tok, newState, reason, now, wasWaiting)
  local seq = redis.call('ZSCORE', K.q, tok)
  redis.call('ZREM', K.q, tok)
  redis.call('ZREM', K.ready, tok)
  redis.call('ZREM', K.live, tok)
  local ukey = base .. 'u:' .. tok
  if K.entrants then
    local rc = redis.call('HGET', ukey, 'rc')
    if rc then
      redis.call('ZREM', K.entrants, rc)
    end
  end
  redis.call('HSET', ukey, 's', newState, 'f', now, 'why', reason)
  redis.call('ZADD', K.fin, now, tok)
  if seq then
    local x = redis.call('HINCRBY', K.stats, 'xseq', 1)
    redis.call('RPUSH', K.exits, x .. ':' .. seq .. ':' .. reason)
  end
  if newState ~= 'a' then
    -- An admitted user keeps the user_id binding until cleanup so the same
    -- user cannot take a second place; anyone else may join again.
    unbindUser(base, tok, ukey)
    -- and a session slot (K.active: the event has max_active_sessions) is
    -- free again; an admitted user keeps theirs until the admission expires or is used
    if K.active then
      redis.call('ZREM', K.active, tok)
    end
  end
  if wasWaiting then
    redis.call('HINCRBY', K.hist, 'a:' .. math.floor(now / 10000), 1)
  end
  redis.call('HINCRBY', K.stats, reason, 1)
end
