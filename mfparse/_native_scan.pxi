# Included by _native.pyx: bindings over csrc/mf_scan.c (the scanner's fast path for small files,
# used by mfparse/scan/quick.py) and the small-file reader it reads paths with.

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.string cimport memchr

cdef extern from "mf_core.h":
    void *mf_arena_alloc(mf_arena *a, size_t n, mf_error *err, uint64_t offset) nogil
    char *mf_arena_strdup(mf_arena *a, const void *src, size_t n, mf_error *err, uint64_t offset)

cdef extern from "mf_scan.h":
    ctypedef struct mf_scan_map:
        size_t len

    ctypedef struct mf_scan_tables:
        mf_scan_map names
        mf_scan_map pairs
        mf_scan_map modules
        uint8_t opcode[256]
        uint8_t member_first[256]
        const uint8_t *codecs[32]
        uint32_t codec_lens[32]
        size_t n_codecs
        const uint8_t *trigger_exact[16]
        uint32_t trigger_exact_len[16]
        size_t n_trigger_exact
        const uint8_t *trigger_base[16]
        uint32_t trigger_base_len[16]
        size_t n_trigger_base
        const uint8_t *trigger_base_ci[16]
        uint32_t trigger_base_ci_len[16]
        size_t n_trigger_base_ci
        const uint8_t *trigger_suffix[16]
        uint32_t trigger_suffix_len[16]
        size_t n_trigger_suffix
        const uint8_t *pickle_names[16]
        uint32_t pickle_name_lens[16]
        size_t n_pickle_names
        uint64_t alloc_bomb, memo_index, marks, expansion_nodes, expansion_ratio, max_stack

    ctypedef struct mf_scan_import:
        const uint8_t *mod
        const uint8_t *name
        uint32_t mod_len, name_len
        uint32_t stream
        uint32_t pickle
        uint64_t count
        uint64_t offset
        uint32_t allowed

    ctypedef struct mf_scan_stream:
        const uint8_t *member
        uint32_t member_len
        uint32_t pickles

    ctypedef struct mf_scan_mark:
        uint32_t before
        uint32_t kind
        uint32_t anomalies
        uint32_t member_len
        const uint8_t *member
        uint64_t offset

    ctypedef struct mf_scan_result:
        int answer
        uint64_t at
        uint32_t pickles
        mf_vec streams
        mf_vec imports
        mf_vec marks

    int MF_SCAN_DONE
    int mf_scan_map_init(mf_scan_map *m, size_t n, mf_arena *a, mf_error *err)
    int mf_scan_map_add(mf_scan_map *m, const uint8_t *key, size_t len, const uint8_t *val, size_t val_len,
                        uint32_t bits, mf_arena *a, mf_error *err)
    uint32_t mf_scan_class(const mf_scan_tables *t, const uint8_t *mod, size_t mod_len, const uint8_t *name,
                           size_t name_len)
    unsigned mf_scan_name_flags(const uint8_t *name, size_t n) nogil
    int mf_scan_quick(const uint8_t *buf, size_t len, unsigned name_flags, const mf_scan_tables *t, mf_arena *a,
                      mf_scan_result *out, mf_error *err) nogil
    uint32_t mf_crc32(uint32_t crc, const uint8_t *p, size_t n)

# The small-file reader: the one place the fast path touches the file system (a ranged or remote
# source hands its bytes to scan_quick instead). POSIX only; elsewhere every path goes to the
# scanner's own reader.
cdef extern from *:
    """
    #if defined(_WIN32)
    static int mf_small_open(const char *path, uint64_t limit, int *fd, uint64_t *size) {
        (void)path; (void)limit; *fd = -1; *size = 0; return 0;
    }
    static int mf_small_read(int fd, uint8_t *buf, uint64_t size) { (void)fd; (void)buf; (void)size; return 0; }
    static void mf_small_close(int fd) { (void)fd; }
    #else
    #include <fcntl.h>
    #include <sys/stat.h>
    #include <unistd.h>
    /* 1 with an open descriptor and the size of a regular file of at most `limit` bytes; 0 for
     * anything else (a directory, a pipe or device, a larger file, any error), which the caller's
     * own reader then opens as it always did (stat first: a named pipe is never opened here). */
    static int mf_small_open(const char *path, uint64_t limit, int *fd, uint64_t *size) {
        struct stat st;
        *fd = -1;
        *size = 0;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size > limit)
            return 0;
        int f = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (f < 0) return 0;
        if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size > limit) {
            close(f);
            return 0;
        }
        *fd = f;
        *size = (uint64_t)st.st_size;
        return 1;
    }
    /* 1 when the file holds exactly `size` bytes: buf has room for size + 1, and asking for one
     * more than the size returns exactly the size (a file that grew or shrank since fstat, or a
     * short read, returns 0); closes fd */
    static int mf_small_read(int fd, uint8_t *buf, uint64_t size) {
        ssize_t got = read(fd, buf, (size_t)size + 1);
        close(fd);
        return got >= 0 && (uint64_t)got == size;
    }
    static void mf_small_close(int fd) { close(fd); }
    #endif
    """
    int mf_small_open(const char *path, uint64_t limit, int *fd, uint64_t *size) nogil
    int mf_small_read(int fd, uint8_t *buf, uint64_t size) nogil
    void mf_small_close(int fd) nogil


