/*
 * mf_zip.h - zip archive reader (zip64 included) working on separate buffers.
 *
 * The reader never needs the whole file: the caller hands it
 *   1. the tail of the file (EOCD + zip64 locator, at most 64 KiB + 42 bytes),
 *   2. the zip64 EOCD record when the locator points at one,
 *   3. the central directory,
 *   4. for each member it wants, the bytes of its local header,
 * so that a remote or streaming source can fetch only those ranges. With a memory map all
 * four are slices of the same map.
 *
 * The central directory is authoritative: torch writes zero sizes and CRCs in local headers.
 * The data offset comes from the local header (its name and extra lengths differ from the
 * central ones when a writer pads for alignment).
 */
#ifndef MF_ZIP_H
#define MF_ZIP_H

#include "mf_core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MF_ZIP_TAIL_MAX (65535u + 22u + 20u)

typedef struct mf_zip_eocd {
    uint64_t eocd_offset;       /* file offset of the EOCD record */
    uint64_t cd_offset;         /* file offset of the central directory (prefix applied) */
    uint64_t cd_size;
    uint64_t n_entries;
    uint64_t zip64_eocd_offset; /* where the locator says the zip64 EOCD is; UINT64_MAX if none */
    uint64_t prefix;            /* bytes in front of the archive (added to every stored offset) */
    uint32_t anomalies;         /* MF_ZIP_ANOM_* */
} mf_zip_eocd;

/* anomalies: reported by `mfparse scan`, never fatal on their own */
enum {
    MF_ZIP_ANOM_NAME_MISMATCH = 1u << 0,  /* local and central names differ */
    MF_ZIP_ANOM_ENCRYPTED = 1u << 1,      /* flag bit 0x1 */
    MF_ZIP_ANOM_FLAG_0x20 = 1u << 2,      /* compressed patched data */
    MF_ZIP_ANOM_FLAG_0x40 = 1u << 3,      /* strong encryption */
    MF_ZIP_ANOM_METHOD_MISMATCH = 1u << 4,/* local and central compression methods differ */
    MF_ZIP_ANOM_DUPLICATE_NAME = 1u << 5, /* the same name twice in the central directory */
    MF_ZIP_ANOM_COUNT_MISMATCH = 1u << 6, /* EOCD entry count disagrees with the directory */
    MF_ZIP_ANOM_TRAILING_DATA = 1u << 7,  /* bytes after the EOCD comment */
    MF_ZIP_ANOM_PREFIX = 1u << 8,         /* bytes in front of the archive */
    MF_ZIP_ANOM_OVERLAP = 1u << 9,        /* member data overlaps another member */
};

typedef struct mf_zip_entry {
    const uint8_t *name;    /* points into the central directory buffer (not NUL-terminated) */
    uint32_t name_len;
    uint16_t flags;         /* general purpose bit flag (central) */
    uint16_t method;        /* 0 stored, 8 deflated, others reported */
    uint32_t crc32;
    uint64_t comp_size;
    uint64_t uncomp_size;
    uint64_t local_offset;  /* file offset of the local header (prefix applied) */
    uint64_t data_offset;   /* file offset of the data; UINT64_MAX until mf_zip_local ran */
    uint32_t anomalies;
} mf_zip_entry;

/* Find the EOCD in `tail` (the last tail_len bytes of a file of file_size bytes). */
int mf_zip_find_eocd(const uint8_t *tail, size_t tail_len, uint64_t file_size, mf_zip_eocd *out,
                     mf_error *err);

/* Apply the zip64 EOCD record found at out->zip64_eocd_offset (buf holds at least 56 bytes
 * starting there). */
int mf_zip_read_eocd64(const uint8_t *buf, size_t len, uint64_t file_size, mf_zip_eocd *io,
                       mf_error *err);

/* Parse the central directory (buf = exactly eocd->cd_size bytes at eocd->cd_offset).
 * Entries point into buf, which must outlive them. */
int mf_zip_read_cd(const uint8_t *buf, size_t len, const mf_zip_eocd *eocd, uint64_t file_size,
                   mf_arena *a, mf_zip_entry **out, size_t *n_out, mf_error *err);

/* Read the local header of e from buf (file bytes starting at e->local_offset); sets
 * e->data_offset and checks that the member's data lies inside the file. */
int mf_zip_local(const uint8_t *buf, size_t len, uint64_t file_size, mf_zip_entry *e, mf_error *err);

/* All local headers from a buffer that holds the whole file (memory map). */
int mf_zip_local_all(const uint8_t *file, size_t file_len, mf_zip_entry *entries, size_t n,
                     mf_error *err);

#ifdef __cplusplus
}
#endif
#endif /* MF_ZIP_H */
