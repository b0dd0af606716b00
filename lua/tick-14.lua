--[[
  One admission tick for one event. Only the lease holder may tick (fencing:
  a stale holder that lost its lease gets {-1} and changes nothing).

  KEYS[1] cfg    KEYS[2] bucket  KEYS[3] q      KEYS[4] ready  KEYS[5] live
  KEYS[6] stats  KEYS[7] hist    KEYS[8] exits  KEYS[9] fin    KEYS[10] eta
  KEYS[11] lease  KEYS[12] seq   KEYS[13] entrants  KEYS[14] active

  ARGV[1] base   ARGV[2] now override
  ARGV[3] instance id (lease owner)   ARGV[4] lease ms
  ARGV[5] max promotions per tick     ARGV[6] max expiries per tick (each kind)
  ARGV[7] max exit-log entries returned
  ARGV[8] gap ms: a tick this long after the previous one means nobody could
          refresh liveness meanwhile (Redis or every gateway was down); never
          more than half the event's reconnect grace, since a claim renewed
          just before such an outage outlives the grace by little
  ARGV[9] quiet ms: after such a gap, liveness is not swept for this long, so
          instances and pollers can refresh the users who were live all along

  Order inside the tick: follow the event's schedule (scheduled -> prequeue
  at prequeue_opens_ms; ended at ends_ms), expire ready users whose window
  passed, remove users
  whose liveness lapsed, refill the bucket by elapsed time (partial tokens
  kept, capped at burst), promote at most floor(tokens) from the head of the
  waiting part, record outflow history, recompute the ETA parameters, drain
  the exit log. Everything is bounded by the ARGV limits, never by line length.
  At starts_ms the pre-queue draws (includes/draw.lua: O(1), the order was
  kept by draw key all along) and the event opens, after this tick's
  liveness sweep so the drawn entrants are those still present. While the
  event is ended, at most ARGV[6] waiting places per tick are released
  (state x, reason ended; no exit-log entries: every instance tells its
  users from the state change, and nobody behind them is left to move up).
  Each transition happens in exactly one tick: it is a state change under
  the lease, in this script.
  With max_active_sessions set, promotions are also bounded by the free
  sessions: `active` holds every ready user (until its window) and every
  admitted one (until its admission expires, or it is redeemed or spent:
  session-end-1.lua), by expiry; lapsed ones are dropped here first.

  Returns (status codes: lua/status-codes.json) {NOT_LEASE_HOLDER};
  {EVENT_NOT_FOUND} the event has no configuration; else
  {TICKED, state, qlen, readyCount, tokens, promoted{tok,seq,deadline,...},
   expired{tok,reason,...}, exits{"xseq:seq:reason",...}, eta{rate,rw,r1,r5,r15,share,conf,spread},
   now, xseq, reconnectGraceSec, noticeMs, startsMs, transition}
  (noticeMs: when the operator's message last changed, 0 = never; instances
  that see a new value fetch the message and push it to their sockets;
  startsMs: the scheduled start, 0 = none; transition: what this tick did
  to the event's state: "" nothing, "prequeue", "drawn", "ended")
]]
--- @include "includes/status"
--- @include "includes/now"
--- @include "includes/finish"
--- @include "includes/draw"

local base = ARGV[1]
local now = nowMs(ARGV[2])
if redis.call('GET', KEYS[11]) ~= ARGV[3] then
  return {S.NOT_LEASE_HOLDER}
end
redis.call('PEXPIRE', KEYS[11], tonumber(ARGV[4]))

local cfg = redis.call('HMGET', KEYS[1], 'rate', 'burst', 'ready_window_sec', 'state', 'reconnect_grace_sec', 'notice_ms',
  'prequeue_opens_ms', 'starts_ms', 'ends_ms', 'max_active_sessions')
if not cfg[1] then
  return {S.EVENT_NOT_FOUND}
end
local rate, burst, window, state = tonumber(cfg[1]), tonumber(cfg[2]), tonumber(cfg[3]) * 1000, cfg[4]
local prequeueOpens, starts, ends = tonumber(cfg[7] or ''), tonumber(cfg[8] or ''), tonumber(cfg[9] or '')
local transition = ''
if state == 'scheduled' and prequeueOpens and now >= prequeueOpens then
  state = 'prequeue'
  redis.call('HSET', KEYS[1], 'state', state, 'prequeue_opened_ms', now)
  transition = 'prequeue'
end
if ends and now >= ends and state ~= 'ended' then
  state = 'ended'
  redis.call('HSET', KEYS[1], 'state', state, 'end_reason', 'ends_at', 'ended_ms', now)
  transition = 'ended'
