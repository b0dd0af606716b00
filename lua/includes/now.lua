-- Clock shared by every script. ARGV[2] is a millisecond override used only by
-- the property tests (virtual time); the gateway passes "" so Redis' own TIME is
-- the single clock for all instances (no skew between gateway hosts).
local function nowMs(override)
  if override ~= nil and override ~= '' then
    return tonumber(override)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
