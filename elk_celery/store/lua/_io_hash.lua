-- _io_hash.lua: storage adapter of HashPartitionStrategy.
--   KEYS[16] partitions  hash  partition id -> partition JSON
-- The lease lives in the partition itself (field `lease`, expiry in ms).

local function p_load(i, id)
  local raw = redis.call('HGET', KEYS[K_STORE], id)
  if not raw then return nil end
  return decode(raw, id)
end

local function p_save(i, id, p)
  redis.call('HSET', KEYS[K_STORE], id, cjson.encode(p))
end

-- Save records already encoded: {i1, id1, raw1, i2, id2, raw2, ...} (plan.lua)
local function p_save_raws(batch)
  local args = {}
  for k = 1, #batch, 3 do args[#args + 1], args[#args + 2] = batch[k + 1], batch[k + 2] end
  redis.call('HSET', KEYS[K_STORE], unpack(args))
end

local function p_delete(i, id)
  redis.call('HDEL', KEYS[K_STORE], id)
end

local function lease_alive(i, p, now)
  return p.lease ~= nil and p.lease > now
end

local function lease_set(i, p, now, ms)
  p.lease = now + ms
end

local function lease_clear(i, p)
  p.lease = nil
end
