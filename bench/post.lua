-- wrk script for bench/run.py: POST one JSON body and print the run's numbers as one JSON line in done().
-- wrk's own --latency output has no p95, hence this.
--
-- usage: wrk -t2 -c16 -d15s -s bench/post.lua URL -- BODY.json [MAX_REQUESTS_PER_THREAD]
-- With MAX_REQUESTS_PER_THREAD each thread stops after that many responses and prints BENCH_STOPPED (wrk itself
-- still waits for -d to pass, so bench/run.py sends it SIGINT once every thread has stopped: wrk then reports as
-- usual). Without it wrk ignores response bodies (no response() callback), which keeps the load generator cheap.

function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
  local max = tonumber(args[2] or "")
  if max then
    local seen = 0
    response = function(status, headers, body)
      seen = seen + 1
      if seen == max then
        io.write("BENCH_STOPPED\n")
        io.flush()
        wrk.thread:stop()
      end
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
