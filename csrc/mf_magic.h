/*
 * mf_magic.h - the bytes by which a file's format is known. One table: the C readers check these,
 * mfparse._native.MAGICS exports them to Python, and tests/test_magic.py holds the Python-side
 * detectors (mfparse.formats.detect, the scanner's sniffers) to them.
 */
#ifndef MF_MAGIC_H
#define MF_MAGIC_H

#define MF_MAGIC_NPY "\x93NUMPY"           /* at byte 0 */
#define MF_MAGIC_NPY_LEN 6
#define MF_MAGIC_GGUF "GGUF"               /* at byte 0 */
#define MF_MAGIC_GGUF_LEN 4
#define MF_MAGIC_HDF5 "\x89HDF\r\n\x1a\n"  /* at byte 0, 512, 1024, 2048, ... (after a user block) */
#define MF_MAGIC_HDF5_LEN 8
#define MF_MAGIC_TFLITE "TFL3"             /* FlatBuffers file identifier, at byte 4 */
#define MF_MAGIC_TFLITE_AT 4
#define MF_MAGIC_TFLITE_LEN 4
#define MF_MAGIC_ZIP "PK\x03\x04"          /* local file header, at byte 0 of an archive without prefix */
#define MF_MAGIC_ZIP_LEN 4
#define MF_MAGIC_ZIP_EOCD "PK\x05\x06"     /* end of central directory, 22 bytes from the end */
#define MF_MAGIC_ZIP_EOCD_LEN 4

#endif /* MF_MAGIC_H */
