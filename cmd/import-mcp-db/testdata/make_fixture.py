#!/usr/bin/python3
"""Fixture generator for import-mcp-db's tests.

Writes an MCP server database as the MCP server itself would: the
app_passwords table of its migrations 002 and 003 (SQLAlchemy's DDL for
op.create_table / op.add_column: LargeBinary is BLOB on SQLite and BYTEA on
PostgreSQL, BigInteger is BIGINT), with rows whose encrypted_password is a
token made by Python's cryptography.fernet.Fernet, the library the MCP
server uses. So the Go side is proven against the real token format.

Run with Debian's python3 (package python3-cryptography):

    /usr/bin/python3 make_fixture.py [--sqlite FILE] [--sql FILE] > manifest.json

--sqlite writes an SQLite database file; --sql writes SQL (schema and
INSERTs) for PostgreSQL. stdout gets a JSON manifest: the key, a second
key, and every row in clear with the case it stands for, for the test to
compare against. Test data only: the keys and passwords are random.
"""

import argparse
import json
import secrets
import sqlite3
import string
import sys

from cryptography.fernet import Fernet

# The schema after upstream's migrations 002 (table, index) and 003 (scopes,
# username), as SQLAlchemy emits it. {binary} is BLOB or BYTEA.
SCHEMA = [
    """CREATE TABLE app_passwords (
\tuser_id TEXT NOT NULL,
\tencrypted_password {binary} NOT NULL,
\tcreated_at BIGINT NOT NULL,
\tupdated_at BIGINT NOT NULL,
\tPRIMARY KEY (user_id)
)""",
    "CREATE INDEX idx_app_passwords_updated ON app_passwords (updated_at)",
    "ALTER TABLE app_passwords ADD COLUMN scopes TEXT",
    "ALTER TABLE app_passwords ADD COLUMN username TEXT",
]

# Tokens are stamped long ago: the MCP server's are as old as each user's
# last provisioning, and a reader must not apply a TTL.
SIGNED_AT = 1600000000

ALPHABET = string.ascii_letters + string.digits


def app_password():
    # Nextcloud's app passwords: 72 characters of [A-Za-z0-9].
    return "".join(secrets.choice(ALPHABET) for _ in range(72))


def rows(key, wrong_key, bad_format=False):
    good, other = Fernet(key), Fernet(wrong_key)
    out = []

    def add(case, user_id, created_at, updated_at, scopes, username, cipher=good, password=None):
        password = password or app_password()
        token = cipher.encrypt_at_time(password.encode("utf-8"), SIGNED_AT)
        out.append(
            {
                "case": case,
                "user_id": user_id,
                "password": password,
                "token": token,
                "created_at": created_at,
                "updated_at": updated_at,
                "scopes": scopes,  # the column's text, or None for NULL
                "username": username,
            }
        )

    add("ok", "alice", 1700000000, 1700000000, None, None)
    # updated_at past 2**31: the columns are BIGINT.
    add("ok", "bob", 1700000100, 4102444800, json.dumps(["notes.read", "calendar.write"]), "bob.login")
    add("ok", "carol", 1700000200, 1700000300, json.dumps([]), "Zo\u00eb Carol")
    add("wrong_key", "dave", 1700000400, 1700000400, None, "dave", cipher=other)
    add("corrupt", "erin", 1700000500, 1700000500, None, None)
    add("ok", "frank", 1700000600, 1700000700, json.dumps(["files.read"]), None)
    add("bad_scopes", "grace", 1700000800, 1700000800, json.dumps("notes.read"), None)
    add("bad_user_id", "../heidi", 1700000900, 1700000900, None, None)
    add("ok", "judy", 1700001000, 1700001100, None, "judy")
    if bad_format:
        # Rows the MCP server's own format check (^[a-zA-Z0-9-]{20,256}$)
        # would never have stored, under the right key: a space and a
        # character outside the set, 19 characters, 257 characters.
        add("bad_format", "ivan", 1700001200, 1700001200, None, None, password="not an app password!")
        add("bad_format", "ivo", 1700001300, 1700001300, None, None, password="Abcde-Fghij-Klmno-P")
        add("bad_format", "ivy", 1700001400, 1700001400, None, None, password="A" * 257)

    # A corrupt token: one character of the ciphertext changed, so the
    # HMAC no longer verifies.
    erin = next(r for r in out if r["case"] == "corrupt")
    t = bytearray(erin["token"])
    i = len(t) // 2
    t[i] = ord("A") if t[i] != ord("A") else ord("B")
    erin["token"] = bytes(t)
    return out


def write_sqlite(path, data):
    db = sqlite3.connect(path)
    for stmt in SCHEMA:
        db.execute(stmt.format(binary="BLOB"))
    for r in data:
        db.execute(
            "INSERT INTO app_passwords (user_id, encrypted_password, created_at, updated_at, scopes, username)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (r["user_id"], r["token"], r["created_at"], r["updated_at"], r["scopes"], r["username"]),
        )
    db.commit()
    db.close()


def sql_text(v):
    if v is None:
        return "NULL"
    return "'" + v.replace("'", "''") + "'"


def write_sql(path, data):
    with open(path, "w", encoding="utf-8") as f:
        for stmt in SCHEMA:
            f.write(stmt.format(binary="BYTEA") + ";\n")
        for r in data:
            f.write(
                "INSERT INTO app_passwords (user_id, encrypted_password, created_at, updated_at, scopes, username)"
                " VALUES ({}, decode('{}', 'hex'), {}, {}, {}, {});\n".format(
                    sql_text(r["user_id"]),
                    r["token"].hex(),
                    r["created_at"],
                    r["updated_at"],
                    sql_text(r["scopes"]),
                    sql_text(r["username"]),
                )
            )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sqlite", help="write an SQLite database to this file")
    p.add_argument("--sql", help="write PostgreSQL SQL (schema and rows) to this file")
    p.add_argument("--bad-format", action="store_true",
                   help="add rows whose decrypted password is not in app-password format")
    args = p.parse_args()

    key, wrong_key = Fernet.generate_key(), Fernet.generate_key()
    data = rows(key, wrong_key, args.bad_format)
    if args.sqlite:
        write_sqlite(args.sqlite, data)
    if args.sql:
        write_sql(args.sql, data)
    manifest = {
        "key": key.decode("ascii"),
        "wrong_key": wrong_key.decode("ascii"),
        "rows": [{k: v for k, v in r.items() if k != "token"} for r in data],
    }
    json.dump(manifest, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
