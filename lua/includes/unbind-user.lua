-- Frees a user id's "one place per user" binding, if it still points at this
-- token (the user may have joined again since).
local function unbindUser(base, tok, ukey)
  local uid = redis.call('HGET', ukey, 'u')
  if uid and uid ~= '' then
    local k = base .. 'uid:' .. uid
    if redis.call('GET', k) == tok then
      redis.call('DEL', k)
    end
  end
end
