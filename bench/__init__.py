"""Benchmark harness for aroutd (``python -m bench``; see bench/README.md).

Map of this folder:

  __main__.py     the one command: parse flags, run the scenarios, write the report
  settings.py     the quick / full / smoke parameter sets and the CPU layout
  procs.py        child processes: spawn pinned, wait until ready, RSS, always killed
  upstream.py     trio + h11 fixed-response upstream, also the timestamped SSE upstream
  bare_relay.py   the floor: a ~50-line trio + h11 relay that checks one key
  nginx.py        generated nginx configs: the fixed-response upstream and the `map` peer
  aroutd_setup.py aroutd's temp config, key tables (up to 1M keys), the wallet JWT
  targets.py      start direct / relay / aroutd / peers / the fake facilitator as Targets
  peers/          nginx map proxy, LiteLLM, hypercorn + httpx: installed on demand (--peers)
  run             shell wrapper: bench/run [flags] = python -m bench [flags]
  loadgen.py      trio + h11 load generator: latency (and timeline), SSE, idle connections
  drivers.py      one bounded, pinned load run against a Target: loadgen, or wrk for req/s
  wrk_post.lua    the wrk script: POST body/headers from the environment, cap, JSON summary
  scenarios.py    scenarios (a)-(f) of the issue, each comparing against direct
                  ((m), against the bundled mock upstream, lives in __main__.py)
  stats.py        percentiles and median/spread of repeats (pure)
  report.py       machine, ratios, target checks, JSON, markdown table, plot
  bench_siwx.py   a separate micro-benchmark of the wallet sign-in core (python -m bench.bench_siwx)
  compare.py      shared by the one-run comparisons: figures, ratios, interleaved repeats,
                  budgets, the script's main and report
  bench_management.py  the management API's cost (python -m bench.bench_management)
  bench_metering.py    usage metering's cost, against aroutd before it (bench.bench_metering)
  bench_ratelimit.py   the rpm/rpd limiter's cost, limited vs plain key (bench.bench_ratelimit)
  bench_redis.py       the Redis store vs sqlite, two instances on one port (bench.bench_redis)
  redis_report.py      its markdown report
  redis_server.py      a redis-server child for the benches (AOF, fsync policy a parameter)
  bench_x402.py        x402 payments: local checks/s, pay-and-serve round trips (bench.bench_x402)
  x402_local.py        its local verification cases (EVM, Solana); x402_report.py: its report

Everything runs on loopback, every run is bounded in requests and seconds, and
every child is killed in a ``finally``.
"""