cdef class ScanTables:
    """The fast path's name classes and bounds (built once by mfparse/scan/quick.py from
    mfparse/scan/policy.py, pickles.py and containers.py, the single source)."""
    cdef mf_arena arena
    cdef mf_scan_tables t

    def __cinit__(self):
        mf_arena_init(&self.arena, 0)
        memset(&self.t, 0, sizeof(mf_scan_tables))

    def __dealloc__(self):
        mf_arena_free(&self.arena)

    def __init__(self, dict names, dict pairs, dict modules, bytes opcodes, bytes member_first, codecs,
                 trigger_exact, trigger_base, trigger_base_ci, trigger_suffix, pickle_names, dict bounds):
        """names: {Python 3 dotted name (str): class bits}; pairs: {(module, name): (module,
        name)} and modules: {module: module}, the Python 2 names as _compat_pickle maps them;
        opcodes, member_first: the bytes that are pickle opcodes / that make a zip member worth a
        look; codecs: safe codec names (lower case); trigger_*: member names (exact, base name,
        base-name ending without case, name ending) a zip inspector reads; pickle_names:
        member-name endings of pickles (lower case); bounds: alloc_bomb, memo_index, marks,
        expansion_nodes, expansion_ratio, max_stack."""
        self._map(&self.t.names, {k.encode(): (None, v) for k, v in names.items()})
        self._map(&self.t.pairs, {f"{m}\0{n}".encode(): (f"{m3}\0{n3}".encode(), 0)
                                  for (m, n), (m3, n3) in pairs.items()})
        self._map(&self.t.modules, {m.encode(): (m3.encode(), 0) for m, m3 in modules.items()})
        for b in opcodes:
            self.t.opcode[b] = 1
        for b in member_first:
            self.t.member_first[b] = 1
        self.t.n_codecs = self._strings(codecs, self.t.codecs, self.t.codec_lens, 32)
        self.t.n_trigger_exact = self._strings(trigger_exact, self.t.trigger_exact, self.t.trigger_exact_len, 16)
        self.t.n_trigger_base = self._strings(trigger_base, self.t.trigger_base, self.t.trigger_base_len, 16)
        self.t.n_trigger_base_ci = self._strings(trigger_base_ci, self.t.trigger_base_ci, self.t.trigger_base_ci_len,
                                                 16)
        self.t.n_trigger_suffix = self._strings(trigger_suffix, self.t.trigger_suffix, self.t.trigger_suffix_len, 16)
        self.t.n_pickle_names = self._strings(pickle_names, self.t.pickle_names, self.t.pickle_name_lens, 16)
        self.t.alloc_bomb = bounds["alloc_bomb"]
        self.t.memo_index = bounds["memo_index"]
        self.t.marks = bounds["marks"]
        self.t.expansion_nodes = bounds["expansion_nodes"]
        self.t.expansion_ratio = bounds["expansion_ratio"]
        self.t.max_stack = bounds["max_stack"]

    cdef int _map(self, mf_scan_map *m, dict items) except -1:
        cdef mf_error err
        cdef const uint8_t *k
        cdef const uint8_t *v
        clear_error(&err)
        mf_scan_map_init(m, len(items), &self.arena, &err)
        raise_error(&err)
        cdef bytes vb
        for key, (val, bits) in items.items():
            k = key
            v = NULL
            if val is not None:
                vb = val
                v = vb
            mf_scan_map_add(m, k, len(key), v, 0 if val is None else len(val), bits, &self.arena, &err)
            raise_error(&err)
        return 0

    cdef size_t _strings(self, items, const uint8_t **out, uint32_t *lens, size_t room) except? 0:
        cdef mf_error err
        cdef size_t i = 0
        cdef const char *s
        items = [bytes(x) for x in items]
        if <size_t>len(items) > room:
            raise ValueError(f"at most {room} strings")
        clear_error(&err)
        for x in items:
            s = x
            out[i] = <const uint8_t *>mf_arena_strdup(&self.arena, s, len(x), &err, 0)
            raise_error(&err)
            lens[i] = len(x)
            i += 1
        return i

    def classify(self, str module, str name):
        """Class bits of module.name (what the C judge sees; for tests)."""
        m = module.encode("utf-8", "surrogatepass")
        n = name.encode("utf-8", "surrogatepass")
        return mf_scan_class(&self.t, m, len(m), n, len(n))


