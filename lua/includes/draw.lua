-- The pre-queue draw (docs/FAIRNESS.md, the algorithm `wr-draw-v1`). Every
-- entrant's place in the draw is fixed by a key computed from the event's
-- committed seed and the entrant's public receipt:
--   receipt = first 20 hex digits of SHA-1("receipt:" .. waiting token)
--   key     = first 13 hex digits of SHA-1(seed .. ":" .. receipt), an integer < 2^52
-- Entrants are kept in the line ZSET under their key from the moment they
-- join the pre-queue, so the order is the draw's from the start; nobody sees
-- a position until the start (the seed is secret until then and published
-- after it). The draw at the start is therefore O(1): the state changes and
-- the FIFO sequence moves above every key, so later arrivals queue behind.
local DRAW_SEQ_BASE = 4503599627370496 -- 2^52

local function receiptOf(tok)
  return string.sub(redis.sha1hex('receipt:' .. tok), 1, 20)
end

-- as a string: a Lua number would be printed with 14 significant digits
local function drawKey(seed, receipt)
  return string.format('%.0f', tonumber(string.sub(redis.sha1hex(seed .. ':' .. receipt), 1, 13), 16))
end
