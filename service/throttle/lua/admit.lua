-- One call per admission: first give back what earlier requests of this tenant did not use (settlements
-- that waited to ride along), then check every counter of the new request and, only if all fit, reserve
-- all of them. Atomic. With no checks, it only settles.
-- ARGV: the settlements' count m, then per settlement a delta (or 'lease') and a lease id; then now, the
--   lease id and the checks' count n, then per check: kind ('window' | 'lease' | 'budget'), limit, amount,
--   weight, ttl. One argument per value: Redis parses them in C (splitting one string in Lua cost ~7 us).
-- KEYS: one per settlement, then per check two for a window (current, previous) and one otherwise.
-- Returns 'admitted first1 second1 first2 second2 ...' (admitted: 0 | 1; counters as found before reserving).
-- The fit rules mirror service/throttle/store.py::fits.
-- Redis shares the cores of the gateways, so the script calls Redis as little as it can: every counter is
-- read by one MGET and written at most once (SET), and a counter's expiry is set when it is created.
local m = tonumber(ARGV[1])
local c = 2 * m + 2 -- where the checks begin in ARGV
local now, lease_id, n = tonumber(ARGV[c]), ARGV[c + 1], tonumber(ARGV[c + 2])

-- Read every counter (not the leases) at once; value[key] is false for a counter that does not exist.
local names, value = {}, {}
local function want(key)
  if value[key] == nil then
    value[key] = false
    names[#names + 1] = key
  end
end
for j = 1, m do
  if ARGV[2 * j] ~= 'lease' then want(KEYS[j]) end
end
local k, i = m + 1, c + 3
for _ = 1, n do
  local kind = ARGV[i]
  if kind == 'window' then
    want(KEYS[k])
    want(KEYS[k + 1])
    k = k + 2
  else
    if kind == 'budget' then want(KEYS[k]) end
    k = k + 1
  end
  i = i + 5
end
if #names > 0 then
  local found = redis.call('MGET', unpack(names))
  for j = 1, #names do
    if found[j] then value[names[j]] = tonumber(found[j]) end
  end
end

-- Settlements. A counter that expired meanwhile is left alone: its window or period is over.
local dirty, created = {}, {}
local freed = {}
for j = 1, m do
  local key, delta = KEYS[j], ARGV[2 * j]
  if delta == 'lease' then
    if not freed[key] then
      freed[key] = {}
      freed[#freed + 1] = key
    end
    local ids = freed[key]
    ids[#ids + 1] = ARGV[2 * j + 1]
  elseif value[key] then
    value[key] = math.max(0, value[key] + tonumber(delta))
    dirty[key] = true
  end
end
for j = 1, #freed do
  redis.call('ZREM', freed[j], unpack(freed[freed[j]]))
end

-- Checks.
local admitted = 1
local counts = {}
k, i = m + 1, c + 3
for _ = 1, n do
  local kind, limit, amount = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local first, second = 0, 0
  if kind == 'window' then
    first, second = value[KEYS[k]] or 0, value[KEYS[k + 1]] or 0
    if second * tonumber(ARGV[i + 3]) + first + amount > limit then admitted = 0 end
    k = k + 2
  elseif kind == 'lease' then
    first = redis.call('ZCARD', KEYS[k])
    if first + 1 > limit then
      -- Leases past their expiry belong to gateways that died holding them.
      redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now)
      first = redis.call('ZCARD', KEYS[k])
      if first + 1 > limit then admitted = 0 end
    end
    k = k + 1
  else
    first = value[KEYS[k]] or 0
    if first >= limit or first + amount > limit then admitted = 0 end
    k = k + 1
  end
  counts[#counts + 1] = string.format('%d %d', first, second)
  i = i + 5
end

-- Reservations: leases now, counters with the settlements below.
if admitted == 1 then
  k, i = m + 1, c + 3
  for _ = 1, n do
    local kind, amount, ttl = ARGV[i], tonumber(ARGV[i + 2]), ARGV[i + 4]
    if kind == 'lease' then
      redis.call('ZADD', KEYS[k], now + tonumber(ttl), lease_id)
      redis.call('EXPIRE', KEYS[k], ttl)
    elseif amount ~= 0 then
      local key = KEYS[k]
      if not value[key] then created[key] = ttl end
      value[key] = (value[key] or 0) + amount
      dirty[key] = true
    end
    if kind == 'window' then k = k + 2 else k = k + 1 end
    i = i + 5
  end
end

for key in pairs(dirty) do
  if created[key] then
    redis.call('SET', key, string.format('%d', value[key]), 'EX', created[key])
  else
    redis.call('SET', key, string.format('%d', value[key]), 'KEEPTTL')
  end
end
return admitted .. ' ' .. table.concat(counts, ' ')
