"""The pure parts of the benchmark harness (benchmarks/harness/ and side_by_side.py): URL lists, wrk
output, response checks, result records, the summary table, alias files, server configuration and
the side-by-side plan. No server is started and no load is run here."""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
from pathlib import Path
from typing import Any

import pytest

from benchmarks import side_by_side as sbs
from benchmarks import viewer_sessions as vs
from benchmarks.harness import images as img
from benchmarks.harness import load, mix, servers, summary
from benchmarks.harness import matrix as mx

# ---------------------------------------------------------------- URLs


def test_cold_list_has_every_tile_of_every_identifier_once() -> None:
    ids = ["a.tif", "b c.tif"]
    urls = load.cold_urls(ids, 3000, 2000, "/iiif/3", random.Random(1))
    info = load.pyramid(3000, 2000)
    expected = {
        load.tile_url(info, "/iiif/3", ident, s, c, r, "w,")
        for ident in ids
        for s in info.scales
        for c in range(info.grid(s)[0])
        for r in range(info.grid(s)[1])
    }
    assert len(urls) == len(expected) == 2 * info.n_tiles()
    assert set(urls) == expected
    assert all(u[0].startswith(("/iiif/3/a.tif/", "/iiif/3/b%20c.tif/")) for u in urls)


def test_cold_list_opens_each_image_coarsest_first_and_interleaves_identifiers() -> None:
    ids = [f"x{i}.tif" for i in range(6)]
    urls = load.cold_urls(ids, 12000, 9000, "/iiif", random.Random(3))
    first = [u for u in urls if u[0].startswith("/iiif/x0.tif/")]
    # the one-tile level (scale 64) first: the whole image, 188 px wide (ceil(12000 / 64))
    assert first[0] == ("/iiif/x0.tif/full/188,/0/default.jpg", 188, 141)
    head = [u[0].split("/")[2] for u in urls[:400]]
    assert len(set(head)) > 1  # several identifiers' steps in the first few hundred URLs


def test_cold_workload_asks_each_image_info_json_before_its_tiles() -> None:
    ids = [f"x{i}.tif" for i in range(5)]
    urls = load.cold_urls(ids, 3000, 2000, "/iiif", random.Random(2), info_first=True)
    tiles = load.cold_urls(ids, 3000, 2000, "/iiif", random.Random(2))
    assert [u for u in urls if not u[0].endswith("/info.json")] == tiles  # the same tiles, in the same order
    for ident in ids:
        own = [i for i, u in enumerate(urls) if u[0].startswith(f"/iiif/{ident}/")]
        assert urls[own[0]] == (f"/iiif/{ident}/info.json", None, None)  # first, and only once
        assert sum(urls[i][0].endswith("/info.json") for i in own) == 1
    work = load.make_workload("http://127.0.0.1:1/iiif", "cold", ids, 3000, 2000)
    assert sum(u[0].endswith("/info.json") for u in work.urls) == len(ids)


def test_cold_list_is_deterministic_per_seed() -> None:
    a = load.cold_urls(["a"], 4000, 2500, "/p", random.Random(7))
    b = load.cold_urls(["a"], 4000, 2500, "/p", random.Random(7))
    c = load.cold_urls(["a"], 4000, 2500, "/p", random.Random(8))
    assert a == b
    assert a != c
    assert sorted(a) == sorted(c)


def test_tile_sizes_follow_openseadragon() -> None:
    info = load.pyramid(1000, 700)
    assert info.scales == (1, 2, 4)
    assert load.tile_url(info, "/i", "x", 1, 3, 2, "w,") == ("/i/x/768,512,232,188/232,/0/default.jpg", 232, 188)
    assert load.tile_url(info, "/i", "x", 2, 1, 1, "w,h") == ("/i/x/512,512,488,188/244,94/0/default.jpg", 244, 94)
    assert load.tile_url(info, "/i", "x", 4, 0, 0, "w,") == ("/i/x/full/250,/0/default.jpg", 250, 175)


