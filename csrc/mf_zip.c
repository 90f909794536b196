/*
 * mf_zip.c - zip reader: EOCD, zip64, central directory, local headers.
 * Layout facts: PKWARE APPNOTE 6.3 (sections 4.3.7, 4.3.12, 4.3.14-16, 4.5.3).
 */
#include "mf_zip.h"

#include <string.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u

#define EOCD_LEN 22u
#define LOC64_LEN 20u
#define EOCD64_LEN 56u
#define CENTRAL_LEN 46u
#define LOCAL_LEN 30u

/* ========================================================================================== */
/* End of central directory                                                                   */
/* ========================================================================================== */

/* tail holds the last tail_len bytes of the file */
int mf_zip_find_eocd(const uint8_t *tail, size_t tail_len, uint64_t file_size, mf_zip_eocd *out,
                     mf_error *err) {
    memset(out, 0, sizeof *out);
    out->zip64_eocd_offset = UINT64_MAX;
    if (tail_len > file_size) return mf_fail(err, MF_ERR_CORRUPT, 0, "zip tail larger than the file");
    uint64_t tail_off = file_size - tail_len;
    if (tail_len < EOCD_LEN)
        return mf_fail(err, MF_ERR_TRUNCATED, tail_off,
                       "file too short for a zip end-of-central-directory record");

    /* Prefer a record whose comment ends exactly at the end of the file; otherwise accept the
     * last signature whose comment fits (a file with trailing bytes), as zipfile does. */
    size_t found = SIZE_MAX, loose = SIZE_MAX;
    for (size_t i = tail_len - EOCD_LEN + 1; i-- > 0;) {
        const uint8_t *p = tail + i;
        if (mf_load_u32le(p) != SIG_EOCD) continue;
        size_t comment = mf_load_u16le(p + 20);
        if (comment <= tail_len - i - EOCD_LEN) {
            if (i + EOCD_LEN + comment == tail_len) {
                found = i;
                break;
            }
            if (loose == SIZE_MAX) loose = i;
        }
    }
    if (found == SIZE_MAX) {
        if (loose == SIZE_MAX)
            return mf_fail(err, MF_ERR_CORRUPT, tail_off,
                           "zip end-of-central-directory record not found");
        found = loose;
        out->anomalies |= MF_ZIP_ANOM_TRAILING_DATA;
    }
    const uint8_t *e = tail + found;
    uint16_t disk = mf_load_u16le(e + 4), cd_disk = mf_load_u16le(e + 6);
    uint16_t n_disk = mf_load_u16le(e + 8), n_total = mf_load_u16le(e + 10);
    uint32_t cd_size = mf_load_u32le(e + 12), cd_off = mf_load_u32le(e + 16);
    out->eocd_offset = tail_off + found;
    out->n_entries = n_total;
    out->cd_size = cd_size;
    out->cd_offset = cd_off;

    if (found >= LOC64_LEN && mf_load_u32le(e - LOC64_LEN) == SIG_LOC64) {
        /* The record normally sits right before the locator; use that position, as zipfile
         * does, so that bytes prepended to the archive do not shift it. */
        if (found >= LOC64_LEN + EOCD64_LEN && mf_load_u32le(e - LOC64_LEN - EOCD64_LEN) == SIG_EOCD64)
            out->zip64_eocd_offset = out->eocd_offset - LOC64_LEN - EOCD64_LEN;
        else
            out->zip64_eocd_offset = mf_load_u64le(e - LOC64_LEN + 8);
        if (out->zip64_eocd_offset >= file_size)
            return mf_fail(err, MF_ERR_CORRUPT, out->eocd_offset - LOC64_LEN,
                           "zip64 locator points past the end of the file");
        return MF_OK; /* the caller reads the zip64 record next and sets the prefix there */
    }
    if (disk != 0 || cd_disk != 0 || n_disk != n_total)
        return mf_fail(err, MF_ERR_UNSUPPORTED, out->eocd_offset, "multi-disk zip archives are not supported");

    /* The directory ends where the EOCD starts; anything else before it is a prefix. */
    uint64_t cd_end;
    if (mf_add_u64(out->cd_offset, out->cd_size, &cd_end) || cd_end > out->eocd_offset)
        return mf_fail(err, MF_ERR_CORRUPT, out->eocd_offset,
                       "zip central directory (offset %llu, size %llu) runs past its end record",
                       (unsigned long long)out->cd_offset, (unsigned long long)out->cd_size);
    out->prefix = out->eocd_offset - cd_end;
    if (out->prefix) out->anomalies |= MF_ZIP_ANOM_PREFIX;
    out->cd_offset += out->prefix;
    return MF_OK;
}

