# Included by _native.pyx: bindings over csrc/mf_zip.c.

cdef extern from "mf_zip.h" nogil:
    ctypedef struct mf_zip_eocd:
        uint64_t eocd_offset
        uint64_t cd_offset
        uint64_t cd_size
        uint64_t n_entries
        uint64_t zip64_eocd_offset
        uint64_t prefix
        uint32_t anomalies

    ctypedef struct mf_zip_entry:
        const uint8_t *name
        uint32_t name_len
        uint16_t flags
        uint16_t method
        uint32_t crc32
        uint64_t comp_size
        uint64_t uncomp_size
        uint64_t local_offset
        uint64_t data_offset
        uint32_t anomalies

    unsigned MF_ZIP_TAIL_MAX
    int mf_zip_find_eocd(const uint8_t *tail, size_t tail_len, uint64_t file_size, mf_zip_eocd *out,
                         mf_error *err)
    int mf_zip_read_eocd64(const uint8_t *buf, size_t len, uint64_t file_size, mf_zip_eocd *io,
                           mf_error *err)
    int mf_zip_read_cd(const uint8_t *buf, size_t len, const mf_zip_eocd *eocd, uint64_t file_size,
                       mf_arena *a, mf_zip_entry **out, size_t *n_out, mf_error *err)
    int mf_zip_local(const uint8_t *buf, size_t len, uint64_t file_size, mf_zip_entry *e, mf_error *err)
    int mf_zip_local_all(const uint8_t *file, size_t file_len, mf_zip_entry *entries, size_t n,
                         mf_error *err)


ZIP_TAIL_MAX = MF_ZIP_TAIL_MAX

cdef tuple _eocd_tuple(mf_zip_eocd *e):
    return (e.eocd_offset, e.cd_offset, e.cd_size, e.n_entries,
            None if e.zip64_eocd_offset == <uint64_t>-1 else e.zip64_eocd_offset, e.prefix, e.anomalies)


cdef void _eocd_from_tuple(tuple t, mf_zip_eocd *e):
    e.eocd_offset, e.cd_offset, e.cd_size, e.n_entries = t[0], t[1], t[2], t[3]
    e.zip64_eocd_offset = <uint64_t>-1 if t[4] is None else t[4]
    e.prefix, e.anomalies = t[5], t[6]


def zip_eocd(const uint8_t[::1] tail, uint64_t file_size):
    """Find the end-of-central-directory record in the last bytes of a file.

    Returns (eocd_offset, cd_offset, cd_size, n_entries, zip64_eocd_offset | None, prefix,
    anomalies). When zip64_eocd_offset is set, pass the bytes there to zip_eocd64.
    """
    cdef mf_zip_eocd e
    cdef mf_error err
    clear_error(&err)
    mf_zip_find_eocd(&tail[0] if tail.shape[0] else NULL, tail.shape[0], file_size, &e, &err)
    raise_error(&err)
    return _eocd_tuple(&e)


def zip_eocd64(const uint8_t[::1] buf, uint64_t file_size, tuple eocd):
    """Apply the zip64 end-of-central-directory record (buf starts at its offset)."""
    cdef mf_zip_eocd e
    cdef mf_error err
    clear_error(&err)
    _eocd_from_tuple(eocd, &e)
    mf_zip_read_eocd64(&buf[0] if buf.shape[0] else NULL, buf.shape[0], file_size, &e, &err)
    raise_error(&err)
    return _eocd_tuple(&e)


cdef class ZipDirectory:
    """A parsed central directory. Entries point into the directory buffer, kept alive here."""
    cdef mf_arena arena
    cdef mf_zip_entry *entries
    cdef size_t n
    cdef object cd_buf
    cdef readonly uint64_t file_size

    def __cinit__(self):
        mf_arena_init(&self.arena, 0)
        self.entries = NULL
        self.n = 0

    def __init__(self, cd_buf, tuple eocd, uint64_t file_size):
        cdef mf_zip_eocd e
        cdef mf_error err
        cdef const uint8_t[::1] view = cd_buf
        clear_error(&err)
        _eocd_from_tuple(eocd, &e)
        self.cd_buf = cd_buf
        self.file_size = file_size
        # entries and growth are bounded by the directory's size
        self.arena.cap = mf_arena_cap_for(view.shape[0], 4, 1 << 20)
        cdef const uint8_t *p = &view[0] if view.shape[0] else NULL
        cdef size_t n = view.shape[0]
        with nogil:
            mf_zip_read_cd(p, n, &e, file_size, &self.arena, &self.entries, &self.n, &err)
        raise_error(&err)

    def __dealloc__(self):
        mf_arena_free(&self.arena)

    def __len__(self):
        return self.n

    def resolve_all(self, file_buf):
        """Read every local header from a buffer holding the whole file."""
        cdef const uint8_t[::1] view = file_buf
        cdef mf_error err
        clear_error(&err)
        mf_zip_local_all(&view[0] if view.shape[0] else NULL, view.shape[0], self.entries, self.n, &err)
        raise_error(&err)

    def resolve(self, size_t i, local_buf):
        """Read entry i's local header from the bytes at its local_offset; returns data_offset."""
        cdef const uint8_t[::1] view = local_buf
        cdef mf_error err
        if i >= self.n:
            raise IndexError(i)
        clear_error(&err)
        mf_zip_local(&view[0] if view.shape[0] else NULL, view.shape[0], self.file_size, &self.entries[i], &err)
        raise_error(&err)
        return self.entries[i].data_offset

    def predict(self, size_t i, uint64_t data_offset):
        """Set entry i's data offset without its local header (a remote archive whose writer's
        layout rule gives it; the header is checked when the data is read). The member must
        lie inside the file, as mf_zip_local requires."""
        cdef mf_zip_entry *e
        cdef uint64_t end
        if i >= self.n:
            raise IndexError(i)
        e = &self.entries[i]
        end = data_offset + e.comp_size
        if end < data_offset or end > self.file_size:
            raise make_error_at(MF_ERR_CORRUPT, e.local_offset, "zip member '%s' (%d bytes) runs past the end of the file"
                                % ((<const char *>e.name)[:e.name_len].decode("utf-8", "replace"), e.comp_size))
        e.data_offset = data_offset

    def find(self, bytes name):
        """Index of the last entry with this raw name, or -1."""
        cdef size_t i = self.n
        cdef const char *want = name
        cdef size_t wn = len(name)
        while i > 0:
            i -= 1
            if self.entries[i].name_len == wn and memcmp(self.entries[i].name, want, wn) == 0:
                return i
        return -1

    def entry(self, size_t i):
        """One entry as a tuple (see entries_list)."""
        if i >= self.n:
            raise IndexError(i)
        return self._row(&self.entries[i])

    cdef tuple _row(self, mf_zip_entry *e):
        raw = (<const char *>e.name)[:e.name_len]
        name = raw.decode("utf-8", "replace") if e.flags & 0x800 else raw.decode("cp437")
        return (name, e.flags, e.method, e.crc32, e.comp_size, e.uncomp_size, e.local_offset,
                None if e.data_offset == <uint64_t>-1 else e.data_offset, e.anomalies)

    def entries_list(self):
        """[(name, flags, method, crc32, comp_size, uncomp_size, local_offset, data_offset|None,
        anomalies)] in directory order. Names: UTF-8 when flag 0x800 is set, else cp437."""
        cdef size_t i
        return [self._row(&self.entries[i]) for i in range(self.n)]