def test_hot_set_is_distinct_tiles_of_one_identifier() -> None:
    hot = load.hot_set("a.tif", 12000, 9000, "/iiif/3", random.Random(1), 64)
    assert len(hot) == len(set(hot)) == 64
    assert all(u[0].startswith("/iiif/3/a.tif/") for u in hot)
    repeated = load.repeated(hot, random.Random(1), total=1000)
    assert len(repeated) == 64 * (1000 // 64)
    assert set(repeated) == set(hot)


def test_url_list_lines() -> None:
    text = "# comment\n\n/iiif/3/a/full/max/0/default.jpg\t10\t20\nb/info.json\n c/full/5,/0/default.jpg\t\t\n"
    assert load.parse_url_list(text, "/iiif/3") == [
        ("/iiif/3/a/full/max/0/default.jpg", 10, 20),
        ("/iiif/3/b/info.json", None, None),
        ("/iiif/3/c/full/5,/0/default.jpg", None, None),
    ]


def test_workload_from_a_url_file(tmp_path: Path) -> None:
    listed = tmp_path / "urls.txt"
    listed.write_text("x/full/9,/0/default.jpg\t9\t9\ny/full/9,/0/default.jpg\t9\t9\n")
    cold = load.make_workload("http://127.0.0.1:1/iiif", "cold", urls_file=listed)
    assert [u[0] for u in cold.urls] == ["/iiif/x/full/9,/0/default.jpg", "/iiif/y/full/9,/0/default.jpg"]
    assert cold.from_file
    assert not cold.warm
    hot = load.make_workload("http://127.0.0.1:1/iiif", "hot", urls_file=listed)
    assert set(hot.warm) == set(cold.urls)
    assert len(hot.urls) == 50_000
    info = load.make_workload("http://127.0.0.1:1/iiif/3", "info", ["a", "b"])
    assert {u[0] for u in info.urls} == {"/iiif/3/a/info.json", "/iiif/3/b/info.json"}


def test_only_loopback_targets() -> None:
    assert load.check_loopback("http://127.0.0.1:8083/iiif/3") == "http://127.0.0.1:8083"
    assert load.check_loopback("http://localhost:8/x") == "http://localhost:8"
    with pytest.raises(ValueError, match="loopback"):
        load.check_loopback("http://example.org/iiif")


# ---------------------------------------------------------------- wrk output and checks

WRK_STDOUT = """Running 5s test @ http://127.0.0.1:8083
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.21ms    2.10ms  40.00ms   95.00%
  25000 requests in 5.00s, 300.00MB read
Requests/sec:   5000.00
WRK_RESULT {"requests":25000,"duration_us":5000000,"bytes":300000000,"err_connect":0,"err_read":0,\
"err_write":0,"err_status":250,"err_timeout":3,"lat_mean_us":1210.5,"lat_max_us":40000,"lat_p50_us":800,\
"lat_p90_us":2000,"lat_p99_us":9000,"wraps":2}
"""


def test_parse_wrk_reads_the_result_line() -> None:
    r = load.parse_wrk(WRK_STDOUT)
    assert r["requests"] == 25000
    assert r["lat_p99_us"] == 9000
    assert r["wraps"] == 2
    with pytest.raises(ValueError, match="no WRK_RESULT"):
        load.parse_wrk("Running 5s test\nunable to connect to 127.0.0.1:1\n")


def test_lua_script_prints_every_field_the_driver_reads() -> None:
    lua = load.LUA.read_text()
    assert 'io.write("WRK_RESULT {"' in lua
    for name in load.parse_wrk(WRK_STDOUT):
        assert f'"{name}":' in lua


def test_result_record() -> None:
    work = load.Workload("cold", [("/a", 1, 1), ("/b", 1, 1), ("/a", 1, 1)], ids=2, width=10, height=20)
    r = load.result_record(
        load.parse_wrk(WRK_STDOUT),
        work,
        label="iiifserver/big/r1",
        concurrency=8,
        base="http://127.0.0.1:8083/iiif/3",
        pids=[5, 6],
        server_s=7.5,
        wrk_s=0.5,
        wall_s=5.0,
        busy_pct=100.0,
        ncpu=2,
        peak_rss=300 * 2**20,
    )
    assert r["rps"] == 5000.0
    assert r["rps_ok"] == 4950.0  # non-2xx/3xx responses are not throughput
    assert r["errors"] == 253
    assert (r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"], r["mean_ms"]) == (0.8, 2.0, 9.0, 40.0, 1.21)
    assert r["avg_bytes"] == 12000
    assert r["server_cpu_pct"] == 150.0
    assert r["wrk_cpu_pct"] == 10.0
    assert r["other_cpu_pct"] == 40.0  # 2 cores fully busy = 200 %, minus server and wrk
    assert r["server_cpu_ms_per_req"] == 0.3
    assert r["server_cpu_us_per_req"] == 300.0  # the same, precise enough for memo hits
    assert r["server_peak_rss_mb"] == 300
    assert (r["unique_urls"], r["list_len"], r["wraps"]) == (2, 3, 2)


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9)
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + bytes(3)
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def test_jpeg_size_and_response_checks() -> None:
    assert load.jpeg_size(jpeg(256, 141)) == (256, 141)
    assert load.jpeg_size(b"GIF89a") is None
    tile = "/i/x/0,0,256,256/256,/0/default.jpg"
    assert load.check_response(tile, 200, jpeg(256, 256), 256, 256, 0) is None
    assert load.check_response(tile, 200, jpeg(255, 256), 256, 256, 0) == "got 255x256, want 256x256"
    assert load.check_response(tile, 200, jpeg(255, 255), 256, 256, 1) is None  # rounding slack
    assert load.check_response(tile, 404, b"", 256, 256, 0) == "status 404"
    assert load.check_response(tile, 200, b"<html>", None, None, 0) == "not a JPEG"
    assert load.check_response("/i/x/info.json", 200, b'{"width": 5}', None, None, 0) is None
    assert load.check_response("/i/x/info.json", 200, b"{}", None, None, 0) == "info.json without width"


# ---------------------------------------------------------------- summary


def run_record(label: str, mode: str, c: int, rps: float, **extra: Any) -> dict[str, Any]:
    base = {
        "label": label,
        "mode": mode,
        "concurrency": c,
        "rps": rps,
        "rps_ok": rps,
        "p50_ms": 1.0,
        "p99_ms": 5.0,
        "server_cpu_pct": 180.0,
        "server_cpu_ms_per_req": 0.5,
        "wrk_cpu_pct": 8.0,
        "other_cpu_pct": 1.0,
        "errors": 0,
        "wraps": 0,
        "avg_bytes": 12000,
        "time": "2026-11-22T10:00:00+0000",
    }
    return {**base, **extra}


def test_summary_table_groups_repeats() -> None:
    runs = [
        run_record("iiifserver/big/r1", "cold", 8, 9000.0),
        run_record("iipsrv/big/r1", "cold", 8, 2000.0, errors=2),
        run_record("iiifserver/big/r2", "cold", 8, 9100.0, wraps=1),
    ]
    lines = summary.table(runs).splitlines()
    assert lines[0].startswith("| server | image | mode | c | req/s (each run)")
    assert lines[2] == (
        "| iiifserver | big | cold | 8 | 9000.0 / 9100.0 | 1.0 / 1.0 | 5.0 / 5.0 | 180 / 180 | 0.50 / 0.50 "
        "| 8 / 8 | 1 / 1 | 0 (wrapped) | 12000 |"
    )
    assert lines[3].startswith("| iipsrv | big | cold | 8 | 2000.0 |")
    assert "| 2 | 12000 |" in lines[3]
    excluded = summary.table(runs, exclude_wrapped=True).splitlines()
    assert "| 9000.0 |" in excluded[2]
    assert summary.table(runs, since="2027").splitlines()[2:] == []


def test_summary_reads_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(run_record(f"x/img/r{i}", "hot", 64, 10.0 * i)) + "\n" for i in (1, 2)))
    assert [r["rps"] for r in summary.read_runs([path])] == [10.0, 20.0]
    assert summary.main([str(path)]) == 0


