"""Benchmark: HTTP client designs for many concurrent slow calls, without pytest.

Why promptab's ``openai`` provider sends from a pool of threads through its own
connection stack (``pytest_promptab/providers/transport.py``) rather than from
one asyncio event loop with ``httpx.AsyncClient``: this script makes the same
calls with each design and prints the client's CPU per call and the wall
time against the ideal (calls x delay / concurrency).

- ``threads+httpx``: N threads sharing one ``httpx.Client`` (httpx's pool;
  promptab before issue 11);
- ``threads+promptab``: N threads sharing one ``PooledTransport`` (now);
- ``asyncio+httpx``: one event loop, ``httpx.AsyncClient``, N tasks making
  the calls one after the other;
- ``asyncio+httpcore``: one event loop, ``httpcore.AsyncConnectionPool``
  directly (the floor of an httpx-based asyncio design).

The server is ``tests/fake_openai.py`` in a subprocess of its own, so that
the CPU measured (``time.process_time()`` of the client process, every
thread, imports excluded) is the client's alone. Designs run interleaved, in
a shuffled order per round; the medians are shown.

Usage:  python benchmarks/bench_transport.py [--calls 2000] [--delay 0.05] [--concurrency 32 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _util import clean_env, load_average, table  # noqa: E402

DESIGNS = ("threads+httpx", "threads+promptab", "asyncio+httpx", "asyncio+httpcore")

SERVER = """
import sys
sys.path.insert(0, sys.argv[2])
from tests.fake_openai import FakeOpenAI
fake = FakeOpenAI()
fake.delay_s = float(sys.argv[1])
print(fake.base_url, flush=True)
sys.stdin.read()
fake.stop()
"""

CLIENT = r'''
import asyncio, json, queue, sys, threading, time
design, url, calls, concurrency = sys.argv[1], sys.argv[2] + "/chat/completions", int(sys.argv[3]), int(sys.argv[4])
body = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "Write about t1"}]}).encode()
headers = [("Accept", "application/json"), ("Content-Type", "application/json")]
import httpx, httpcore
from pytest_promptab.providers.openai import _endpoint
from pytest_promptab.providers.transport import PooledTransport


def in_threads(call):
    jobs = queue.SimpleQueue()
    for i in range(calls):
        jobs.put(i)

    def work():
        while True:
            try:
                jobs.get_nowait()
            except queue.Empty:
                return
            call()

    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


async def in_loop(make_call, pool):
    left = [calls]

    async def worker():  # N tasks taking calls one after the other, as the threads do
        while left[0] > 0:
            left[0] -= 1
            await make_call(pool)

    await asyncio.gather(*[worker() for _ in range(concurrency)])


async def run_async():
    if design == "asyncio+httpx":
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=concurrency)) as client:
            async def call(client):
                json.loads((await client.post(url, headers=headers, content=body)).content)
            await in_loop(call, client)
    else:
        raw = [(b"Host", httpx.URL(url).netloc), (b"Content-Length", str(len(body)).encode())]
        raw += [(k.encode(), v.encode()) for k, v in headers]
        async with httpcore.AsyncConnectionPool(max_connections=concurrency) as pool:
            async def call(pool):
                json.loads((await pool.request("POST", url, headers=raw, content=body)).content)
            await in_loop(call, pool)


cpu, wall = time.process_time(), time.perf_counter()
if design == "threads+httpx":
    client = httpx.Client(limits=httpx.Limits(max_connections=None, max_keepalive_connections=32))
    in_threads(lambda: json.loads(client.post(url, headers=headers, content=body).content))
elif design == "threads+promptab":
    transport, endpoint = PooledTransport(lambda: None), _endpoint(sys.argv[2])
    in_threads(lambda: json.loads(transport.send(endpoint, headers, body, 60.0).content))
else:
    asyncio.run(run_async())
print(json.dumps({"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}))
'''


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--delay", type=float, default=0.05, help="the server's delay per answer, s (default 0.05)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    env = clean_env(Path("/tmp"), {"PYTHONPATH": str(REPO)})
    print(f"load average before: {load_average()} (a shared machine: wall times include other load)")
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(args.delay), str(REPO)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        results: dict[tuple[int, str], list[dict[str, float]]] = {}
        jobs = [(c, d) for c in args.concurrency for d in DESIGNS]
        rng = random.Random(0)
        for round_no in range(args.rounds):
            rng.shuffle(jobs)
            for concurrency, design in jobs:
                out = subprocess.run([sys.executable, "-c", CLIENT, design, base_url, str(args.calls), str(concurrency)],
                                     capture_output=True, text=True, env=env, check=True)
                results.setdefault((concurrency, design), []).append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  round {round_no + 1}/{args.rounds} done (load {load_average()})", file=sys.stderr, flush=True)
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(10)
    rows = []
    for (concurrency, design), samples in sorted(results.items()):
        ideal = args.calls * args.delay / concurrency
        wall = statistics.median(s["wall"] for s in samples)
        cpu = statistics.median(s["cpu"] for s in samples) / args.calls * 1000
        rows.append([concurrency, design, f"{wall:.2f}", f"{ideal:.2f}", f"{wall / ideal:.2f}", f"{cpu:.3f}"])
    print(f"\n{args.calls} calls at {args.delay * 1000:.0f} ms, {args.rounds} interleaved rounds, medians; "
          f"load average after: {load_average()}")
    print(table(rows, ["concurrency", "design", "wall s", "ideal s", "ratio", "client CPU ms/call"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
