-- fairio-fleet: one member's report, and its lease. Atomic: Redis runs the whole script at once.
-- The same rule, in Rust: src/table.rs (a test runs both on the same inputs).
--
-- KEYS[1]  the budget's members (hash: name -> "weight demand holding lease expires")
-- KEYS[2]  the budget's epoch (hash: epoch, warm_until)
-- ARGV     name, weight, demand, holding, last_epoch ("" if none), expected, capacity, ttl_ms,
--          floor, now_ms ("" for Redis's own clock; tests pass one)
-- returns  {lease, target, live, epoch}, integers
local name = ARGV[1]
local weight, demand, holding = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local last_epoch, expected = tonumber(ARGV[5]), tonumber(ARGV[6])
local capacity, ttl, floor = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local now = tonumber(ARGV[10])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local epoch = tonumber(redis.call('HGET', KEYS[2], 'epoch'))
local warm = tonumber(redis.call('HGET', KEYS[2], 'warm_until')) or 0
if not epoch then
  -- A new table: the first ever, or one that replaced a lost one.
  epoch = now
  warm = now + ttl
  redis.call('HSET', KEYS[2], 'epoch', epoch)
end
if last_epoch and last_epoch ~= epoch then
  warm = math.max(warm, now + ttl)
end
redis.call('HSET', KEYS[2], 'warm_until', warm)

-- The other live members, by name (the Rust rule iterates them in the same order).
local others, rec = {}, {}
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local n = flat[i]
  local w, d, h, l, e = string.match(flat[i + 1], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')
  if tonumber(e) <= now then
    redis.call('HDEL', KEYS[1], n)
  elseif n ~= name then
    table.insert(others, n)
    rec[n] = {w = tonumber(w), d = tonumber(d), h = tonumber(h), l = tonumber(l)}
  end
end
table.sort(others)

-- Water-filling, as share.rs: demands met in rounds, the rest by weight; spare capacity as
-- headroom by weight.
local ws, ds = {}, {}
for i, n in ipairs(others) do
  ws[i], ds[i] = rec[n].w, math.max(rec[n].d, floor)
end
local me = #others + 1
ws[me], ds[me] = weight, math.max(demand, floor)
local out, open, left = {}, {}, capacity
for i = 1, me do out[i] = 0; open[i] = i end
while #open > 0 and left > 0 do
  local wsum = 0
  for _, i in ipairs(open) do wsum = wsum + ws[i] end
  local level = left / wsum
  local rest, met = {}, 0
  for _, i in ipairs(open) do
    if ds[i] <= level * ws[i] then met = met + 1 else table.insert(rest, i) end
  end
  if met == 0 then
    for _, i in ipairs(open) do out[i] = level * ws[i] end
    left = 0
    break
  end
  for _, i in ipairs(open) do
    if ds[i] <= level * ws[i] then
      out[i] = ds[i]
      left = left - ds[i]
    end
  end
  open = rest
end
if left > 0 then
  local wall = 0
  for i = 1, me do wall = wall + ws[i] end
  for i = 1, me do out[i] = out[i] + left * ws[i] / wall end
end
local target = out[me]

local used = 0
for _, n in ipairs(others) do used = used + math.max(rec[n].h, rec[n].l) end
local room = capacity - used
if now < warm and #others + 1 < expected then room = math.min(room, holding) end
local lease = math.floor(math.max(0, math.min(target, room)))

redis.call('HSET', KEYS[1], name,
  string.format('%.17g %.17g %.17g %.17g %d', weight, demand, holding, lease, now + ttl))
-- An abandoned budget cleans itself up.
redis.call('PEXPIRE', KEYS[1], 4 * ttl)
redis.call('PEXPIRE', KEYS[2], 4 * ttl)
return {lease, math.floor(target), #others + 1, epoch}