# ---------------------------------------------------------------- images (names and aliases; no pixels)


def test_image_names() -> None:
    assert img.stem("big") == "artwork_big"
    assert img.stem("big", 85) == "artwork_big_q85"
    assert img.alias_names("giga", 85, 2) == ["artwork_giga_q85_00.tif", "artwork_giga_q85_01.tif"]
    assert mx.label_image("big", 85) == "big-q85"
    assert mx.label_image("10mp", 85) == "10mp-q85"


def test_aliases_symlinks_then_copies(tmp_path: Path) -> None:
    master = tmp_path / "artwork_big_q85.tif"
    master.write_bytes(b"pyramid")
    links = img.make_aliases(master, 3)
    assert [p.name for p in links] == img.alias_names("big", 85, 3)
    assert all(p.is_symlink() and os.readlink(p) == master.name for p in links)
    assert img.count_aliases(tmp_path, "big", 85) == 3
    assert img.count_copies(tmp_path, "big", 85) == 0  # links are not copies
    assert img.copies_missing_bytes(tmp_path, "big", 85, 2) == 2 * len(b"pyramid")
    copies = img.make_aliases(master, 2, copies=True)
    for p in copies:
        assert not p.is_symlink()
        assert p.read_bytes() == b"pyramid"
        assert p.stat().st_ino != master.stat().st_ino  # a distinct file, as in a real collection
    assert not links[2].exists()
    assert not links[2].is_symlink()
    assert img.count_copies(tmp_path, "big", 85) == img.count_aliases(tmp_path, "big", 85) == 2
    assert img.copies_missing_bytes(tmp_path, "big", 85, 2) == 0
    mtime = copies[0].stat().st_mtime_ns
    img.make_aliases(master, 2, copies=True)
    assert copies[0].stat().st_mtime_ns == mtime  # an up-to-date copy is kept
    copies[1].write_bytes(b"cut")  # a copy of the wrong size (an interrupted copy): made again
    assert img.count_copies(tmp_path, "big", 85) == 1
    img.make_aliases(master, 2, copies=True)
    assert copies[1].read_bytes() == b"pyramid"


