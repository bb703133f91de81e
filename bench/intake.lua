-- wrk script for bench/intake.py: one feedback per request, each on the next
-- seeded delivery, and a count of response statuses per thread.
--
--   wrk -tTHREADS ... -s bench/intake.lua URL -- MODE KEY START EVENTS THREADS
--
-- MODE is "ceiling" (POST /bench/ceiling), "api" (POST /api/v1/feedback) or "lc"
-- (POST /feedback?event_id=...). Seeded event ids are the hex of 0..EVENTS-1;
-- the counter wraps, which is fine: conversions may repeat on a delivery.

local threads = {}

function setup(thread)
   thread:set("thread_index", #threads)
   table.insert(threads, thread)
end

local mode, key, counter, events, stride
local headers = {}

function init(args)
   mode = args[1]
   key = args[2]
   events = tonumber(args[4])
   -- init runs in each thread's own Lua state, where `threads` is empty.
   stride = tonumber(args[5])
   counter = tonumber(args[3]) + (thread_index or 0)
   headers["Content-Type"] = "application/json"
   if mode ~= "ceiling" then
      headers["X-API-Key"] = key
   end
   statuses = {}
end

local function next_event_id()
   local event_id = string.format("%024x", counter % events)
   counter = counter + stride
   return event_id
end

function request()
   local event_id = next_event_id()
   local fields = '"type": "conversion", "revenue": "1250.00", "quality_score": 5, '
      .. '"note": "bench"}'
   if mode == "lc" then
      return wrk.format("POST", "/feedback?event_id=" .. event_id, headers, "{" .. fields)
   end
   local body = '{"event_id": "' .. event_id .. '", ' .. fields
   if mode == "ceiling" then
      return wrk.format("POST", "/bench/ceiling", headers, body)
   end
   return wrk.format("POST", "/api/v1/feedback", headers, body)
end

function response(status, response_headers, body)
   local name = tostring(status)
   statuses[name] = (statuses[name] or 0) + 1
end

function done(summary, latency, requests)
   local totals = {}
   for _, thread in ipairs(threads) do
      for name, count in pairs(thread:get("statuses")) do
         totals[name] = (totals[name] or 0) + count
      end
   end
   io.write(string.format(
      "BENCH requests=%d duration_us=%d connect=%d read=%d write=%d timeout=%d "
         .. "p50_us=%d p99_us=%d\n",
      summary.requests, summary.duration, summary.errors.connect,
      summary.errors.read, summary.errors.write, summary.errors.timeout,
      latency:percentile(50), latency:percentile(99)))
   for name, count in pairs(totals) do
      io.write(string.format("STATUS %s %d\n", name, count))
   end
end