cdef object _quick_result(mf_scan_result *res, uint64_t size):
    """(size, pickles, {dotted name: count}, [(module, name, member, pickle, count, offset, index)
    of the imports off the allowlist], [(index, kind, anomalies, member, offset) of the marks] or
    None) of a DONE answer; index: the place among the imports. Names and members are printable
    ASCII."""
    cdef size_t i
    cdef mf_scan_import *im = <mf_scan_import *>res.imports.items
    cdef mf_scan_stream *st = <mf_scan_stream *>res.streams.items
    cdef mf_scan_mark *mk = <mf_scan_mark *>res.marks.items
    cdef dict seen = {}
    cdef list others = []
    members = [None if st[i].member == NULL else PyUnicode_DecodeASCII(<const char *>st[i].member,
                                                                      st[i].member_len, NULL)
               for i in range(res.streams.len)] if res.imports.len else None
    for i in range(res.imports.len):
        dotted = PyUnicode_DecodeASCII(<const char *>im[i].mod, im[i].mod_len + 1 + im[i].name_len, NULL)
        count = seen.get(dotted)
        seen[dotted] = im[i].count if count is None else count + im[i].count
        if not im[i].allowed:
            mod = PyUnicode_DecodeASCII(<const char *>im[i].mod, im[i].mod_len, NULL)
            name = PyUnicode_DecodeASCII(<const char *>im[i].name, im[i].name_len, NULL)
            others.append((mod, name, members[im[i].stream], im[i].pickle, im[i].count, im[i].offset, i))
    marks = None
    if res.marks.len:
        marks = [(mk[i].before, mk[i].kind, mk[i].anomalies,
                  PyUnicode_DecodeASCII(<const char *>mk[i].member, mk[i].member_len, NULL), mk[i].offset)
                 for i in range(res.marks.len)]
    return (size, res.pickles, seen, others, marks)


def scan_quick(const uint8_t[::1] buf, ScanTables tables, name=None):
    """The fast path on bytes in memory (a whole file): a tuple (see mfparse/scan/quick.py) when
    it judged them, None when the full scan must (something in them is not the common case).
    name: the file's name or path, for what the scanner decides by name."""
    cdef mf_arena arena
    cdef mf_error err
    cdef mf_scan_result res
    cdef unsigned flags = 0
    cdef size_t n = buf.shape[0]
    cdef const uint8_t *p = &buf[0] if n else NULL
    cdef const uint8_t *nm
    if name is not None:
        nb = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else bytes(name)
        nm = nb
        flags = mf_scan_name_flags(nm, len(nb))
    clear_error(&err)
    mf_arena_init(&arena, 0)
    try:
        with nogil:
            mf_scan_quick(p, n, flags, &tables.t, &arena, &res, &err)
        if res.answer != MF_SCAN_DONE or err.code:
            return None
        return _quick_result(&res, n)
    finally:
        mf_arena_free(&arena)


def scan_quick_path(bytes path, ScanTables tables, uint64_t limit):
    """The fast path on a file: a tuple when it judged the file; the file's bytes when the full
    scan must judge them (no second read); None when the path is not a regular file of at most
    `limit` bytes that could be read whole here (the full scan opens it, and raises what it
    raises)."""
    cdef mf_arena arena
    cdef mf_error err
    cdef mf_scan_result res
    cdef const char *c_path = path
    cdef size_t plen = len(path)
    cdef int fd = -1, ok = 0
    cdef uint64_t size = 0
    cdef uint8_t *buf = NULL
    cdef unsigned flags
    if plen == 0 or memchr(c_path, 0, plen) != NULL:
        return None  # the scanner's reader raises for these
    clear_error(&err)
    mf_arena_init(&arena, 0)
    try:
        with nogil:
            flags = mf_scan_name_flags(<const uint8_t *>c_path, plen)
            if mf_small_open(c_path, limit, &fd, &size):
                buf = <uint8_t *>mf_arena_alloc(&arena, size + 1, &err, 0)
                if buf == NULL:
                    mf_small_close(fd)
                else:
                    ok = mf_small_read(fd, buf, size)
                if ok:
                    mf_scan_quick(buf, size, flags, &tables.t, &arena, &res, &err)
        if not ok:
            return None
        if res.answer != MF_SCAN_DONE or err.code:
            return PyBytes_FromStringAndSize(<const char *>buf, size)
        return _quick_result(&res, size)
    finally:
        mf_arena_free(&arena)


def crc32(const uint8_t[::1] buf, uint32_t crc=0):
    """CRC-32 as zip stores it (for tests: the fast path's own implementation)."""
    return mf_crc32(crc, &buf[0] if buf.shape[0] else NULL, buf.shape[0])


def _scan_quick_answer(const uint8_t[::1] buf, ScanTables tables, name=None):
    """Test hook, not API: the fast path's answer on buf (MF_SCAN_DONE 0 or the MF_SCAN_BAIL_*
    code, csrc/mf_scan.h)."""
    cdef mf_arena arena
    cdef mf_error err
    cdef mf_scan_result res
    cdef unsigned flags = 0
    cdef size_t n = buf.shape[0]
    if name is not None:
        nb = name.encode("utf-8", "surrogateescape")
        flags = mf_scan_name_flags(nb, len(nb))
    clear_error(&err)
    mf_arena_init(&arena, 0)
    try:
        mf_scan_quick(&buf[0] if n else NULL, n, flags, &tables.t, &arena, &res, &err)
        return res.answer
    finally:
        mf_arena_free(&arena)