def test_alias_pool_gives_every_cold_run_the_same_files() -> None:
    said: list[str] = []
    pool = mx.AliasPool("big", 90, available=5, per_run=2, log=said.append)
    first = pool.take("iiifserver")
    assert first == ["artwork_big_00.tif", "artwork_big_01.tif"]
    assert pool.take("iiifserver") == pool.take("iipsrv") == first  # fresh servers: the same files are cold
    assert said == []
    short = mx.AliasPool("big", 85, available=3, per_run=4, log=said.append)
    assert short.take("x") == short.take("y") == img.alias_names("big", 85, 3)
    assert said == ["# warning: 3 aliases for cold runs that want 4: they may run out (make more)"]  # once
    assert mx.AliasPool("big", 85, 0, 3, said.append).take("x") == ["artwork_big_q85.tif"]


# ---------------------------------------------------------------- servers (configuration only)


def test_iipsrv_configuration(tmp_path: Path) -> None:
    peer = servers.Iipsrv(tmp_path / "images", run_dir=tmp_path / "run", jpeg_quality=85)
    assert peer.base == "http://127.0.0.1:8081/iiif"
    conf = peer.lighttpd_conf()
    assert 'server.bind = "127.0.0.1"' in conf
    assert "server.port = 8081" in conf
    assert f'"socket" => "{tmp_path / "run" / "iipsrv.sock"}"' in conf
    env = peer.iipsrv_env()
    assert env["JPEG_QUALITY"] == "85"
    assert env["FILESYSTEM_PREFIX"] == f"{(tmp_path / 'images').resolve()}/"
    assert env["MEMCACHED_SERVERS"] == ""  # unset, iipsrv would try localhost:11211 on every request
    with_memcached = servers.make("iipsrv-memcached", tmp_path, run_dir=tmp_path / "run")
    assert isinstance(with_memcached, servers.Iipsrv)
    assert with_memcached.iipsrv_env()["MEMCACHED_SERVERS"] == "127.0.0.1:11311"
    assert peer.pids() == []  # nothing recorded, nothing running


def test_iiifserver_command_uses_the_given_checkout(tmp_path: Path) -> None:
    server = servers.make("iiifserver", tmp_path / "images", run_dir=tmp_path / "run", checkout=tmp_path / "old",
                          args=["--jpeg-quality", "85"])  # fmt: skip
    assert isinstance(server, servers.IiifServer)
    assert server.base == "http://127.0.0.1:8083/iiif/3"
    cmd = server.command()
    assert cmd[0] == str(tmp_path / "old" / ".venv" / "bin" / "iiifserver")
    assert cmd[1:4] == ["serve", "--host", "127.0.0.1"]
    assert cmd[-2:] == ["--jpeg-quality", "85"]
    with pytest.raises(RuntimeError, match="install that checkout"):
        server.start()
    with pytest.raises(ValueError, match="unknown server"):
        servers.make("nginx", tmp_path)


def test_both_servers_get_the_quality_asked_for(tmp_path: Path) -> None:
    """``make``'s quality reaches iiifserver too: a server at another quality than its peer (or
    than the stored tiles) would decode and encode every download (another workload)."""
    ours = servers.make("iiifserver", tmp_path, run_dir=tmp_path / "run", jpeg_quality=85, args=["--workers", "1"])
    peer = servers.make("iipsrv", tmp_path, run_dir=tmp_path / "run", jpeg_quality=85)
    assert isinstance(ours, servers.IiifServer)
    assert isinstance(peer, servers.Iipsrv)
    assert ours.command()[-4:] == ["--jpeg-quality", "85", "--workers", "1"]  # later arguments win
    assert peer.iipsrv_env()["JPEG_QUALITY"] == "85"
    given = servers.make("iiifserver", tmp_path, jpeg_quality=85, args=["--jpeg-quality=90"])
    assert given.command().count("--jpeg-quality") == 0
    assert given.command()[-1] == "--jpeg-quality=90"
    assert servers.with_quality(["--jpeg-quality", "70", "-x"], 85) == ["--jpeg-quality", "70", "-x"]
    assert servers.with_quality([], 85) == ["--jpeg-quality", "85"]


def test_metrics_off_and_baseline_configurations(tmp_path: Path) -> None:
    off = servers.make("iiifserver-no-metrics", tmp_path, run_dir=tmp_path / "run", args=["--jpeg-quality", "85"])
    assert isinstance(off, servers.IiifServer)
    assert off.command()[-3:] == ["--jpeg-quality", "85", "--no-metrics"]
    assert off.checkout == servers.REPO
    base = servers.make("iiifserver-baseline", tmp_path, baseline_checkout=tmp_path / "before")
    assert isinstance(base, servers.IiifServer)
    assert base.command()[0] == str(tmp_path / "before" / ".venv" / "bin" / "iiifserver")
    assert base.command()[-2:] == ["--jpeg-quality", "85"]  # make's quality, the same as iipsrv's
    assert base.run_dir.name == "iiifserver"  # one iiifserver at a time: they share the run folder
    with pytest.raises(ValueError, match="baseline checkout"):
        servers.make("iiifserver-baseline", tmp_path)


