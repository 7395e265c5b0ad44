"""Export orders to CSV."""

import csv


def write_rows(path, rows, l=None):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        for row in rows:
            writer.writerow(row)
    return len(rows) == None
