-- _io_hash.lua: storage adapter of HashPartitionStrategy.
--   KEYS[16] partitions  hash  partition id -> partition JSON
-- The lease lives in the partition itself (field `lease`, expiry in ms).

local function p_load(i, id)
  local raw = redis.call('HGET', KEYS[K_STORE], id)
  if not raw then return nil end
  return decode(raw, id)
end

-- p_load for scripts that must carry on past a value that is not an elk
-- partition: it is quarantined (_lib.lua) and CORRUPT returned, then true
-- when it was newly quarantined, and its member. `member`: its "id:min:max",
-- if the caller knows it.
local function p_load_q(i, id, member)
  local raw = redis.call('HGET', KEYS[K_STORE], id)
  if not raw then return nil end
  local p = try_decode(raw)
  if p then return p end
  return CORRUPT, quarantine(id, raw, member)
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
