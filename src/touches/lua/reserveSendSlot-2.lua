--[[
  Reserves a send slot on a rate-limited channel. Slots are spaced `interval` ms apart across all
  workers (GCRA without burst), so any window of max × interval ms holds at most `max` sends.
  An attempt that waits (in process, or as a delayed job) asks again and gets the same slot back.
  Times come from the Redis clock.

  KEYS[1]  the channel's next free slot   {<ns>:touches:rate:<channel>}
  KEYS[2]  this attempt's reservation     {<ns>:touches:rate:<channel>}:r:<touchId>:<attempt>
  ARGV[1]  interval (ms, integer) = ceil(durationMs / max)
  ARGV[2]  how long a reservation is kept after its slot (ms)

  Output:  ms to wait until the slot (0 or less: send now)
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('GET', KEYS[2])
if held then
  return tonumber(held) - now
end
local interval = tonumber(ARGV[1])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], string.format('%d', slot + interval), 'PX', slot + interval - now + 1000)
redis.call('SET', KEYS[2], string.format('%d', slot), 'PX', slot - now + tonumber(ARGV[2]))
return slot - now