/* buf holds the bytes starting at io->zip64_eocd_offset */
int mf_zip_read_eocd64(const uint8_t *buf, size_t len, uint64_t file_size, mf_zip_eocd *io,
                       mf_error *err) {
    uint64_t at = io->zip64_eocd_offset;
    mf_cursor c;
    mf_cursor_init(&c, buf, len, at, err);
    uint32_t sig, disk, cd_disk;
    uint64_t rec_size, n_disk, n_total, cd_size, cd_off;
    if (mf_u32le(&c, &sig, "zip64 end-of-central-directory record")) return err->code;
    if (sig != SIG_EOCD64)
        return mf_fail(err, MF_ERR_CORRUPT, at, "zip64 end-of-central-directory signature missing");
    if (mf_u64le(&c, &rec_size, "zip64 end-of-central-directory record") ||
        mf_skip(&c, 4, "zip64 end-of-central-directory record") ||
        mf_u32le(&c, &disk, "zip64 end-of-central-directory record") ||
        mf_u32le(&c, &cd_disk, "zip64 end-of-central-directory record") ||
        mf_u64le(&c, &n_disk, "zip64 end-of-central-directory record") ||
        mf_u64le(&c, &n_total, "zip64 end-of-central-directory record") ||
        mf_u64le(&c, &cd_size, "zip64 end-of-central-directory record") ||
        mf_u64le(&c, &cd_off, "zip64 end-of-central-directory record"))
        return err->code;
    if (disk != 0 || cd_disk != 0 || n_disk != n_total)
        return mf_fail(err, MF_ERR_UNSUPPORTED, at, "multi-disk zip archives are not supported");
    /* the zip64 record + locator sit right before the EOCD; its stored position tells the prefix */
    uint64_t rec_end;
    if (mf_add_u64(at, 12, &rec_end) || mf_add_u64(rec_end, rec_size, &rec_end) || rec_end > file_size ||
        rec_size < EOCD64_LEN - 12)
        return mf_fail(err, MF_ERR_CORRUPT, at, "zip64 end-of-central-directory record size %llu is invalid",
                       (unsigned long long)rec_size);
    uint64_t cd_end;
    if (mf_add_u64(cd_off, cd_size, &cd_end) || cd_end > at)
        return mf_fail(err, MF_ERR_CORRUPT, at,
                       "zip central directory (offset %llu, size %llu) runs past its end record",
                       (unsigned long long)cd_off, (unsigned long long)cd_size);
    io->prefix = at - cd_end;
    if (io->prefix) io->anomalies |= MF_ZIP_ANOM_PREFIX;
    io->cd_offset = cd_off + io->prefix;
    io->cd_size = cd_size;
    io->n_entries = n_total;
    return MF_OK;
}

/* ========================================================================================== */
/* Central directory                                                                          */
/* ========================================================================================== */

/* Apply a zip64 extended-information extra field (id 0x0001) to the fields that were saturated. */
static int apply_zip64_extra(const uint8_t *extra, size_t extra_len, uint64_t at, int need_uncomp,
                             int need_comp, int need_off, mf_zip_entry *e, mf_error *err) {
    mf_cursor c;
    mf_cursor_init(&c, extra, extra_len, at, err);
    while (mf_remaining(&c) >= 4) {
        uint16_t id = 0, size = 0;
        mf_u16le(&c, &id, "zip extra field");
        mf_u16le(&c, &size, "zip extra field");
        mf_cursor f;
        const uint8_t *data;
        if (mf_take(&c, size, &data, "zip extra field")) return err->code;
        if (id != 0x0001) continue;
        mf_cursor_init(&f, data, size, mf_tell(&c) - size, err);
        if (need_uncomp && mf_u64le(&f, &e->uncomp_size, "zip64 extra field")) return err->code;
        if (need_comp && mf_u64le(&f, &e->comp_size, "zip64 extra field")) return err->code;
        if (need_off && mf_u64le(&f, &e->local_offset, "zip64 extra field")) return err->code;
        return MF_OK;
    }
    if (need_uncomp || need_comp || need_off)
        return mf_fail(err, MF_ERR_CORRUPT, at, "zip entry has saturated sizes but no zip64 extra field");
    return MF_OK;
}

