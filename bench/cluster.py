"""The cluster part of make bench (issue 18): the batch on the SQLite store, on PostgreSQL, and
on PostgreSQL behind a proxy adding 50 ms to every round trip (bench/pgdelay.py), in one run,
alternating, on loopback (the store's own cost shows) and under a 1 Gbit/s cap for the batch (a
server's link; the downloads take the time they take in production). Target: with 50 ms a round
trip the batch keeps at least 90% of its download throughput."""
import os
import shutil
import subprocess
import time

PG_BIN = os.environ.get("ASSETD_PG_BIN", "/usr/lib/postgresql/15/bin")
HERE = os.path.dirname(os.path.abspath(__file__))


class Postgres:
    """Debian's PostgreSQL 15 in DIR on a Unix socket there (as postgres when run as root)."""

    def __init__(self, d):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(d, self.user)
        self.sh(f"{PG_BIN}/initdb -D data -U assetd --auth=trust -E UTF8 --no-sync > initdb.out")
        self.sh(f"{PG_BIN}/pg_ctl -D data -l server.log -w -o '-k {d} -c listen_addresses= -c fsync=off'"
                " start > /dev/null")
        self.sh(f"{PG_BIN}/createdb -h {d} -U assetd assetd")

    def sh(self, cmd):
        full = f"cd {self.dir} && {cmd}"
        argv = ["runuser", "-u", self.user, "--", "sh", "-c", full] if self.user else ["sh", "-c", full]
        subprocess.check_call(argv)

    def url(self, port=None):
        if port:
            return f"postgresql://assetd@127.0.0.1:{port}/assetd"
        return f"postgresql:///assetd?host={self.dir}&user=assetd"

    def reset(self):
        self.sh(f"PGOPTIONS='-c client_min_messages=warning' psql -X -q -h {self.dir} -U assetd -d assetd"
                " -c 'DROP SCHEMA public CASCADE; CREATE SCHEMA public'")

    def stop(self):
        self.sh(f"{PG_BIN}/pg_ctl -D data -w -m fast stop > /dev/null")


def part_cluster(args, work, nginx, sim, results, Batch, generate, run_batch, table, sizes, variants):
    if not os.path.exists(f"{PG_BIN}/initdb"):
        raise SystemExit("bench: the cluster part needs PostgreSQL: apt-get install postgresql")
    src = os.path.join(work, "srv")
    pg = Postgres(os.path.join(work, "pg"))
    port_file = os.path.join(work, "pgdelay.port")
    proxy = subprocess.Popen(["python3", os.path.join(HERE, "pgdelay.py"), port_file,
                              os.path.join(pg.dir, ".s.PGSQL.5432"), "25"])
    try:
        for _ in range(200):
            if os.path.exists(port_file) and open(port_file).read():
                break
            time.sleep(0.02)
        port = int(open(port_file).read())
        urls = generate(src, "video_k", args.videos, sizes)

        gbit = str(125 * 1000 * 1000)

        class ClusterBatch(Batch):
            def cmd(self, tool):
                cmd, env = Batch.cmd(self, "assetd")
                store, _, link = tool.partition("@")
                if store != "assetd":
                    pg.reset()
                    cmd += ["--database", pg.url(port if store == "assetd-pg+50ms" else None)]
                if link:
                    env = dict(env, BENCH_RATE=gbit)
                return cmd, env

        b = ClusterBatch(work, nginx, sim, src, "video_k", args.videos, urls, variants)
        tools = ["assetd", "assetd-pg", "assetd-pg+50ms"]
        res = run_batch(b, tools + [t + "@1G" for t in tools], args.runs, "cluster")
        rows = table(b, res, f"the job store: SQLite, PostgreSQL, PostgreSQL + 50 ms a round trip"
                     f" (@1G: the batch capped at 125 MB/s); {args.videos} videos")
        for link in ("", "@1G"):
            ratio = rows["assetd-pg" + link]["wall"] / rows["assetd-pg+50ms" + link]["wall"]
            rows["_throughput_ratio" + link] = ratio
            where = "on loopback" if not link else "at 1 Gbit/s"
            print(f"  {where}: throughput with 50 ms a database round trip {ratio * 100:.0f}% of PostgreSQL's"
                  f" direct (target >= 90%{'' if link else '; loopback shows the cost, no target'})")
        results["cluster"] = rows
        shutil.rmtree(os.path.join(src, "files"))
    finally:
        proxy.kill()
        pg.stop()
