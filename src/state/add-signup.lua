-- Adds one sign-up to a device's sign-ups (a sorted set: "partition:offset:user" -> sign-up
-- time) and keeps the set bounded. NX: a re-run of the batch adds nothing.
-- KEYS[1]  the device's sorted set (keys.ts: deviceSignupsKey)
-- ARGV[1]  member (device-signups.ts: signupMember)
-- ARGV[2]  sign-up time (ms)
-- ARGV[3]  keepForMs: sign-ups older than the newest by more than this are dropped; also the TTL
-- ARGV[4]  maxPerDevice: the newest this many are kept
-- Output: the set's size
local key = KEYS[1]
redis.call('ZADD', key, 'NX', ARGV[2], ARGV[1])
local keep = tonumber(ARGV[3])
local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
-- string.format: tostring() of a large number can come out in exponent form.
redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', tonumber(newest[2]) - keep))
local size = redis.call('ZCARD', key)
local over = size - tonumber(ARGV[4])
if over > 0 then
  redis.call('ZREMRANGEBYRANK', key, 0, over - 1)
  size = size - over
end
redis.call('PEXPIRE', key, keep)
return size
