-- One call per admission: first give back what earlier requests of this tenant did not use (settlements
-- that waited to ride along), then check every counter of the new request and, only if all fit, reserve
-- all of them. Atomic. With no checks, it only settles.
-- ARGV[1], space-separated settlements: count, then per settlement a delta (or 'lease') and a lease id.
-- ARGV[2], space-separated checks: now, lease id, count, then per check: kind ('window' | 'lease' |
--   'budget'), limit, amount, weight, ttl.
-- KEYS: one per settlement, then per check two for a window (current, previous) and one otherwise.
-- Returns 'admitted first1 second1 first2 second2 ...' (admitted: 0 | 1; counters as found before reserving).
-- The fit rules mirror service/throttle/store.py::fits.
local function words(text)
  local out = {}
  for word in string.gmatch(text, '%S+') do out[#out + 1] = word end
  return out
end

local s = words(ARGV[1])
local m = tonumber(s[1])
for j = 1, m do
  local key, delta, lease_id = KEYS[j], s[2 * j], s[2 * j + 1]
  if delta == 'lease' then
    redis.call('ZREM', key, lease_id)
  elseif redis.call('EXISTS', key) == 1 then
    -- A counter that expired meanwhile is left alone: its window or period is over.
    if redis.call('INCRBY', key, delta) < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
  end
end

local a = words(ARGV[2])
local now, lease_id, n = tonumber(a[1]), a[2], tonumber(a[3])
local admitted = 1
local counts = {}
local k, i = m + 1, 4
for _ = 1, n do
  local kind, limit, amount, weight = a[i], tonumber(a[i + 1]), tonumber(a[i + 2]), tonumber(a[i + 3])
  local first, second = '0', '0'
  if kind == 'window' then
    first = redis.call('GET', KEYS[k]) or '0'
    second = redis.call('GET', KEYS[k + 1]) or '0'
    if tonumber(second) * weight + tonumber(first) + amount > limit then admitted = 0 end
    k = k + 2
  elseif kind == 'lease' then
    -- Leases past their expiry belong to gateways that died holding them.
    redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now)
    local held = redis.call('ZCARD', KEYS[k])
    if held + 1 > limit then admitted = 0 end
    first = string.format('%d', held)
    k = k + 1
  else
    first = redis.call('GET', KEYS[k]) or '0'
    local spent = tonumber(first)
    if spent >= limit or spent + amount > limit then admitted = 0 end
    k = k + 1
  end
  counts[#counts + 1] = first
  counts[#counts + 1] = second
  i = i + 5
end
if admitted == 1 then
  k, i = m + 1, 4
  for _ = 1, n do
    local kind, amount, ttl = a[i], a[i + 2], tonumber(a[i + 4])
    if kind == 'lease' then
      redis.call('ZADD', KEYS[k], now + ttl, lease_id)
      redis.call('EXPIRE', KEYS[k], ttl)
    elseif amount ~= '0' then
      redis.call('INCRBY', KEYS[k], amount)
      redis.call('EXPIRE', KEYS[k], ttl)
    end
    if kind == 'window' then k = k + 2 else k = k + 1 end
    i = i + 5
  end
end
return admitted .. ' ' .. table.concat(counts, ' ')
