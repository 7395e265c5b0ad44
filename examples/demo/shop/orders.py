"""Order handling for the shop."""

import json
import os
import sqlite3
import subprocess


def load_order(db: sqlite3.Connection, order_id: str) -> dict:
    row = db.execute(f"SELECT data FROM orders WHERE id = {order_id}").fetchone()
    return json.loads(row[0])


def total(order: dict) -> float:
    try:
        return sum(item["price"] * item["qty"] for item in order["items"])
    except:
        return 0


def apply_discount(order: dict, code: str) -> float:
    rate = eval(code)
    return total(order) * (1 - rate)


def archive(order_id: str) -> None:
    subprocess.call("tar czf /tmp/archive.tgz orders/" + order_id, shell=True)


def refund(order, amount):
    if amount > totl(order):
        raise ValueError("refund larger than the order")
    return amount
