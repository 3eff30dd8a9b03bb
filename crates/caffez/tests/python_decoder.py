#!/usr/bin/env python3
"""A .caffez decoder written from docs/caffez.md alone: python3 python_decoder.py IN.caffez OUT.caffemodel

Standard library only (struct, zlib). Every rule the page lists is checked; a file that breaks one is refused
with a one-line message on stderr and exit code 1, and OUT is not written.
"""

import struct
import sys
import zlib

MAGIC = b"\x89CAFFEZ\n"
HEADER_LEN = 32
SECTION_OVERHEAD = 13  # kind, body length, CRC-32
KIND_SKELETON = 1
KIND_BLOB = 2
MAX_CHUNK_LEN = 1 << 24
DEFLATE_MAX_RATIO = 1032

# The range coder (docs/caffez.md, "The range decoder").
TOP = 1 << 24
MASK32 = 0xFFFFFFFF
RATE_LIMIT = 254
STEP = [65536 // (n + 2) for n in range(RATE_LIMIT + 1)]
# A context is one int: (p16 << 8) | n, with p16 = P(bit = 0) in units of 2^-16 and n the observations so far.
INITIAL_CONTEXT = 32768 << 8
# The chunk model's contexts, one flat list: the slot tree, 25 mantissa trees of 64, the code tree.
SLOT_BASE = 0
MANTISSA_BASE = 32
CODE_BASE = MANTISSA_BASE + 25 * 64
CONTEXTS = CODE_BASE + 256
# Zero padding past a stream's end, more than one kept weight can read (5 + 6 + 8 context bits of at most 2
# bytes each, 18 direct bits of at most 1), so a missing byte is seen after the entry instead of on every byte.
PAD = 128


class Refused(Exception):
    """The file breaks a rule of the format."""


def varint(buf, at, end, what):
    """An unsigned LEB128 varint in its shortest form within buf[at:end]: (value, offset after it)."""
    value = 0
    for index in range(10):
        if at + index >= end:
            raise Refused(f"{what} at byte {at}: truncated varint")
        byte = buf[at + index]
        if index == 9 and byte > 1:
            raise Refused(f"{what} at byte {at}: varint exceeds 2^64 - 1")
        value |= (byte & 0x7F) << (7 * index)
        if byte & 0x80 == 0:
            if byte == 0 and index > 0:
                raise Refused(f"{what} at byte {at}: overlong varint")
            return value, at + index + 1
    raise Refused(f"{what} at byte {at}: varint longer than 10 bytes")


def decode_chunk(stream, offset, bits, kept, length, entries, table, out, out_at):
    """Decodes one chunk's stream and writes the kept weights' f32 bytes into out (already zero)."""
    if kept == 0:
        if stream:
            raise Refused(f"stream at byte {offset}: {len(stream)} bytes for a chunk with no kept weight")
        return
    data = bytes(stream) + bytes(PAD)
    end = len(stream)
    ctx = [INITIAL_CONTEXT] * CONTEXTS
    step = STEP
    bad_start = data[0] != 0
    code = (data[1] << 24) | (data[2] << 16) | (data[3] << 8) | data[4]
    pos = 5
    rng = MASK32
    nxt = 0  # the first position after the previous kept weight
    for entry in range(kept):
        # The slot: a 5-bit tree.
        node = 1
        for _ in range(5):
            i = SLOT_BASE + node
            c = ctx[i]
            p = c >> 8
            n = c & 255
            q = p >> 4
            bound = (rng >> 12) * (q if q else 1)
            if code < bound:
                rng = bound
                p += ((65535 - p) * step[n]) >> 16
                node <<= 1
            else:
                code -= bound
                rng -= bound
                p -= (p * step[n]) >> 16
                node = (node << 1) | 1
            ctx[i] = (p << 8) | (n + 1 if n < RATE_LIMIT else n)
            while rng < TOP:
                rng <<= 8
                code = ((code << 8) & MASK32) | data[pos]
                pos += 1
        slot = node - 32
        if slot > 24:
            raise Refused(f"stream at byte {offset}: weight {entry}: gap slot {slot}")
        tree_bits = slot if slot < 6 else 6
        rest = slot - tree_bits
        # The top tree_bits mantissa bits through the slot's own tree.
        base = MANTISSA_BASE + 64 * slot
        node = 1
        for _ in range(tree_bits):
            i = base + node
            c = ctx[i]
            p = c >> 8
            n = c & 255
            q = p >> 4
            bound = (rng >> 12) * (q if q else 1)
            if code < bound:
                rng = bound
                p += ((65535 - p) * step[n]) >> 16
                node <<= 1
            else:
                code -= bound
                rng -= bound
                p -= (p * step[n]) >> 16
                node = (node << 1) | 1
            ctx[i] = (p << 8) | (n + 1 if n < RATE_LIMIT else n)
            while rng < TOP:
                rng <<= 8
                code = ((code << 8) & MASK32) | data[pos]
                pos += 1
        top = node - (1 << tree_bits)
        # The rest, direct bits.
        low = 0
        for _ in range(rest):
            rng >>= 1
            if code >= rng:
                code -= rng
                low = (low << 1) | 1
            else:
                low <<= 1
            while rng < TOP:
                rng <<= 8
                code = ((code << 8) & MASK32) | data[pos]
                pos += 1
        position = nxt + (1 << slot) + (top << rest) + low - 1
        if position >= length:
            raise Refused(f"stream at byte {offset}: weight {entry}: position {position} past the chunk's {length}")
        # The code: a bits-deep tree.
        node = 1
        for _ in range(bits):
            i = CODE_BASE + node
            c = ctx[i]
            p = c >> 8
            n = c & 255
            q = p >> 4
            bound = (rng >> 12) * (q if q else 1)
            if code < bound:
                rng = bound
                p += ((65535 - p) * step[n]) >> 16
                node <<= 1
            else:
                code -= bound
                rng -= bound
                p -= (p * step[n]) >> 16
                node = (node << 1) | 1
            ctx[i] = (p << 8) | (n + 1 if n < RATE_LIMIT else n)
            while rng < TOP:
                rng <<= 8
                code = ((code << 8) & MASK32) | data[pos]
                pos += 1
        value = node - (1 << bits)
        if value == 0:
            raise Refused(f"stream at byte {offset}: weight {entry}: code 0 for a kept weight")
        if value > entries:
            raise Refused(f"stream at byte {offset}: code {value} beyond the codebook's {entries} values")
        at = out_at + 4 * position
        out[at : at + 4] = table[value]
        nxt = position + 1
        if pos > end:
            break
    if pos > end:
        raise Refused(f"stream at byte {offset}: {pos - end} bytes missing at its end")
    if pos < end:
        raise Refused(f"stream at byte {offset}: {end - pos} bytes never read")
    if bad_start or code != 0:
        raise Refused(f"stream at byte {offset}: bad first byte or final state")


def decode(buf):
    """The model a whole .caffez file gives back."""
    if buf[:8] != MAGIC:
        raise Refused("not a .caffez file (magic bytes)")
    if len(buf) < HEADER_LEN:
        raise Refused(f"header: {len(buf)} bytes, needs 32")
    version, flags, section_count, output_len, output_crc, header_crc = struct.unpack_from("<HHIQII", buf, 8)
    if zlib.crc32(buf[:28]) != header_crc:
        raise Refused("header at byte 0: CRC-32 mismatch")
    if version != 1:
        raise Refused(f"header at byte 8: version {version}")
    if flags != 0:
        raise Refused(f"header at byte 10: flags {flags:#06x}")
    if section_count == 0 or section_count > (len(buf) - HEADER_LEN) // SECTION_OVERHEAD:
        raise Refused(f"header at byte 12: {section_count} sections cannot fit")

    at = HEADER_LEN
    skeleton = None
    blobs = []
    for section in range(section_count):
        if len(buf) - at < SECTION_OVERHEAD:
            raise Refused(f"section {section} at byte {at}: truncated")
        kind = buf[at]
        (body_len,) = struct.unpack_from("<Q", buf, at + 1)
        if body_len > len(buf) - at - SECTION_OVERHEAD:
            raise Refused(f"section {section} at byte {at}: body of {body_len} bytes truncated")
        body = at + 9
        end = body + body_len
        (crc,) = struct.unpack_from("<I", buf, end)
        if zlib.crc32(buf[at:end]) != crc:
            raise Refused(f"section {section} at byte {at}: CRC-32 mismatch")
        where = f"section {section} at byte {at}"
        if section == 0:
            if kind != KIND_SKELETON:
                raise Refused(f"{where}: kind {kind}, the first section must be the skeleton")
            skeleton = read_skeleton(buf, body, end, where)
        elif kind == KIND_BLOB:
            blobs.append(read_blob(buf, body, end, where, len(skeleton), blobs[-1] if blobs else None))
        else:
            raise Refused(f"{where}: kind {kind} where a blob section (2) must be")
        at = end + 4
    if at != len(buf):
        raise Refused(f"end of file at byte {at}: {len(buf) - at} bytes follow the last section")
    if len(skeleton) + sum(4 * b["count"] for b in blobs) != output_len:
        raise Refused("header at byte 16: output length does not match the skeleton and the blobs")

    out = bytearray()
    start = 0
    for blob in blobs:
        out += skeleton[start : blob["insert"]]
        start = blob["insert"]
        out_at = len(out)
        out += bytes(4 * blob["count"])
        for index, (kept, stream_at, stream_len) in enumerate(blob["chunks"]):
            first = index * blob["chunk_len"]
            length = min(blob["chunk_len"], blob["count"] - first)
            decode_chunk(
                buf[stream_at : stream_at + stream_len],
                stream_at,
                blob["bits"],
                kept,
                length,
                len(blob["table"]) - 1,
                blob["table"],
                out,
                out_at + 4 * first,
            )
    out += skeleton[start:]
    if zlib.crc32(out) != output_crc:
        raise Refused("header at byte 24: the model given back does not match its CRC-32")
    return bytes(out)


def read_skeleton(buf, at, end, where):
    if at >= end:
        raise Refused(f"{where}: no method byte")
    method = buf[at]
    raw_len, at = varint(buf, at + 1, end, f"{where}, raw length")
    data = buf[at:end]
    if method == 0:
        if raw_len != len(data):
            raise Refused(f"{where}: raw length {raw_len} but {len(data)} stored bytes")
        return bytes(data)
    if method != 1:
        raise Refused(f"{where}: method {method}")
    if raw_len > DEFLATE_MAX_RATIO * len(data):
        raise Refused(f"{where}: raw length {raw_len} cannot come from {len(data)} deflated bytes")
    inflater = zlib.decompressobj(-15)
    try:
        raw = inflater.decompress(data, raw_len + 1)
    except zlib.error as e:
        raise Refused(f"{where}: deflate stream: {e}") from None
    if not inflater.eof or inflater.unconsumed_tail or inflater.unused_data or len(raw) != raw_len:
        raise Refused(f"{where}: the deflate stream does not give exactly {raw_len} bytes and end with the section")
    return raw


def read_blob(buf, at, end, where, skeleton_len, previous):
    name_len, at = varint(buf, at, end, f"{where}, layer name length")
    if name_len > end - at:
        raise Refused(f"{where}: layer name truncated")
    try:
        bytes(buf[at : at + name_len]).decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(f"{where}: layer name is not UTF-8") from None
    at += name_len
    _blob_index, at = varint(buf, at, end, f"{where}, blob index")
    insert, at = varint(buf, at, end, f"{where}, insert offset")
    if insert > skeleton_len or (previous is not None and insert <= previous["insert"]):
        raise Refused(f"{where}: insert offset {insert} out of order or past the skeleton")
    count, at = varint(buf, at, end, f"{where}, value count")
    if count == 0:
        raise Refused(f"{where}: 0 values")
    if at >= end:
        raise Refused(f"{where}: code width truncated")
    bits = buf[at]
    at += 1
    if not 1 <= bits <= 8:
        raise Refused(f"{where}: code width {bits}")
    entries, at = varint(buf, at, end, f"{where}, codebook length")
    if entries >= 1 << bits:
        raise Refused(f"{where}: {entries} codebook values do not fit {bits}-bit codes")
    table = [bytes(4)]
    key = 0
    for index in range(entries):
        step, at = varint(buf, at, end, f"{where}, codebook value {index}")
        key = step if index == 0 else key + step + 1
        if key > 0xFFFFFFFF:
            raise Refused(f"{where}: codebook value {index} steps past the last float")
        bits_of_value = key & 0x7FFFFFFF if key >> 31 else ~key & 0xFFFFFFFF
        if bits_of_value == 0:
            raise Refused(f"{where}: +0.0 in the codebook")
        table.append(struct.pack("<I", bits_of_value))
    chunk_len, at = varint(buf, at, end, f"{where}, chunk length")
    if not 1 <= chunk_len <= MAX_CHUNK_LEN:
        raise Refused(f"{where}: chunk length {chunk_len}")
    chunk_count = -(-count // chunk_len)
    if chunk_count > (end - at) // 2:
        raise Refused(f"{where}: {chunk_count} chunks cannot fit")
    chunks = []
    for index in range(chunk_count):
        length = min(chunk_len, count - index * chunk_len)
        kept, at = varint(buf, at, end, f"{where}, chunk {index} kept count")
        if kept > length:
            raise Refused(f"{where}: chunk {index}: {kept} kept of {length} positions")
        if kept > 0 and entries == 0:
            raise Refused(f"{where}: chunk {index}: kept weights but no codebook")
        stream_len, at = varint(buf, at, end, f"{where}, chunk {index} stream length")
        if stream_len > end - at:
            raise Refused(f"{where}: chunk {index}: stream truncated")
        chunks.append((kept, at, stream_len))
        at += stream_len
    if at != end:
        raise Refused(f"{where}: {end - at} bytes follow the last chunk")
    return {"insert": insert, "count": count, "bits": bits, "table": table, "chunk_len": chunk_len, "chunks": chunks}


def main(argv):
    if len(argv) != 3:
        print("usage: python_decoder.py IN.caffez OUT.caffemodel", file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as f:
            buf = f.read()
        model = decode(memoryview(buf))
        with open(argv[2], "wb") as f:
            f.write(model)
    except Refused as e:
        print(f"python_decoder: {argv[1]}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"python_decoder: {e}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"python_decoder: {argv[1]}: the model given back does not fit in memory", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
