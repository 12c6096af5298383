-- _io_hash.lua: storage adapter of HashPartitionStrategy.
--   KEYS[17]           partitions  hash  the layout before buckets: partition id ->
--                                        record; read, and emptied as they change
--   KEYS[18 + (i-1)]   pb:<bucket> hash  partition id -> partition record (_lib.lua),
--                                        for the i-th partition the call names
--                                        (1-based, in ARGV order); bucket = id // 100
--                                        (elk_celery/keys.py), so a bucket stays a
--                                        small listpack-encoded hash
-- The lease lives in the partition itself (field `lease`, expiry in ms).

local K_OLD = K_STORE

local function p_raw(i, id)
  local raw = redis.call('HGET', KEYS[K_STORE + i], id)
  if raw then return raw, false end
  raw = redis.call('HGET', KEYS[K_OLD], id)
  return raw, raw ~= false
end

-- Partitions read from the old hash move to their bucket when saved.
local FROM_OLD = {}

local function p_load(i, id)
  local raw, old = p_raw(i, id)
  if not raw then return nil end
  local p = decode(raw, id)
  if old then FROM_OLD[p] = true end
  return p
end

-- p_load for scripts that must carry on past a value that is not an elk
-- partition: it is quarantined (_lib.lua) and CORRUPT returned, then true
-- when it was newly quarantined, and its member. `member`: its "id:min:max",
-- if the caller knows it.
local function p_load_q(i, id, member)
  local raw, old = p_raw(i, id)
  if not raw then return nil end
  local p = try_decode(raw)
  if p then
    if old then FROM_OLD[p] = true end
    return p
  end
  return CORRUPT, quarantine(id, raw, member)
end

local function p_save(i, id, p)
  redis.call('HSET', KEYS[K_STORE + i], id, encode(p))
  if FROM_OLD[p] then redis.call('HDEL', KEYS[K_OLD], id) end
end

-- Save records already encoded: {i1, id1, raw1, i2, id2, raw2, ...} (plan.lua),
-- one HSET per bucket
local function p_save_raws(batch)
  local by_key, order = {}, {}
  for k = 1, #batch, 3 do
    local key = KEYS[K_STORE + batch[k]]
    local args = by_key[key]
    if not args then
      args = {}
      by_key[key] = args
      order[#order + 1] = K_STORE + batch[k]
    end
    args[#args + 1], args[#args + 2] = batch[k + 1], batch[k + 2]
  end
  for _, at in ipairs(order) do redis.call('HSET', KEYS[at], unpack(by_key[KEYS[at]])) end
end

local function p_delete(i, id)
  redis.call('HDEL', KEYS[K_STORE + i], id)
  redis.call('HDEL', KEYS[K_OLD], id)
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
