"""Read character data out of an installed R package's lazy-load database,
without R.

An R package with `LazyData: true` installs its data sets as
data/Rdata.rdx (an index) and data/Rdata.rdb (the blobs).  Both hold R
objects in R's serialization format ("XDR", big-endian):

  * Rdata.rdx is a gzip/zlib-compressed serialized list
    list(variables = list(NAME = c(offset, length), ...), references, compressed)
  * each blob in Rdata.rdb, at `offset` for `length` bytes, is a 4-byte
    big-endian uncompressed size followed by a zlib stream (compression
    type 1); types 2 and 3 add one byte ('Z' zlib, '2' bzip2, 'X' xz,
    '0' stored) after the size.  The stream is a serialized R object.

This module implements the part of the format needed for data sets made of
vectors, lists, data frames and factors (pairlists, symbols, attributes,
references, ALTREP compact sequences).  Closures, environments with content,
bytecode and external pointers are rejected with an error: a data package
does not need them.

Python 3 standard library only.
"""

import bz2
import gzip
import lzma
import struct
import zlib

NILVALUE_SXP = 254
REFSXP = 255
GLOBALENV_SXP = 253
UNBOUNDVALUE_SXP = 252
MISSINGARG_SXP = 251
BASENAMESPACE_SXP = 250
EMPTYENV_SXP = 242
BASEENV_SXP = 241
ATTRLANGSXP = 240
ATTRLISTSXP = 239
ALTREP_SXP = 238

SYMSXP, LISTSXP, LANGSXP, CHARSXP = 1, 2, 6, 9
LGLSXP, INTSXP, REALSXP, CPLXSXP, STRSXP = 10, 13, 14, 15, 16
VECSXP, EXPRSXP, RAWSXP = 19, 20, 24

NA_INTEGER = -2147483648


class RError(Exception):
    pass


class Sym(str):
    """An R symbol (a name)."""


class RObj:
    """An R vector with attributes: .type (SEXP type), .value (Python list or
    bytes) and .attrs (dict name -> value)."""

    def __init__(self, type_, value, attrs=None):
        self.type = type_
        self.value = value
        self.attrs = attrs or {}

    def __repr__(self):
        return "RObj(type=%d, n=%d, attrs=%s)" % (
            self.type, len(self.value), sorted(self.attrs))


