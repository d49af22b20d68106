--[[
  Gives a send lease back after the provider answered "not delivered" (retry, rejected), so the
  next attempt may send. Only the holder's own lease is removed, never a later attempt's.

  KEYS[1]  ledger entry   <ns>:touches:sent:<touchId>
  ARGV[1]  the lease value beginSend wrote

  Output:  1 released, 0 the entry holds something else (left alone)
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