def test_pid_files_name_one_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    servers.write_pids(pid_file, [os.getpid()])
    [(pid, started)] = servers.read_pids(pid_file)
    assert pid == os.getpid()
    assert started == servers.start_time(os.getpid())
    assert servers.live(servers.read_pids(pid_file)) == [os.getpid()]
    pid_file.write_text(f"{os.getpid()} 1\n")  # same PID, another start time: a reused PID
    assert servers.live(servers.read_pids(pid_file)) == []


# ---------------------------------------------------------------- side_by_side


def test_only_and_configs_options() -> None:
    assert sbs.parse_only("cold, hot") == ("cold", "hot")
    with pytest.raises(Exception, match="unknown workload"):
        sbs.parse_only("cold,warm")
    assert sbs.parse_configs("iiifserver") == ("iiifserver",)
    assert sbs.parse_configs("iiifserver,iiifserver-no-metrics") == ("iiifserver", "iiifserver-no-metrics")
    assert sbs.parse_qualities("85") == (85,)
    assert sbs.parse_qualities("90,85") == (90, 85)
    with pytest.raises(Exception, match="choose from 85,90"):
        sbs.parse_qualities("75")
    with pytest.raises(Exception, match="unknown server"):
        sbs.parse_configs("nginx")


def test_plan_for_some_workloads() -> None:
    full = sbs.Plan.make(False, None, None)
    quick_pair = sbs.Plan.make(True, None, None, only=("cold", "hot"))
    assert full.conc == [1, 8, 64]
    assert (quick_pair.conc, quick_pair.repeats, quick_pair.duration) == ([8], 1, 10)
    assert quick_pair.minutes() < full.minutes() / 5
    assert quick_pair.minutes() == pytest.approx(2 * 3 * 2 * 15 / 60)
    tiles = vs.ImageInfo(12000, 9000, scale_factors=(1, 2, 4, 8, 16, 32, 64)).n_tiles()
    for plan in (full, quick_pair):
        assert plan.min_cold_urls <= plan.copies_big * tiles  # a cold run cannot run out
        assert plan.copies_big >= sbs.MIN_DISTINCT_FILES  # issue 17: at least 150 distinct files
    assert quick_pair.copies_big == 150 < full.copies_big == 176  # 20 s at 20,000 tiles/s
    mixed = sbs.Plan.make(True, None, None, only=("mixed",))
    # two servers at c=8, c=64 and in an open loop at the two default rates
    assert mixed.minutes() == pytest.approx(2 * 4 * 15 / 60)
    mixed.open_rates = ()
    assert mixed.minutes() == pytest.approx(2 * 2 * 15 / 60)
    assert mixed.mix_urls == sbs.MIX_REQUESTS_PER_S * 10


def test_image_sets_are_copies_for_cold_runs_and_the_mix() -> None:
    cold = sbs.image_sets(sbs.Plan.make(True, None, None, only=("cold",)), (85,))
    assert cold == [(("big",), 85, 150, True)]
    hot = sbs.image_sets(sbs.Plan.make(True, None, None, only=("hot",)), (90, 85))
    assert hot == [(("big",), 90, 0, True), (("big",), 85, 0, True)]  # the pyramids, no copies
    full = sbs.image_sets(sbs.Plan.make(False, None, None), (85,))
    assert (("big",), 85, 176, True) in full
    assert (("small",), 85, sbs.MIX_SMALL, True) in full
    assert next(s for s in full if s[0] == ("giga", "10mp"))[3] is False  # the gigapixel pair: symlinks


def test_result_file_stem() -> None:
    stem = sbs.result_stem("2026-11-23", "vm", "Intel(R) Xeon(R) Processor @ 2.30GHz", True, "before")
    assert stem == "2026-11-23-vm-intel-xeon-processor-2-30ghz-quick-before"
    assert sbs.result_stem("2026-11-23", "vm", "Intel Xeon", False, "") == "2026-11-23-vm-intel-xeon"


def _run(config: str, image: str, mode: str, c: int, rps: float, cpu_us: float) -> dict[str, Any]:
    return {
        "label": f"{config}/{image}/r1",
        "mode": mode,
        "concurrency": c,
        "rps_ok": rps,
        "server_cpu_us_per_req": cpu_us,
        "avg_bytes": 20_000,
        "errors": 0,
    }


