-- Give back the unused part of a reservation and free its concurrency lease: one call.
-- ARGV: lease_id, then one delta per key; a delta of 'lease' removes lease_id from that key's set.
-- Counters that expired meanwhile are left alone (their window or period is over).
local lease_id = ARGV[1]
for i = 1, #KEYS do
  local delta = ARGV[i + 1]
  if delta == 'lease' then
    redis.call('ZREM', KEYS[i], lease_id)
  elseif delta ~= '0' and redis.call('EXISTS', KEYS[i]) == 1 then
    if redis.call('INCRBY', KEYS[i], delta) < 0 then
      redis.call('SET', KEYS[i], 0, 'KEEPTTL')
    end
  end
end
return #KEYS
