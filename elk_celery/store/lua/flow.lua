-- flow.lua: what the leader needs to size its next round, in one read-only
-- call: the counts that move with demand, the live nodes' slots, the
-- breaker, the planning cursor.
--
-- KEYS: the common keys of _lib.lua (no partition storage).
-- ARGV[1] '1' = also add up the live nodes' slots (field `slots` of each live
--         node's JSON description; 1 for a node that gives none)
-- ARGV[2] queued horizon, ms ('' = none): count in `queued` only messages sent
--         this recently. An older one is likely lost (the worker that had
--         prefetched it was killed, the queue was purged); it is sent again
--         at its resend time, and must not hold the leader back until then.
-- Reply: {server time ms, pending, completed, failed, queued, live nodes,
--         slots, breaker state, breaker opened_at ms (0 = never), cursor ('' = none),
--         held (claimed + running), stats run_ids and run_ms (decimal strings,
--         complete.lua), meta control ('' = running)}

local horizon = opt_num_arg(ARGV[2] or '', 'queued horizon ms', 1, MAX_EXACT)
local now = now_ms()
local c = redis.call('HMGET', KEYS[K_STATS], 'pending', 'completed', 'failed', 'claimed',
  'running', 'run_ids', 'run_ms')
local meta = redis.call('HMGET', KEYS[K_META], 'cursor', 'control')
local live, slots = 0, 0
if ARGV[1] == '1' then
  local nodes = redis.call('ZRANGEBYSCORE', KEYS[K_NODES], '(' .. now, '+inf')
  live = #nodes
  for first = 1, live, 500 do  -- unpack() has a stack limit: HMGET in chunks
    local infos = redis.call('HMGET', KEYS[K_NODES_INFO],
      unpack(nodes, first, math.min(first + 499, live)))
    -- a pattern, not cjson.decode: this loop is O(live nodes) every round,
    -- and decoding a node's whole description cost 4 us of the 4.3 per node
    -- (200 nodes, benchmarks/bench_nodes.py)
    for _, raw in ipairs(infos) do
      local n = raw and tonumber(string.match(raw, '"slots"%s*:%s*(%d+)')) or nil
      slots = slots + ((n and n >= 1) and n or 1)
    end
  end
end
local b = redis.call('HMGET', KEYS[K_BREAKER], 'state', 'opened_at')
return {now, tonumber(c[1] or '0'), tonumber(c[2] or '0'), tonumber(c[3] or '0'),
        horizon and redis.call('ZCOUNT', KEYS[K_QUEUED], now - horizon, '+inf')
          or redis.call('ZCARD', KEYS[K_QUEUED]), live, slots, b[1] or 'closed',
        tonumber(b[2] or '0'), meta[1] or '',
        tonumber(c[4] or '0') + tonumber(c[5] or '0'), c[6] or '0', c[7] or '0', meta[2] or ''}