def test_metrics_cost_and_baseline_rows_appear_only_when_measured() -> None:
    plain = [t.name for t in sbs.targets(False)]
    assert not any("metrics" in name or "baseline" in name for name in plain)
    runs: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for config, rps, cpu in (("iiifserver", 30_000, 41.0), ("iiifserver-no-metrics", 31_000, 40.0),
                             ("iiifserver-baseline", 36_000, 39.0), ("iipsrv-memcached", 8_000, 150.0)):  # fmt: skip
        runs[(config, "big-q85", "hot", 64)] = [_run(config, "big-q85", "hot", 64, rps, cpu)]
    tbl, _, total = sbs.table(runs, False)
    # Only the pyramid that ran (Q85): its 7 rows, the gigapixel row, and per mode the metrics'
    # cost and the baseline.
    assert total == 7 + 1 + 4
    lines = {line.split(" | ")[0].lstrip("| "): line for line in tbl.splitlines()}
    cost = lines["metrics' cost: server CPU per request, hot c=64, Q85 4:2:0"]
    assert "| 41.0 us | iiifserver --no-metrics | 40.0 us | 1.02x | <= 1.05x | PASS |" in cost
    assert "req/s 30,000 / 31,000 (0.97x)" in cost
    against = lines["against the baseline checkout: hot tiles/s, c=64, Q85 4:2:0"]
    assert "| 0.83x | >= 0.9x | FAIL |" in against  # 30,000 / 36,000: more than 10 % slower
    assert "| MISSING |" in lines["metrics' cost: server CPU per request, cold c=8, Q85 4:2:0"]


def test_paired_ratio_compares_within_each_repeat() -> None:
    ours = [_run("iiifserver", "big-q85", "hot", 64, rps, 30.0) for rps in (45_000, 20_000, 44_000)]
    theirs = [_run("iiifserver-baseline", "big-q85", "hot", 64, rps, 30.0) for rps in (50_000, 40_000, 40_000)]
    for number, record in enumerate(ours + theirs):
        record["label"] = record["label"].replace("/r1", f"/r{number % 3 + 1}")
    # 0.9, 0.5 (a repeat where the machine slowed ours alone) and 1.1: the median is 0.9
    assert sbs.paired_ratio(ours, theirs, "rps_ok") == pytest.approx(0.9)
    assert sbs.paired_ratio(ours, [], "rps_ok") is None


def test_mixed_workload_rows_and_summary() -> None:
    runs: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    measured = [  # config, c, req/s, wrk's p99, each request's p99, peak RSS
        ("iiifserver", 8, 900.0, 400.0, 60.0, 700),
        ("iipsrv", 8, 500.0, 100.0, 75.0, 120),
        ("iiifserver", 64, 950.0, 400.0, 300.0, 1100),
        ("iipsrv", 64, 480.0, 300.0, 200.0, 130),
    ]
    for config, c, rps, p99, own_p99, rss in measured:
        record = _run(config, "mixed", "mixed", c, rps, 2000.0)
        record.update(p50_ms=rps / 100, p99_ms=p99, server_peak_rss_mb=rss)
        record.update(request_p50_ms=rps / 1000, request_p99_ms=own_p99)
        record["request_latency"] = {"all": {"n": 10, "p50": rps / 1000, "p99": own_p99, "max": own_p99}}
        record["request_latency"]["region"] = {"n": 3, "p50": 20.0 if config == "iiifserver" else 10.0, "p99": 90.0}
        runs[(config, "mixed", "mixed", c)] = [record]
    open_loop = _run("iiifserver", sbs.open_name(600), "mixed", sbs.MIX_OPEN_CONC, 600.0, 2000.0)
    open_loop.update(rate=600.0, request_latency={"all": {"n": 9, "p50": 1.0, "p99": 50.0, "max": 60.0}})
    open_loop["request_latency"]["region"] = {"n": 1, "p50": 9.0, "p99": 9.0}
    runs[("iiifserver", sbs.open_name(600), "mixed", sbs.MIX_OPEN_CONC)] = [open_loop]
    tbl, passed, total = sbs.table(runs, True)
    lines = {line.split(" | ")[0].lstrip("| "): line for line in tbl.splitlines()}
    assert total == 6  # only the mixed rows (an open loop adds none): nothing else was measured
    assert "| 1.80x | >= 1.5x | PASS |" in lines["mixed viewer-and-scholar req/s, c=8"]
    assert "| 0.80x | <= 1x | PASS |" in lines["p99 latency of each request, mixed, c=8"]
    wrk_c8 = "p99 latency as wrk reports it (corrected for coordinated omission), mixed, c=8"
    assert "| 4.00x | <= 1x | FAIL |" in lines[wrk_c8]
    assert "| 1.50x | <= 1x | FAIL |" in lines["p99 latency of each request, mixed, c=64"]
    assert "| FAIL |" in lines["peak RSS, all server processes, mixed c=64"]  # 1,100 MB: over 1 GB
    assert passed == 2
    summary_md = sbs.mixed_summary(runs)
    assert "| 8 | ratio | 1.80x | 1.80x | 0.80x | 1.80x | 4.00x | | 5.83x |" in summary_md
    assert "| 64 | iiifserver | 950.0 | 0.95 | 300.0 | 9.50 | 400.0 | 0 | 1,100 MB |" in summary_md
    kinds_md = sbs.mixed_kinds(runs)
    header = kinds_md.splitlines()[0]
    assert header.startswith("| c | server | viewer |")
    assert "| region |" in header
    ours = next(line for line in kinds_md.splitlines() if line.startswith("| 8 | iiifserver |"))
    by_kind = dict(zip(header.strip("| ").split(" | "), ours.strip("| ").split(" | "), strict=True))
    assert by_kind["region"] == "20.0 / 90.0"
    assert by_kind["viewer"] == "n/a / n/a"  # a kind the run did not time
    assert sbs.mixed_slowest(runs).count("\n") == 1  # the records carry no count: header only
    for rs in runs.values():
        for r in rs:
            r["request_latency"]["all"]["slowest"] = 4
            r["request_latency"]["region"]["slowest"] = 3
    slowest_md = sbs.mixed_slowest(runs)
    row = next(line for line in slowest_md.splitlines() if line.startswith("| 64 | iipsrv |"))
    shares = dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | "), strict=True))
    assert shares["region"] == "75%"
    assert shares["viewer"] == "0%"


