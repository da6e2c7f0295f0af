/**
 * Lua scripts run atomically inside Redis (TESTPLAN §4.2, after Centrifuge's
 * broker_history_add_stream.lua). Each script touches only keys of one
 * channel, all sharing the `{channel}` hash tag, so they also run unchanged
 * on one shard of a Redis Cluster.
 */

/**
 * Publish: assign the next offset, append to the history stream and fan out,
 * in one step — so positions are gap-free and PUB/SUB order equals offset
 * order on every node.
 *
 * KEYS[1] meta hash (e = epoch, s = top offset), KEYS[2] history stream
 * ARGV[1] PUB/SUB channel, ARGV[2] envelope, ARGV[3] history size,
 * ARGV[4] history TTL in ms, ARGV[5] a fresh epoch to use if none exists,
 * ARGV[6] position TTL in ms (the meta hash outlives the history, so a quiet
 * channel keeps its epoch and live subscribers are not reset)
 * Returns { offset, epoch }.
 */
export const PUBLISH_SCRIPT = `
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  -- No meta: first publication, or Redis lost it (restart without persistence,
  -- eviction, TTL). Start a new epoch and drop whatever stream is left behind.
  epoch = ARGV[5]
  redis.call('hset', KEYS[1], 'e', epoch)
  redis.call('del', KEYS[2])
end
local offset = redis.call('hincrby', KEYS[1], 's', 1)
if tonumber(ARGV[3]) > 0 then
  redis.call('xadd', KEYS[2], 'MAXLEN', ARGV[3], tostring(offset), 'd', ARGV[2])
  redis.call('pexpire', KEYS[2], ARGV[4])
end
redis.call('pexpire', KEYS[1], ARGV[6])
redis.call('publish', ARGV[1], 'p' .. tostring(offset) .. ',' .. epoch .. ',' .. ARGV[2])
return { offset, epoch }
`;

/**
 * History and top position read together, so the returned run and the top
 * are consistent (the recovery predicate compares them). A channel without
 * meta gets an epoch now, like the memory broker, so that a subscriber of an
 * empty channel and the first publication agree on it.
 *
 * KEYS[1] meta hash, KEYS[2] history stream
 * ARGV[1] a fresh epoch, ARGV[2] position TTL in ms (for a new meta hash), ARGV[3] first stream id to read
 * ('-' for the oldest), ARGV[4] limit (-1 = all), ARGV[5] the caller's epoch
 * ('' when reading without a position).
 * Returns { top, epoch, entries } with entries as XRANGE gives them.
 */
export const HISTORY_SCRIPT = `
local meta = redis.call('hmget', KEYS[1], 'e', 's')
local epoch = meta[1]
if not epoch then
  epoch = ARGV[1]
  redis.call('hset', KEYS[1], 'e', epoch, 's', 0)
  redis.call('pexpire', KEYS[1], ARGV[2])
  redis.call('del', KEYS[2])
  return { 0, epoch, {} }
end
local top = tonumber(meta[2]) or 0
local limit = tonumber(ARGV[4])
if limit == 0 or (ARGV[5] ~= '' and ARGV[5] ~= epoch) then
  return { top, epoch, {} }
end
local entries
if limit > 0 then
  entries = redis.call('xrange', KEYS[2], ARGV[3], '+', 'COUNT', limit)
else
  entries = redis.call('xrange', KEYS[2], ARGV[3], '+')
end
return { top, epoch, entries }
`;

/**
 * Presence entries live in a hash (client → info JSON) with a sorted set of
 * expiry times beside it; every node re-adds its own clients periodically, so
 * the clients of a node that crashed drop out once their expiry passes.
 * Times come from Redis itself (TIME), so node clocks need not agree.
 */
const NOW_MS = `
local clock = redis.call('time')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
`;

/** KEYS[1] hash, KEYS[2] expiry zset; ARGV[1] ttl ms, then client/info pairs. */
export const PRESENCE_ADD_SCRIPT = `${NOW_MS}
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('zadd', KEYS[2], now + ttl, ARGV[i])
  redis.call('hset', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('pexpire', KEYS[1], ttl)
redis.call('pexpire', KEYS[2], ttl)
return 1
`;

/** KEYS[1] hash, KEYS[2] expiry zset; ARGV[1] client. */
export const PRESENCE_REMOVE_SCRIPT = `
redis.call('hdel', KEYS[1], ARGV[1])
redis.call('zrem', KEYS[2], ARGV[1])
return 1
`;

/** KEYS[1] hash, KEYS[2] expiry zset. Drops expired clients, returns HGETALL of the rest. */
export const PRESENCE_LIST_SCRIPT = `${NOW_MS}
local expired = redis.call('zrangebyscore', KEYS[2], '-inf', now)
if #expired > 0 then
  redis.call('zremrangebyscore', KEYS[2], '-inf', now)
  for i = 1, #expired, 500 do
    redis.call('hdel', KEYS[1], unpack(expired, i, math.min(i + 499, #expired)))
  end
end
return redis.call('hgetall', KEYS[1])
`;
