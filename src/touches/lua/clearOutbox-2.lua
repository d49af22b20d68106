--[[
  Clears outbox entries the relay has added to BullMQ and sets aside entries it could not read.
  Compare-and-delete: an entry goes only if it still holds the value the relay read, so an entry
  rewritten after the read stays for the next pass (its re-add is then a BullMQ no-op).

  KEYS[1]  outbox hash     {lane}:outbox
  KEYS[2]  rejected hash   {lane}:outbox:rejected

  ARGV[1]  A, number of entries added to BullMQ
  ARGV[2]  R, number of entries that could not be read
  then A pairs (touch id, value read), then R pairs (field, value read)

  Output:  number of entries removed from the outbox
]]
local added = tonumber(ARGV[1])
local rejected = tonumber(ARGV[2])
local removed = 0
local a = 3
for i = 1, added + rejected do
  local field, value = ARGV[a], ARGV[a + 1]
  a = a + 2
  if redis.call('HGET', KEYS[1], field) == value then
    redis.call('HDEL', KEYS[1], field)
    if i > added then
      redis.call('HSET', KEYS[2], field, value)
    end
    removed = removed + 1
  end
end
return removed