class _Reader:
    def __init__(self, data):
        self.d = data
        self.p = 0
        self.refs = []

    def raw(self, n):
        if self.p + n > len(self.d):
            raise RError("truncated R serialization")
        b = self.d[self.p:self.p + n]
        self.p += n
        return b

    def int(self):
        return struct.unpack(">i", self.raw(4))[0]

    def length(self):
        n = self.int()
        if n == -1:
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        if n < 0 or n > len(self.d) * 8 + 1024:
            raise RError("implausible vector length %d" % n)
        return n

    def header(self):
        fmt = self.raw(2)
        if fmt != b"X\n":
            raise RError("only XDR R serialization is supported, got %r" % fmt)
        version = self.int()
        self.int()  # writer version
        self.int()  # minimal reader version
        if version == 3:
            n = self.int()
            self.raw(n)  # native encoding
        elif version != 2:
            raise RError("unknown R serialization version %d" % version)

    def charsxp(self, flags):
        n = self.int()
        if n == -1:
            return None  # NA_character_
        b = self.raw(n)
        levels = flags >> 12
        if levels & (1 << 2):  # LATIN1
            return b.decode("latin-1")
        return b.decode("utf-8", errors="replace")

    def attributes(self, flags):
        if not flags & (1 << 9):
            return {}
        pl = self.item()
        out = {}
        while isinstance(pl, tuple):  # (tag, car, cdr)
            tag, car, pl = pl
            out[str(tag)] = car
        return out

    def item(self):
        flags = self.int()
        t = flags & 0xFF
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))
        if t == NILVALUE_SXP:
            return None
        if t in (EMPTYENV_SXP, BASEENV_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP,
                 MISSINGARG_SXP, BASENAMESPACE_SXP):
            return ("<special %d>" % t)
        if t == REFSXP:
            idx = flags >> 8
            if idx == 0:
                idx = self.int()
            if not 1 <= idx <= len(self.refs):
                raise RError("bad reference %d" % idx)
            return self.refs[idx - 1]
        if t == SYMSXP:
            name = self.item()
            sym = Sym(name if name is not None else "NA")
            self.refs.append(sym)
            return sym
        if t in (LISTSXP, LANGSXP, ATTRLISTSXP, ATTRLANGSXP):
            # a pairlist: read it iteratively, build nested (tag, car, cdr)
            cells = []
            while True:
                attr = self.item() if has_attr else None
                tag = self.item() if has_tag else None
                car = self.item()
                cells.append((tag, car, attr))
                flags = self.int()
                t = flags & 0xFF
                has_attr = bool(flags & (1 << 9))
                has_tag = bool(flags & (1 << 10))
                if t not in (LISTSXP, LANGSXP, ATTRLISTSXP, ATTRLANGSXP):
                    self.p -= 4
                    tail = self.item()
                    break
            for tag, car, _ in reversed(cells):
                tail = (tag, car, tail)
            return tail
        if t == CHARSXP:
            return self.charsxp(flags)
        if t in (LGLSXP, INTSXP):
            n = self.length()
            v = list(struct.unpack(">%di" % n, self.raw(4 * n)))
            v = [None if x == NA_INTEGER else x for x in v]
            return RObj(t, v, self.attributes(flags))
        if t == REALSXP:
            n = self.length()
            v = list(struct.unpack(">%dd" % n, self.raw(8 * n)))
            return RObj(t, v, self.attributes(flags))
        if t == CPLXSXP:
            n = self.length()
            v = list(struct.unpack(">%dd" % (2 * n), self.raw(16 * n)))
            return RObj(t, v, self.attributes(flags))
        if t == STRSXP:
            n = self.length()
            v = []
            for _ in range(n):
                f = self.int()
                if f & 0xFF != CHARSXP:
                    raise RError("STRSXP element is not a CHARSXP")
                v.append(self.charsxp(f))
            return RObj(t, v, self.attributes(flags))
        if t in (VECSXP, EXPRSXP):
            n = self.length()
            v = [self.item() for _ in range(n)]
            return RObj(t, v, self.attributes(flags))
        if t == RAWSXP:
            n = self.length()
            return RObj(t, self.raw(n), self.attributes(flags))
        if t == ALTREP_SXP:
            info = self.item()
            state = self.item()
            attr = self.item()
            return self.altrep(info, state, attr)
        raise RError("unsupported R object type %d in a data set" % t)

    def altrep(self, info, state, attr):
        # info is a pairlist (class symbol, package symbol, type int)
        cls = str(info[1]) if isinstance(info, tuple) else "?"
        attrs = {}
        while isinstance(attr, tuple):
            tag, car, attr = attr
            attrs[str(tag)] = car
        if cls in ("compact_intseq", "compact_realseq"):
            n, start, step = state.value[:3]
            v = [start + i * step for i in range(int(n))]
            if cls == "compact_intseq":
                v = [int(x) for x in v]
            return RObj(INTSXP if cls == "compact_intseq" else REALSXP, v, attrs)
        if cls.startswith("wrap_"):
            inner = state.value[0]
            return RObj(inner.type, inner.value, attrs or inner.attrs)
        if cls == "deferred_string":
            arg = state[1] if isinstance(state, tuple) else state
            v = ["%d" % x if isinstance(x, int) else repr(x) for x in arg.value]
            return RObj(STRSXP, v, attrs)
        raise RError("unsupported ALTREP class %s" % cls)


def unserialize(data):
    r = _Reader(data)
    r.header()
    return r.item()


def _decompress_blob(blob):
    if len(blob) < 5:
        raise RError("short lazy-load blob")
    size = struct.unpack(">I", blob[:4])[0]
    rest = blob[4:]
    kind = rest[:1]
    if kind == b"Z":
        out = zlib.decompress(rest[1:])
    elif kind == b"2":
        out = bz2.decompress(rest[1:])
    elif kind == b"X":
        out = lzma.decompress(rest[1:])
    elif kind == b"0":
        out = rest[1:]
    else:
        out = zlib.decompress(rest)
    if len(out) != size:
        raise RError("lazy-load blob size mismatch")
    return out


def _pairs(obj):
    """names -> values of a named R list (VECSXP with a names attribute)."""
    names = obj.attrs.get("names")
    if names is None:
        raise RError("expected a named list")
    return dict(zip(names.value, obj.value))


def lazyload(rdx_path, rdb_path):
    """Return {name: R object} for every data set in an R lazy-load DB."""
    with open(rdx_path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    else:
        raw = zlib.decompress(raw)
    index = _pairs(unserialize(raw))
    with open(rdb_path, "rb") as f:
        db = f.read()
    out = {}
    for name, pos in _pairs(index["variables"]).items():
        off, n = (int(x) for x in pos.value[:2])
        if off < 0 or n < 0 or off + n > len(db):
            raise RError("lazy-load entry %s out of range" % name)
        out[name] = unserialize(_decompress_blob(db[off:off + n]))
    return out