def test_request_latencies_map_back_to_the_list() -> None:
    """wrk thread t of T sent lines t, t+T, ...; its cursor counts them from 1."""
    lines = "0 1 5000\n1 1 7000\n0 2 1000\n1 3 250\n"
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"latencies-{os.getpid()}.txt"
    path.write_text(lines)
    try:
        timed = load.read_latencies(path, threads=2)
    finally:
        path.unlink()
    assert timed == [(0, 5.0), (1, 7.0), (2, 1.0), (5, 0.25)]
    kinds = ["tile", "region", "tile", "info", "tile", "region"]
    got = load.request_percentiles(timed, kinds)
    assert got["all"] == {"n": 4, "p50": 5.0, "p90": 7.0, "p99": 7.0, "max": 7.0, "slowest": 1}
    assert got["region"] == {"n": 2, "p50": 7.0, "p90": 7.0, "p99": 7.0, "max": 7.0, "slowest": 1}
    assert got["tile"]["slowest"] == 0  # 5 and 1 ms: under the 7 ms p99 of all
    assert got["tile"]["n"] == 2
    assert got["tile"]["p50"] == 5.0
    assert "info" not in got  # nothing of that kind was timed
    assert load.quantile([3.0, 1.0, 2.0, 4.0], 0.5) == 3.0  # nearest rank below, on the sorted values


def test_settle_waits_for_start_up_work_to_end() -> None:
    """A server's one-off start-up work (iiifserver's Change Discovery comparison) is waited for:
    ``settle`` returns once the processes use under 5 % of a core for a whole second."""
    import subprocess
    import sys
    import time

    burn = "import time\nend = time.process_time() + 2.0\nwhile time.process_time() < end: pass\ntime.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", burn])
    try:
        started = time.monotonic()
        waited = servers.settle(lambda: [proc.pid], timeout=20)
        assert 1.5 <= waited < 10
        assert time.monotonic() - started >= 1.5
        assert proc.poll() is None  # settled while still running, idle
        assert servers.settle(lambda: [proc.pid], timeout=20) < 2.5  # already idle: one second's look
        assert servers.settle(lambda: [], timeout=20) < 2.5  # nothing running: nothing to wait for
    finally:
        proc.kill()
        proc.wait()
    assert servers.cpu_seconds([proc.pid]) == 0.0  # gone: counts nothing


def test_a_result_of_the_same_day_is_never_overwritten(tmp_path: Path) -> None:
    from benchmarks.harness import results

    name = "2026-12-07-vm-cpu-kind-cpu"
    first = results.write(tmp_path, name, {"run": 1}, "first\n")
    second = results.write(tmp_path, name, {"run": 2}, "second\n")
    third = results.write(tmp_path, name, {"run": 3}, "third\n")
    assert (first, second, third) == (name, f"{name}-2", f"{name}-3")
    assert (tmp_path / f"{first}.md").read_text() == "first\n"
    assert json.loads((tmp_path / f"{second}.json").read_text()) == {"run": 2}
    assert (tmp_path / f"{third}.md").read_text() == "third\n"


