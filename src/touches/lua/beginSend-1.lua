--[[
  Takes the send lease of one touch before its provider is called (the send ledger). Times come
  from the Redis clock, so workers on machines with skewed clocks agree on when a lease ran out.

  KEYS[1]  ledger entry   <ns>:touches:sent:<touchId>
  ARGV[1]  lease (ms): the longest one attempt may take; after that another attempt may assume it died
  ARGV[2]  ttl (ms) of the ledger entry: how long a touch is remembered as sent
  ARGV[3]  owner: a token unique to this attempt

  Values:  sending|<lease until, ms>|<owner>   sent|<ms>   ambiguous|<ms>

  Output:  {code, value}; value = the lease written (for releaseSend), or the entry found
            1  lease taken, no earlier attempt
            2  lease taken over from an attempt whose lease ran out: it may or may not have sent
           -1  already sent
           -2  another attempt holds a live lease
           -3  an earlier attempt's outcome was unknown and was recorded as ambiguous (not resent)
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = 'sending|' .. string.format('%d', now + tonumber(ARGV[1])) .. '|' .. ARGV[3]
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], lease, 'PX', ARGV[2])
  return {1, lease}
end
local state, untilMs, owner = string.match(cur, '^(%a+)|([^|]*)|?(.*)$')
if state == 'sent' then
  return {-1, cur}
end
if state == 'ambiguous' then
  return {-3, cur}
end
if state == 'sending' and tonumber(untilMs) ~= nil and tonumber(untilMs) > now and owner ~= ARGV[3] then
  return {-2, cur}
end
redis.call('SET', KEYS[1], lease, 'PX', ARGV[2])
return {2, lease}
