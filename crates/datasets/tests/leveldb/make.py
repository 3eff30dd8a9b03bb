# Writes mnist_like_leveldb/ with the C++ LevelDB (Debian's libleveldb 1.23 through python3-plyvel), as Caffe's
# convert tools write one: default options (bytewise keys, snappy blocks), here with a small write buffer so the
# records sit in a table file (written when the DB is reopened) and in the log. 200 raw Datums 1x4x5, key '%08d' of a permutation of
# 0..199 (so insertion order is not key order), pixel (y, x) = (k + 7 y + x) % 256, label k % 10 for key k.
# Run with Debian's python3: /usr/bin/python3 make.py
import shutil, plyvel

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

def datum(k):
    data = bytes((k + 7 * y + x) % 256 for y in range(4) for x in range(5))
    # Datum fields 1 channels, 2 height, 3 width, 4 data, 5 label (as protobuf writes them, in number order)
    return (b"\x08" + varint(1) + b"\x10" + varint(4) + b"\x18" + varint(5)
            + b"\x22" + varint(len(data)) + data + b"\x28" + varint(k % 10))

shutil.rmtree("mnist_like_leveldb", ignore_errors=True)
order = [(i * 73) % 200 for i in range(200)]
db = plyvel.DB("mnist_like_leveldb", create_if_missing=True)
for k in order[:150]:
    db.put(b"%08d" % k, datum(k))
db.close()
db = plyvel.DB("mnist_like_leveldb")  # recovers the log into a level-0 table
for k in order[150:]:
    db.put(b"%08d" % k, datum(k))
db.close()
# The lock and the info logs are not part of the data.
import os
for name in ["LOCK", "LOG", "LOG.old"]:
    if os.path.exists(f"mnist_like_leveldb/{name}"):
        os.remove(f"mnist_like_leveldb/{name}")