int mf_zip_read_cd(const uint8_t *buf, size_t len, const mf_zip_eocd *eocd, uint64_t file_size,
                   mf_arena *a, mf_zip_entry **out, size_t *n_out, mf_error *err) {
    mf_cursor c;
    mf_cursor_init(&c, buf, len, eocd->cd_offset, err);
    /* the count in the EOCD is only a hint: it is bounded by what the directory can hold */
    uint64_t cap = eocd->n_entries;
    if (cap > len / CENTRAL_LEN) cap = len / CENTRAL_LEN;
    mf_zip_entry *entries = (mf_zip_entry *)mf_arena_alloc(a, (size_t)(cap ? cap : 1) * sizeof *entries, err,
                                                           eocd->cd_offset);
    if (entries == NULL) return err->code;
    size_t n = 0;
    while (mf_remaining(&c) > 0) {
        uint64_t at = mf_tell(&c);
        const uint8_t *h;
        if (mf_take(&c, CENTRAL_LEN, &h, "zip central directory entry")) return err->code;
        if (mf_load_u32le(h) != SIG_CENTRAL)
            return mf_fail(err, MF_ERR_CORRUPT, at, "zip central directory entry signature missing");
        if (n == cap) {
            /* more entries than the EOCD announced: grow (bounded by len / 46) */
            size_t ncap = cap ? cap * 2 : 8;
            if (ncap > len / CENTRAL_LEN + 1) ncap = len / CENTRAL_LEN + 1;
            mf_zip_entry *ne = (mf_zip_entry *)mf_arena_alloc(a, ncap * sizeof *ne, err, at);
            if (ne == NULL) return err->code;
            memcpy(ne, entries, n * sizeof *ne);
            entries = ne;
            cap = ncap;
        }
        mf_zip_entry *e = &entries[n];
        memset(e, 0, sizeof *e);
        e->flags = mf_load_u16le(h + 8);
        e->method = mf_load_u16le(h + 10);
        e->crc32 = mf_load_u32le(h + 16);
        uint32_t comp = mf_load_u32le(h + 20), uncomp = mf_load_u32le(h + 24);
        uint16_t name_len = mf_load_u16le(h + 28), extra_len = mf_load_u16le(h + 30);
        uint16_t comment_len = mf_load_u16le(h + 32);
        uint32_t local = mf_load_u32le(h + 42);
        const uint8_t *name, *extra;
        if (mf_take(&c, name_len, &name, "zip central directory file name") ||
            mf_take(&c, extra_len, &extra, "zip central directory extra field") ||
            mf_skip(&c, comment_len, "zip central directory comment"))
            return err->code;
        e->name = name;
        e->name_len = name_len;
        e->comp_size = comp;
        e->uncomp_size = uncomp;
        e->local_offset = local;
        e->data_offset = UINT64_MAX;
        if (apply_zip64_extra(extra, extra_len, at + CENTRAL_LEN + name_len, uncomp == 0xFFFFFFFFu,
                              comp == 0xFFFFFFFFu, local == 0xFFFFFFFFu, e, err))
            return err->code;
        if (mf_add_u64(e->local_offset, eocd->prefix, &e->local_offset) || e->local_offset >= file_size)
            return mf_fail(err, MF_ERR_CORRUPT, at, "zip entry's local header offset %llu is past the end of the file",
                           (unsigned long long)e->local_offset);
        if (e->flags & 0x1) e->anomalies |= MF_ZIP_ANOM_ENCRYPTED;
        if (e->flags & 0x20) e->anomalies |= MF_ZIP_ANOM_FLAG_0x20;
        if (e->flags & 0x40) e->anomalies |= MF_ZIP_ANOM_FLAG_0x40;
        n++;
    }
    *out = entries;
    *n_out = n;
    return MF_OK;
}

/* ========================================================================================== */
/* Local headers                                                                              */
/* ========================================================================================== */

/* buf starts at e->local_offset */
int mf_zip_local(const uint8_t *buf, size_t len, uint64_t file_size, mf_zip_entry *e, mf_error *err) {
    mf_cursor c;
    mf_cursor_init(&c, buf, len, e->local_offset, err);
    const uint8_t *h, *name;
    if (mf_take(&c, LOCAL_LEN, &h, "zip local header")) return err->code;
    if (mf_load_u32le(h) != SIG_LOCAL)
        return mf_fail(err, MF_ERR_CORRUPT, e->local_offset, "zip local header signature missing");
    uint16_t method = mf_load_u16le(h + 8);
    uint16_t name_len = mf_load_u16le(h + 26), extra_len = mf_load_u16le(h + 28);
    if (mf_take(&c, name_len, &name, "zip local header file name")) return err->code;
    if (name_len != e->name_len || memcmp(name, e->name, name_len) != 0)
        e->anomalies |= MF_ZIP_ANOM_NAME_MISMATCH;
    if (method != e->method) e->anomalies |= MF_ZIP_ANOM_METHOD_MISMATCH;
    uint64_t data, end;
    if (mf_add_u64(e->local_offset, (uint64_t)LOCAL_LEN + name_len + extra_len, &data) ||
        mf_add_u64(data, e->comp_size, &end) || end > file_size)
        return mf_fail(err, MF_ERR_CORRUPT, e->local_offset,
                       "zip member '%.*s' (%llu bytes) runs past the end of the file", (int)e->name_len,
                       (const char *)e->name, (unsigned long long)e->comp_size);
    e->data_offset = data;
    return MF_OK;
}

int mf_zip_local_all(const uint8_t *file, size_t file_len, mf_zip_entry *entries, size_t n,
                     mf_error *err) {
    for (size_t i = 0; i < n; i++) {
        mf_zip_entry *e = &entries[i];
        if (e->local_offset >= file_len)
            return mf_fail(err, MF_ERR_CORRUPT, e->local_offset, "zip local header is past the end of the file");
        if (mf_zip_local(file + e->local_offset, file_len - (size_t)e->local_offset, file_len, e, err))
            return err->code;
    }
    return MF_OK;
}
