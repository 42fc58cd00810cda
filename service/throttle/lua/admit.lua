-- One call admits the requests of one tenant made in one turn of the event loop: first it gives back what
-- earlier requests of this tenant did not use (settlements that waited to ride along), then, one admission
-- after the other, checks every counter of a request and, only if all fit, reserves all of them. Each
-- admission sees what the ones before it reserved; the whole call is atomic. With no admissions, it only
-- settles.
-- ARGV: the settlements' count m, then per settlement a delta (or 'lease') and a lease id; then the
--   admissions' count a, then per admission: now, its lease id, its checks' count n and its shape: '=' (the
--   same counters, limits and expiries as the admission before it) or '+' followed by, per check, kind
--   ('window' | 'lease' | 'budget'), limit and ttl; then per check its amount and weight. One argument per
--   value: Redis parses them in C (splitting one string in Lua cost ~7 us); a burst of one key's requests
--   sends its counters' keys and limits once.
-- KEYS: one per settlement, then per admission of shape '+' and check two for a window (current, previous),
--   one otherwise.
-- Returns integers, per admission: admitted (0 | 1), then first and second of each counter as found before
-- reserving. The fit rules mirror service/throttle/store.py::fits.
-- Redis shares the cores of the gateways, so the script calls Redis as little as it can: every counter is
-- read by one MGET and written at most once (SET), a counter's expiry is set when it is created, and each
-- lease set is counted (ZCARD) and given its expiry once per call, however many admissions it serves.
local m = tonumber(ARGV[1])
local a = tonumber(ARGV[2 * m + 2])

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
-- Where each admission's values are: at_now[j] (now, then its lease id), at_shape[j] (kind, limit and ttl
-- per check), at_key[j] (its counters' keys), at_vary[j] (amount and weight per check); and its checks' count.
local at_now, at_shape, at_key, at_vary, at_n = {}, {}, {}, {}, {}
local k, i = m + 1, 2 * m + 3
local shape_i, shape_k
for j = 1, a do
  local n = tonumber(ARGV[i + 2])
  at_now[j], at_n[j] = i, n
  local fresh = ARGV[i + 3] == '+'
  i = i + 4
  if fresh then
    shape_i, shape_k = i, k
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
      i = i + 3
    end
  end
  at_shape[j], at_key[j], at_vary[j] = shape_i, shape_k, i
  i = i + 2 * n
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

-- Admissions, in order.
local held, leased = {}, {} -- per lease set: slots held now, and the expiry to give it
local reply = {}
for j = 1, a do
  local now, lease_id, n = tonumber(ARGV[at_now[j]]), ARGV[at_now[j] + 1], at_n[j]
  local shape_at, vary_at = at_shape[j], at_vary[j]
  local at = #reply + 1
  local admitted = 1
  reply[at] = 0
  -- Checks.
  k = at_key[j]
  for c = 0, n - 1 do
    local s, v = shape_at + 3 * c, vary_at + 2 * c
    local kind, limit, amount = ARGV[s], tonumber(ARGV[s + 1]), tonumber(ARGV[v])
    local first, second = 0, 0
    if kind == 'window' then
      first, second = value[KEYS[k]] or 0, value[KEYS[k + 1]] or 0
      if second * tonumber(ARGV[v + 1]) + first + amount > limit then admitted = 0 end
      k = k + 2
    elseif kind == 'lease' then
      local key = KEYS[k]
      first = held[key] or redis.call('ZCARD', key)
      if first + 1 > limit then
        -- Leases past their expiry belong to gateways that died holding them.
        redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
        first = redis.call('ZCARD', key)
        if first + 1 > limit then admitted = 0 end
      end
      held[key] = first
      k = k + 1
    else
      first = value[KEYS[k]] or 0
      if first >= limit or first + amount > limit then admitted = 0 end
      k = k + 1
    end
    reply[#reply + 1] = first
    reply[#reply + 1] = second
  end
  reply[at] = admitted
  -- Reservations: leases now, counters with the settlements below.
  if admitted == 1 then
    k = at_key[j]
    for c = 0, n - 1 do
      local s = shape_at + 3 * c
      local kind, amount, ttl = ARGV[s], tonumber(ARGV[vary_at + 2 * c]), ARGV[s + 2]
      local key = KEYS[k]
      if kind == 'lease' then
        redis.call('ZADD', key, now + tonumber(ttl), lease_id)
        held[key] = held[key] + 1
        leased[key] = ttl
      elseif amount ~= 0 then
        if not value[key] then created[key] = ttl end
        value[key] = (value[key] or 0) + amount
        dirty[key] = true
      end
      if kind == 'window' then k = k + 2 else k = k + 1 end
    end
  end
end

for key, ttl in pairs(leased) do
  redis.call('EXPIRE', key, ttl)
end
for key in pairs(dirty) do
  if created[key] then
    redis.call('SET', key, string.format('%d', value[key]), 'EX', created[key])
  else
    redis.call('SET', key, string.format('%d', value[key]), 'KEEPTTL')
  end
end
return reply
