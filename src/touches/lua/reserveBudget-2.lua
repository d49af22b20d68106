--[[
  Reserves a touch's cost against its journey's budget, once per touch, atomically across every
  lane and worker: a budget is never overspent, however many workers send at once.

  KEYS[1]  budget hash       {ns:touches:budget:<journey>}            total -> spent, d:<day> -> spent
  KEYS[2]  reservation       {ns:touches:budget:<journey>}:r:<touchId> (string, with a TTL)

  ARGV[1]  cost of the touch
  ARGV[2]  total budget, or '' for none
  ARGV[3]  budget per day, or '' for none
  ARGV[4]  the day (reporting-zone day number) the cost counts against
  ARGV[5]  how long the reservation is remembered (ms): a re-run of the job is not charged twice

  Output:  1 reserved now, 2 reserved before (a re-run), -1 total budget exhausted,
          -2 today's budget exhausted
]]
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 2
end
local cost = tonumber(ARGV[1])
local dayField = 'd:' .. ARGV[4]
local spent = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
if ARGV[2] ~= '' and spent + cost > tonumber(ARGV[2]) then
  return -1
end
local spentToday = tonumber(redis.call('HGET', KEYS[1], dayField) or '0')
if ARGV[3] ~= '' and spentToday + cost > tonumber(ARGV[3]) then
  return -2
end
redis.call('HINCRBYFLOAT', KEYS[1], 'total', cost)
redis.call('HINCRBYFLOAT', KEYS[1], dayField, cost)
redis.call('SET', KEYS[2], '1', 'PX', ARGV[5])
return 1
