-- Check every counter of one admission and, only if all fit, reserve all of them: atomically, one call.
-- ARGV: now, lease_id, n, then per check: kind ('window' | 'lease' | 'budget'), limit, amount, weight, ttl.
-- KEYS: per check, two keys for a window (current, previous), one otherwise.
-- Returns {admitted (0|1), count1a, count1b, count2a, ...} as found before reserving.
-- The fit rules mirror service/throttle/memory.py::_fits.
local now = tonumber(ARGV[1])
local lease_id = ARGV[2]
local n = tonumber(ARGV[3])
local result = {1}
local k, a = 1, 4
for i = 1, n do
  local kind, limit, amount, weight = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local first, second = 0, 0
  if kind == 'window' then
    first = tonumber(redis.call('GET', KEYS[k]) or '0')
    second = tonumber(redis.call('GET', KEYS[k + 1]) or '0')
    if second * weight + first + amount > limit then result[1] = 0 end
    k = k + 2
  elseif kind == 'lease' then
    -- Leases past their expiry belong to gateways that died holding them.
    redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now)
    first = redis.call('ZCARD', KEYS[k])
    if first + 1 > limit then result[1] = 0 end
    k = k + 1
  else
    first = tonumber(redis.call('GET', KEYS[k]) or '0')
    if first >= limit or first + amount > limit then result[1] = 0 end
    k = k + 1
  end
  result[#result + 1] = first
  result[#result + 1] = second
  a = a + 5
end
if result[1] == 0 then
  return result
end
k, a = 1, 4
for i = 1, n do
  local kind, amount, ttl = ARGV[a], ARGV[a + 2], tonumber(ARGV[a + 4])
  if kind == 'lease' then
    redis.call('ZADD', KEYS[k], now + ttl, lease_id)
    redis.call('EXPIRE', KEYS[k], ttl)
  elseif amount ~= '0' then
    redis.call('INCRBY', KEYS[k], amount)
    redis.call('EXPIRE', KEYS[k], ttl)
  end
  if kind == 'window' then k = k + 2 else k = k + 1 end
  a = a + 5
end
return result
