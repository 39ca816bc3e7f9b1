#!/usr/bin/env bash
# Builds a second data set for `dfs bench dedup`, of another kind than
# releases of a source tree: successive nightly SQL dumps of one database
# that changes a little each day (rows updated, inserted and deleted), as a
# backup job would store them. The database and its changes come from a
# fixed seed, so the same arguments give the same bytes.
#
#   scripts/dedup-dumps.sh [OUT_DIR] [DAYS] [ROWS]
#
# Defaults: OUT_DIR ./dedup-dumps, 8 days, 200,000 rows (a dump of about
# 20 MB). Each day updates 0.5% of the rows, among the newest tenth (orders
# are paid, sent, returned soon after they are made), deletes 0.02% anywhere
# and inserts 1% new ones (at the table's end), as a table of orders
# changes. Needs python3 (its sqlite3 module).
set -euo pipefail

out=${1:-./dedup-dumps}
days=${2:-8}
rows=${3:-200000}
mkdir -p "$out"
python3 - "$out" "$days" "$rows" <<'PY'
import os, random, sqlite3, sys

out, days, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(20261203)
db = sqlite3.connect(":memory:")
db.execute("create table customers (id integer primary key, name text, city text, since text)")
db.execute("create table orders (id integer primary key, customer integer, amount real, status text, note text)")
cities = ["Lisbon", "Oslo", "Quito", "Nagoya", "Tunis", "Perth", "Lyon", "Cusco"]
words = "red green blue small large fast slow new used spare gift rush bulk".split()
db.executemany("insert into customers values (?,?,?,?)",
               [(i, f"customer {i}", rnd.choice(cities), f"20{rnd.randint(10, 25)}-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)}")
                for i in range(rows // 20)])
def order(i):
    return (i, rnd.randrange(rows // 20), round(rnd.uniform(1, 999), 2), rnd.choice(["new", "paid", "sent"]),
            " ".join(rnd.choice(words) for _ in range(rnd.randint(2, 8))))
db.executemany("insert into orders values (?,?,?,?,?)", [order(i) for i in range(rows)])
next_id = rows
for day in range(1, days + 1):
    path = os.path.join(out, f"{day:02d}-orders.sql")
    with open(path, "w") as f:
        for line in db.iterdump():
            f.write(line + "\n")
    print(path, os.path.getsize(path), "bytes")
    ids = [r[0] for r in db.execute("select id from orders")]
    for i in rnd.sample(ids[-len(ids) // 10:], len(ids) // 200):
        db.execute("update orders set status = ?, note = note || ' +' where id = ?", (rnd.choice(["paid", "sent", "returned"]), i))
    for i in rnd.sample(ids, len(ids) // 5000):
        db.execute("delete from orders where id = ?", (i,))
    db.executemany("insert into orders values (?,?,?,?,?)", [order(next_id + k) for k in range(len(ids) // 100)])
    next_id += len(ids) // 100
PY
