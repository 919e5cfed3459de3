"""The project's benchmark harness: test images, servers, a wrk load generator, the run matrix, summaries.

- ``images``: deterministic painting-like pyramidal TIFFs (JPEG tiles) and their aliases;
- ``servers``: iipsrv (FastCGI under lighttpd, optionally memcached) and iiifserver from a given
  checkout, started and stopped by PID, on 127.0.0.1 only;
- ``load`` (+ ``tile_load.lua``): OpenSeadragon-style tile URLs replayed by wrk, with latency
  percentiles, the CPU split, the servers' peak RSS and checks of sample responses;
- ``matrix``: cold/hot x concurrency x repeats (+ info.json) for each server configuration;
- ``summary``: JSON lines of runs -> a markdown table.

``benchmarks/side_by_side.py`` drives them; each module also has a command line
(``python -m benchmarks.harness.<module> --help`` from the repository root). Nothing here imports
the server package: the server under test is a process, started from a checkout.
"""
