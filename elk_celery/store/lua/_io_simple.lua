-- _io_simple.lua: storage adapter of SimpleStrategy.
--   KEYS[17 + 2*(i-1)] p:<id>     string  partition record (_lib.lua; no TTL)
--   KEYS[18 + 2*(i-1)] lock:<id>  string  "node|fence", PX = the lease
-- for the i-th partition the call names (1-based, in ARGV order). The lock
-- key is the lease: it vanishes when the owner stops renewing it.

local function p_load(i, id)
  local raw = redis.call('GET', KEYS[K_STORE + 2 * (i - 1)])
  if not raw then return nil end
  return decode(raw, id)
end

-- p_load for scripts that must carry on past a value that is not an elk
-- partition: it is quarantined (_lib.lua) and CORRUPT returned, then true
-- when it was newly quarantined, and its member. `member`: its "id:min:max",
-- if the caller knows it.
local function p_load_q(i, id, member)
  local raw = redis.call('GET', KEYS[K_STORE + 2 * (i - 1)])
  if not raw then return nil end
  local p = try_decode(raw)
  if p then return p end
  return CORRUPT, quarantine(id, raw, member)
end

local function p_save(i, id, p)
  redis.call('SET', KEYS[K_STORE + 2 * (i - 1)], encode(p))
end

-- Save records already encoded: {i1, id1, raw1, i2, id2, raw2, ...} (plan.lua)
local function p_save_raws(batch)
  for k = 1, #batch, 3 do
    redis.call('SET', KEYS[K_STORE + 2 * (batch[k] - 1)], batch[k + 2])
  end
end

local function p_delete(i, id)
  redis.call('DEL', KEYS[K_STORE + 2 * (i - 1)], KEYS[K_STORE + 2 * (i - 1) + 1])
end

local function lease_alive(i, p, now)
  local owner = redis.call('GET', KEYS[K_STORE + 2 * (i - 1) + 1])
  return owner ~= false and owner == (p.node .. '|' .. p.fence)
end

local function lease_set(i, p, now, ms)
  p.lease = now + ms
  redis.call('SET', KEYS[K_STORE + 2 * (i - 1) + 1], p.node .. '|' .. p.fence, 'PX', ms)
end

local function lease_clear(i, p)
  p.lease = nil
  redis.call('DEL', KEYS[K_STORE + 2 * (i - 1) + 1])
end