def test_window_percentiles_place_each_request_where_it_ended() -> None:
    """A request ends at the sum of its thread's latencies up to it; the windows count each
    request once, their p99s are their own, and ``slowest`` (at or over the p99 of all) says
    which part of the run the slowest 1 % came from."""
    threads = 2
    # thread 0: 100 requests of 40 ms (ends at 0.04 ... 4.0 s): all in the first 5-second window
    # thread 1: one of 3,000 ms, then 150 of 60 ms (ending at 3.06 ... 12.0 s)
    timed = [(k * threads, 40.0) for k in range(100)]
    timed += [(1, 3000.0)] + [((k + 1) * threads + 1, 60.0) for k in range(150)]
    windows = load.window_percentiles(timed, threads, duration=10.0)
    assert [(w["from"], w["to"]) for w in windows] == [(0.0, 5.0), (5.0, 10.0)]
    assert sum(w["n"] for w in windows) == len(timed)  # each request once, the late ones in the last
    first, second = windows
    assert first["n"] == 100 + 1 + 33  # thread 1's 3 s request, then 60 ms ones ending up to 4.98 s
    assert second["n"] == 150 - 33
    assert second["p99"] == 60.0
    assert first["p99"] == 60.0  # 134 requests: the 3 s one is over their own 99th percentile
    cut = load.quantile([ms for _, ms in timed], 0.99)
    assert cut == 60.0
    assert first["slowest"] == 1 + 33  # at or over 60 ms: the 3 s request and the 60 ms ones
    assert second["slowest"] == 150 - 33
    assert load.window_percentiles([], threads, 10.0) == []
    assert load.window_percentiles(timed, threads, 0.0) == []
    # Untimed requests of a thread count nothing: its clock runs on the timed ones alone.
    gaps = load.window_percentiles([(0, 6000.0), (4, 1000.0)], 2, duration=10.0)
    assert [w["n"] for w in gaps] == [0, 2]
    assert gaps[0]["p99"] == 0.0


def test_mixed_windows_table_gives_each_part_of_the_run() -> None:
    runs: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    windows = {  # config: per repeat, (p99, n, slowest) of the two windows
        "iiifserver": [[(300.0, 90, 8), (200.0, 110, 2)], [(320.0, 80, 6), (210.0, 120, 4)]],
        "iipsrv": [[(250.0, 50, 3), (240.0, 50, 3)]],
    }
    for config, repeats in windows.items():
        records = []
        for repeat in repeats:
            record = _run(config, "mixed", "mixed", 64, 1000.0, 2000.0)
            record["request_windows"] = [
                {"from": 5.0 * k, "to": 5.0 * (k + 1), "n": n, "p99": p99, "slowest": slowest}
                for k, (p99, n, slowest) in enumerate(repeat)
            ]
            records.append(record)
        runs[(config, "mixed", "mixed", 64)] = records
    runs[("iipsrv", "mixed", "mixed", 8)] = [_run("iipsrv", "mixed", "mixed", 8, 1000.0, 2000.0)]  # no windows
    table = sbs.mixed_windows(runs)
    lines = table.splitlines()
    assert lines[0] == "| c | server | 0-5 s | 5-10 s |"
    assert "| 64 | iiifserver | 310.0 (70%) | 205.0 (30%) |" in lines  # medians; 14 of the 20 slowest first
    assert "| 64 | iipsrv | 250.0 (50%) | 240.0 (50%) |" in lines
    assert not any(line.startswith("| 8 |") for line in lines)  # a run without windows: no row


def test_open_rates_option() -> None:
    assert sbs.parse_rates("600") == (600.0,)
    assert sbs.parse_rates("400, 600.5") == (400.0, 600.5)
    assert sbs.parse_rates("") == ()
    for bad in ("fast", "0", "-5"):
        with pytest.raises(argparse.ArgumentTypeError):
            sbs.parse_rates(bad)


def test_mixed_open_table_per_rate_and_server() -> None:
    """Open-loop runs apart from the closed ones (their label's image field), medians over repeats."""
    runs: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    assert sbs.mixed_open(runs) == ""
    for config, p99s in (("iiifserver", (40.0, 50.0)), ("iipsrv", (90.0,))):
        records = []
        for p99 in p99s:
            record = _run(config, sbs.open_name(600), "mixed", sbs.MIX_OPEN_CONC, 600.0, 2000.0)
            record["rate"] = 600.0
            record["request_latency"] = {
                "all": {"p50": 1.0, "p90": 10.0, "p99": p99},
                "region": {"p50": 8.0, "p90": 20.0, "p99": 2 * p99},
            }
            records.append(record)
        runs[(config, sbs.open_name(600), "mixed", sbs.MIX_OPEN_CONC)] = records
    runs[("iiifserver", "mixed", "mixed", 64)] = [_run("iiifserver", "mixed", "mixed", 64, 1500.0, 2000.0)]
    lines = sbs.mixed_open(runs).splitlines()
    assert lines[0].startswith("| rate | server | req/s | p50 ms | p90 ms | p99 ms | p99 viewer |")
    ours = next(line for line in lines if "| iiifserver |" in line).split(" | ")
    assert ours[:6] == ["| 600/s", "iiifserver", "600.0", "1.00", "10.0", "45.0"]
    assert ours[6 + list(mix.KINDS).index("region")] == "90.0"
    assert ours[6] == "n/a"  # no viewer requests in these runs
    assert sum("| iipsrv |" in line for line in lines) == 1
    assert len(lines) == 4  # header, rule, two servers: the closed-loop run is not here
