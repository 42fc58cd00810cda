-- Give back the unused part of a reservation and free its concurrency lease: one call.
-- ARGV[1], space-separated: lease id, then one delta per key; 'lease' removes the lease id from that key's set.
-- Counters that expired meanwhile are left alone (their window or period is over).
local a = {}
for word in string.gmatch(ARGV[1], '%S+') do a[#a + 1] = word end
local lease_id = a[1]
for i = 1, #KEYS do
  local delta = a[i + 1]
  if delta == 'lease' then
    redis.call('ZREM', KEYS[i], lease_id)
  elseif delta ~= '0' and redis.call('EXISTS', KEYS[i]) == 1 then
    if redis.call('INCRBY', KEYS[i], delta) < 0 then
      redis.call('SET', KEYS[i], 0, 'KEEPTTL')
    end
  end
end
return #KEYS
