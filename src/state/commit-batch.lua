--[[
  Commits one lane batch atomically: checks the lane's fence, then writes user states,
  timers, counter increments and the touches decided (the outbox), and advances the fence.
  All or nothing (DESIGN §5): a touch is in the outbox exactly when its decision is in the state.

  KEYS[1]  fence hash        {lane}:fence  (epoch, offset, streamTime, timerBatch: the last timer batch's token)
  KEYS[2]  timers zset       {lane}:timers
  KEYS[3]  outbox hash       {lane}:outbox  (touch id -> touch job JSON; the relay drains it)
  KEYS[4 .. 3+U]             user state keys, one per changed user
  KEYS[4+U .. 3+U+H]         counter hashes
  then 3 keys per HyperLogLog group: the breakdown's value set, the value's HLL, the "other" HLL

  ARGV[1]  epoch the lane was assigned with
  ARGV[2]  first offset of the batch, or -1 for a timer batch (no offset to advance)
  ARGV[3]  last offset of the batch; for a timer batch, its token (unique per store and batch)
  ARGV[4]  stream time after the batch (ms)
  ARGV[5]  U, number of user states
  ARGV[6]  T, number of timer changes
  ARGV[7]  H, number of counter hashes
  ARGV[8]  the fence this lane last saw in Redis (claimed, read or committed), -1 = unknown
  then U user state JSON values,
  then T pairs (member, due): timer member = user id, due = ms or '' to remove the timer,
  then for each hash: F (number of fields), then F pairs (field, delta)
  then G (number of HyperLogLog groups), and per group: maxValues, value, N, then N user ids
  then O (number of outbox entries), then O pairs (touch id, touch job JSON)

  Output:  1 committed (a timer batch whose token was the last one applied: committed before, its
             reply lost or the command re-sent by the client; nothing is written again)
          -1 stale epoch: another consumer owns the lane now (this one is a zombie)
          -2 already applied: the batch starts at or below the fence (a replay)
          -3 fence behind: Redis' fence (or epoch) is below what this lane saw acknowledged, so
             Redis lost writes (a restart from an AOF missing its last second, a failover to a lagging
             replica); committing would skip the lost offsets for good
]]
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
local mine = tonumber(ARGV[1])
if mine < epoch then
  return -1
end
local fenced = tonumber(redis.call('HGET', KEYS[1], 'offset') or '-1')
-- An epoch above Redis' own can only come from a claim Redis has since lost.
if mine > epoch or fenced < tonumber(ARGV[8]) then
  return -3
end
local first = tonumber(ARGV[2])
if first >= 0 then
  if first <= fenced then
    return -2
  end
  redis.call('HSET', KEYS[1], 'offset', ARGV[3])
else
  -- A timer batch has no offsets to fence it, and its counter increments (stage counts) are not
  -- idempotent: sent again after a lost reply, it would add them twice. The lane sends one batch
  -- at a time and retries only its last, so remembering the last token applied is enough.
  local token = ARGV[1] .. ':' .. ARGV[3]
  if redis.call('HGET', KEYS[1], 'timerBatch') == token then
    return 1
  end
  redis.call('HSET', KEYS[1], 'timerBatch', token)
end
local streamTime = tonumber(ARGV[4])
local knownStreamTime = tonumber(redis.call('HGET', KEYS[1], 'streamTime') or '0')
if streamTime > knownStreamTime then
  redis.call('HSET', KEYS[1], 'streamTime', ARGV[4])
end

local users = tonumber(ARGV[5])
local timers = tonumber(ARGV[6])
local hashes = tonumber(ARGV[7])
local a = 9
for i = 1, users do
  redis.call('SET', KEYS[3 + i], ARGV[a])
  a = a + 1
end
for i = 1, timers do
  local member = ARGV[a]
  local due = ARGV[a + 1]
  if due == '' then
    redis.call('ZREM', KEYS[2], member)
  else
    redis.call('ZADD', KEYS[2], due, member)
  end
  a = a + 2
end
for h = 1, hashes do
  local key = KEYS[3 + users + h]
  local fields = tonumber(ARGV[a])
  a = a + 1
  for f = 1, fields do
    redis.call('HINCRBY', key, ARGV[a], ARGV[a + 1])
    a = a + 2
  end
end
-- Wide breakdowns: PFADD is idempotent, so these need no fence of their own; the value set
-- caps how many values a lane keeps (a flood of distinct channels cannot grow keys without end).
local groups = tonumber(ARGV[a] or '0')
a = a + 1
local k = 4 + users + hashes
for g = 1, groups do
  local valuesKey, target, otherKey = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  k = k + 3
  local maxValues = tonumber(ARGV[a])
  local value = ARGV[a + 1]
  local n = tonumber(ARGV[a + 2])
  a = a + 3
  if redis.call('SISMEMBER', valuesKey, value) == 0 then
    if redis.call('SCARD', valuesKey) < maxValues then
      redis.call('SADD', valuesKey, value)
    else
      redis.call('SADD', valuesKey, 'other')
      target = otherKey
    end
  end
  -- In slices: unpack() of thousands of values would overflow Lua's C stack.
  local i = 0
  while i < n do
    local m = math.min(500, n - i)
    redis.call('PFADD', target, unpack(ARGV, a + i, a + i + m - 1))
    i = i + m
  end
  -- A day's sketch is read by windows ending up to a month later; kept 400 days (a year of
  -- history for breakdowns), then it expires, so memory stays bounded however long Nudge runs.
  redis.call('PEXPIRE', target, 34560000000)
  a = a + n
end
local touches = tonumber(ARGV[a] or '0')
a = a + 1
for i = 1, touches do
  redis.call('HSET', KEYS[3], ARGV[a], ARGV[a + 1])
  a = a + 2
end
return 1