end
local maxPromote, maxSweep, maxExits = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local K = {q = KEYS[3], ready = KEYS[4], live = KEYS[5], stats = KEYS[6], fin = KEYS[9], exits = KEYS[8], hist = KEYS[7]}
if state == 'prequeue' then
  -- an entrant who goes before the draw leaves the entrant list
  K.entrants = KEYS[13]
end
local maxActive = tonumber(cfg[10] or '')
if maxActive then
  K.active = KEYS[14]
end
local bucketIdx = math.floor(now / 10000)

local expired = {}
-- After an outage nobody could refresh liveness: do not remove people for it
-- until they had the chance (a lost place is worse than a late sweep).
local lastTick = tonumber(redis.call('HGET', KEYS[2], 'ts') or now)
local quietUntil = tonumber(redis.call('HGET', KEYS[2], 'quiet') or '0')
local gapMs = math.min(tonumber(ARGV[8]), tonumber(cfg[5] or '30') * 500)
if now - lastTick > gapMs then
  quietUntil = now + tonumber(ARGV[9])
  redis.call('HSET', KEYS[2], 'quiet', quietUntil)
end
local sweepLiveness = now >= quietUntil

-- 1. ready users whose window passed (deadline < now)
local gone = redis.call('ZRANGEBYSCORE', K.ready, '-inf', '(' .. now, 'LIMIT', 0, maxSweep)
for _, tok in ipairs(gone) do
  finishUser(K, base, tok, 'x', 'ready_timeout', now, false)
  expired[#expired + 1] = tok
  expired[#expired + 1] = 'ready_timeout'
end
-- 2. users whose liveness lapsed (stopped polling, socket gone past the grace)
gone = {}
if sweepLiveness then
  gone = redis.call('ZRANGEBYSCORE', K.live, '-inf', '(' .. now, 'LIMIT', 0, maxSweep)
end
for _, tok in ipairs(gone) do
  local wasWaiting = redis.call('ZSCORE', K.ready, tok) == false
  finishUser(K, base, tok, 'x', 'liveness', now, wasWaiting)
  expired[#expired + 1] = tok
  expired[#expired + 1] = 'liveness'
end

-- 2b. the draw: the pre-queue's order is final (kept by draw key since each
--     entrant joined); later arrivals queue FIFO behind every entrant
if (state == 'scheduled' or state == 'prequeue') and starts and now >= starts then
  local entrants = redis.call('ZCARD', KEYS[13])
  state = 'open'
  redis.call('HSET', KEYS[1], 'state', state, 'drawn_ms', now, 'draw_entrants', entrants)
  if tonumber(redis.call('GET', KEYS[12]) or '0') < DRAW_SEQ_BASE then
    redis.call('SET', KEYS[12], string.format('%.0f', DRAW_SEQ_BASE))
  end
  transition = 'drawn'
end

-- 2c. an ended event lets its waiting places go, a bounded number per tick
if state == 'ended' then
  local ready = redis.call('ZCARD', K.ready)
  local gone = redis.call('ZRANGE', K.q, ready, ready + maxSweep - 1)
  if #gone > 0 then
    redis.call('ZREMRANGEBYRANK', K.q, ready, ready + #gone - 1)
    for i = 1, #gone, 1000 do
      local part = {unpack(gone, i, math.min(#gone, i + 999))}
      redis.call('ZREM', K.live, unpack(part))
      local fin = {}
      for j, tok in ipairs(part) do
        fin[2 * j - 1] = now
        fin[2 * j] = tok
        redis.call('HSET', base .. 'u:' .. tok, 's', 'x', 'f', now, 'why', 'ended')
      end
      redis.call('ZADD', K.fin, unpack(fin))
    end
    redis.call('HINCRBY', K.stats, 'ended', #gone)
  end
end

-- 3. token bucket: refill by elapsed time, keep the fraction
local b = redis.call('HMGET', KEYS[2], 'tokens', 'ts')
local tokens, last = tonumber(b[1]), tonumber(b[2])
if not tokens then
  tokens, last = burst, now
end
local elapsed = now - last
if elapsed < 0 then
  elapsed = 0
end
tokens = math.min(burst, tokens + elapsed / 1000 * rate)

local readyCount = redis.call('ZCARD', K.ready)
local qlen = redis.call('ZCARD', K.q)
local waiting = qlen - readyCount
local promoted = {}
-- (not in the draw's own tick: the positions pushed at the draw are then exactly the drawn places)
if state == 'open' and waiting > 0 and transition ~= 'drawn' then
  -- Busy time: the line had people waiting and the event was admitting. The
  -- measured rate is promotions per busy second, so idle time does not read
  -- as a slow line.
  redis.call('HINCRBY', K.hist, 'b:' .. bucketIdx, math.min(elapsed, 5000))
  -- 1e-9: repeated fractional refills can land a hair under a whole token
  -- (2.9999999999); flooring that would silently drop an admission.
  local n = math.min(math.floor(tokens + 1e-9), waiting, maxPromote)
  if maxActive then
    redis.call('ZREMRANGEBYSCORE', KEYS[14], '-inf', '(' .. now)
    n = math.max(0, math.min(n, maxActive - redis.call('ZCARD', KEYS[14])))
  end
  if n > 0 then
    -- ready users are always a prefix of q, so the waiting head starts at readyCount
    local head = redis.call('ZRANGE', K.q, readyCount, readyCount + n - 1, 'WITHSCORES')
    local deadline = now + window
    for i = 1, #head, 2 do
      local tok = head[i]
      redis.call('ZADD', K.ready, deadline, tok)
      if maxActive then
        redis.call('ZADD', KEYS[14], deadline, tok)
      end
      redis.call('HSET', base .. 'u:' .. tok, 's', 'r', 'rd', now, 'dl', deadline)
      promoted[#promoted + 1] = tok
      promoted[#promoted + 1] = head[i + 1]
      promoted[#promoted + 1] = deadline
    end
    tokens = tokens - n
    readyCount = readyCount + n
    redis.call('HINCRBY', K.hist, 'p:' .. bucketIdx, n)
    redis.call('HINCRBY', K.stats, 'promoted', n)
  end
end
redis.call('HSET', KEYS[2], 'tokens', string.format('%.17g', tokens), 'ts', now)

-- 4. outflow over 1/5/15 minute windows (10 s buckets), weighted 0.5/0.3/0.2;
--    buckets older than 15 minutes are dropped here (at most ~90 fields live).
local P, A, B, J = {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}
local spans = {6, 30, 90}
local h = redis.call('HGETALL', K.hist)
for i = 1, #h, 2 do
  local kind, idx = string.match(h[i], '^(%a):(%d+)$')
  idx = tonumber(idx)
  local age = bucketIdx - idx
  if age >= 90 then
    redis.call('HDEL', K.hist, h[i])
  else
    local v = tonumber(h[i + 1])
    for w = 1, 3 do
      if age < spans[w] then
        if kind == 'p' then P[w] = P[w] + v elseif kind == 'a' then A[w] = A[w] + v elseif kind == 'j' then J[w] = J[w] + v else B[w] = B[w] + v end
      end
    end
  end
end
local r = {}
for w = 1, 3 do
  -- Promotions per busy second, smoothed with 10 s of the configured rate as
  -- a prior: with no history the ETA uses the configured rate, and a handful
  -- of discrete promotions cannot swing it; data takes over as it accrues.
  -- Capped at the configured rate: the bucket never sustains more, and an
  -- initial burst must not read as a faster line.
  r[w] = math.min(rate, (P[w] + rate * 10) / (B[w] / 1000 + 10))
end
local rw = 0.5 * r[1] + 0.3 * r[2] + 0.2 * r[3]
-- Share of people ahead who will actually take a slot: one minus the share
-- of joiners (last 15 minutes) who gave up while waiting. Per person, not
-- per exit: promotions are capped by the rate while give-ups follow the
-- arrivals, so during an arrival burst give-ups outnumber promotions and an
-- exit ratio (the rule before this one) read ~half the line as leaving (bench: ETAs at
-- join 18 % short). Give-ups lag the joins they come from, so this errs
-- long, not short. A pseudo-count of 5 joins keeps it at 1 without data.
local share = math.max(0.05, 1 - A[3] / (J[3] + 5))
local n15 = P[3] + A[3]
local agreement = 1
if r[3] > 0 then
  agreement = 1 - math.min(1, math.abs(r[1] - r[3]) / r[3])
end
local conf = (n15 / (n15 + 30)) * agreement
local spread = 0.1 + 0.5 * (1 - conf)
local etaOut = {tostring(rate), tostring(rw), tostring(r[1]), tostring(r[2]), tostring(r[3]),
  tostring(share), tostring(conf), tostring(spread)}
redis.call('HSET', KEYS[10], 'rw', etaOut[2], 'r1', etaOut[3], 'r5', etaOut[4], 'r15', etaOut[5],
  'share', etaOut[6], 'conf', etaOut[7], 'spread', etaOut[8], 'tokens', tostring(tokens), 't', now)

-- 5. drain the exit log for this tick's message
local exits = redis.call('LRANGE', K.exits, 0, maxExits - 1)
if #exits > 0 then
  redis.call('LTRIM', K.exits, #exits, -1)
end

return {S.TICKED, state, redis.call('ZCARD', K.q), readyCount, tostring(tokens), promoted, expired, exits, etaOut, now,
  redis.call('HGET', K.stats, 'xseq') or '0', cfg[5] or '30', cfg[6] or '0', cfg[8] or '0', transition}
