#!/usr/bin/env python3
"""WAL bytes and time per mint on SQLite, for the mint's index layout.

Applies the repository's SQLite migrations to a fresh file, then inserts what
a batch of mints inserts (a DPoP replay id, a license, its audit row) in
transactions of BATCH mints, and reports the WAL written per mint. Compares
random (UUIDv4) with time-ordered (UUIDv7) license ids, and the license
indexes before migration 0008 with those after.

Usage: python3 benches/wal_per_mint.py [MINTS] [BATCH] [USERS]
"""
import base64
import glob
import hashlib
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def uuid7_hex():
    ms = int(time.time() * 1000)
    return uuid.UUID(int=(ms << 80) | random.getrandbits(80)).hex


def b64(raw):
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def run(ordered_ids, old_indexes, mints, batch, users):
    directory = tempfile.mkdtemp(prefix="wal-per-mint.")
    path = os.path.join(directory, "t.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA wal_autocheckpoint=0")  # the WAL keeps everything written
    for migration in sorted(glob.glob(os.path.join(ROOT, "migrations/sqlite/*.sql"))):
        db.executescript(open(migration).read())
    if old_indexes:
        db.executescript(
            "CREATE INDEX licenses_login ON licenses(login_id);"
            "CREATE INDEX licenses_credential ON licenses(credential_id);"
        )
    now = int(time.time())
    people = []
    for n in range(users):
        user_id = str(uuid.uuid4())
        db.execute(
            "INSERT INTO users (id, username, username_key, username_skeleton, display_name, role, created_at) "
            "VALUES (?, ?, ?, ?, ?, 'user', ?)",
            (user_id, f"user{n}", f"user{n}", f"user{n}", f"User {n}", now),
        )
        login_id = uuid7_hex() if ordered_ids else uuid.uuid4().hex
        people.append((user_id, login_id, b64(os.urandom(16))))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    started = time.perf_counter()
    idx = 0
    for _ in range(mints // batch):
        db.execute("BEGIN IMMEDIATE")
        for _ in range(batch):
            user_id, login_id, credential_id = random.choice(people)
            jti = uuid7_hex() if ordered_ids else uuid.uuid4().hex
            db.execute(
                "INSERT INTO dpop_proofs (id, expires_at) VALUES (?, ?)",
                (b64(hashlib.sha256(os.urandom(16)).digest()), now + 60),
            )
            db.execute(
                "INSERT INTO licenses (jti, user_id, kid, device_jkt, login_id, credential_id, list_id, idx, "
                "entitlements, issued_at, expires_at) VALUES (?, ?, 'k1', ?, ?, ?, 1, ?, '[\"premium\"]', ?, ?)",
                (jti, user_id, "jkt-" + user_id, login_id, credential_id, idx, now, now + 30 * 86400),
            )
            idx += 1
            db.execute(
                "INSERT INTO audit_log (at, event, actor_user_id, target_user_id, target) "
                "VALUES (?, 'license.minted', ?, ?, ?)",
                (now, user_id, user_id, jti),
            )
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    wal = os.path.getsize(path + "-wal")
    db.close()
    for f in glob.glob(path + "*"):
        os.remove(f)
    os.rmdir(directory)
    return wal / mints, elapsed / mints * 1e6


def main():
    mints = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    users = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    print(f"{mints} mints, batches of {batch}, {users} users, SQLite {sqlite3.sqlite_version}")
    for ordered, old, label in [
        (False, True, "before: UUIDv4 ids, indexes by login and passkey"),
        (True, False, "after:  UUIDv7 ids, no index by login or passkey"),
    ]:
        wal, micros = run(ordered, old, mints, batch, users)
        print(f"{label:52} WAL {wal:7,.0f} bytes/mint  {micros:6.1f} µs/mint")


if __name__ == "__main__":
    main()
